"""``analog-validator``: checks each experiment before any simulator spends time on it.

The validator is the gate of the Analog AI Cloud Composer's pipeline. For every
experiment it receives it reports *every* problem, each with its field path:

1. the shape of the YAML (``spec.Experiment``: unknown fields, types, ranges);
2. what only aihwkit can answer (``build.check_experiment``): config, preset, device
   and noise-model names, their fields, layer shapes, one forward pass on two
   samples; nothing is trained;
3. whether a connected simulator can run it (``capabilities``): a family whose tiles
   need aihwkit's C++ extension, or ``device: cuda`` with no GPU anywhere.

In a ``profile: secure`` run a ``torch`` model or dataset factory must come from an
installed Store package (:mod:`aif.aims.analog.trusted_code`); one from the plain
environment is refused before it is imported.

An accepted experiment becomes one job per RPU configuration (and per seed of
``training.seeds``, see :mod:`aif.aims.analog.seeds`), each routed to the least loaded
simulator that can run it; a rejected one goes to ``rejections``.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import inspect
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic
from pydantic_core import ErrorDetails

from aif.aims.analog.capabilities import SimulatorCapabilities, choose_simulator, simulators
from aif.aims.analog.model_spec import TORCH_PATH
from aif.aims.analog.records import EXPERIMENT_RECORD, JOB_RECORD, REJECTION_RECORD
from aif.aims.analog.seeds import job_specs
from aif.aims.analog.spec import _NAME, LAYER_TYPES, NAME_RULE, Experiment, OptimizerSpec, job_name
from aif.aims.base import AIM
from aif.aims.preload import Preload
from aif.communication.ports import Record
from aif.errors import ExperimentError

Problem = tuple[str, str]
#: What a review needs: the aihwkit builders (torch, aihwkit). Not scikit-learn nor
#: ``torch._dynamo``: the check knows digits' shape and builds no optimizer, so importing
#: them here would only take CPU from the simulator's process while it starts.
_HEAVY_MODULES = ("aif.aims.analog.build",)


def spec_problems(raw: Any) -> tuple[Experiment | None, list[Problem]]:
    """Parse the user's mapping; pydantic's errors become ``(path, message)`` pairs."""
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        return None, [
            ("<experiment>", f"an experiment is a mapping (name:, model:, ...), not {kind}")
        ]
    try:
        return Experiment.model_validate(raw), []
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not _is_union_tag(p) and p != "[key]")
            problems.append((".".join(map(str, loc)) or "<experiment>", _message(err, loc)))
        return None, list(dict.fromkeys(problems))


#: pydantic's range errors, whose message gains the value given.
_RANGES = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _message(err: ErrorDetails, loc: tuple[int | str, ...]) -> str:
    """pydantic's message for ``err``, made to name the fix where pydantic does not."""
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "extra_forbidden":
        return _unknown_field(err["loc"], err["input"])
    if kind == "union_tag_invalid":
        return _unknown_layer(ctx.get("tag"))
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == _NAME:
        return f"{NAME_RULE}; got {err['input']!r}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == TORCH_PATH:
        return f"write package.module:ClassOrFactory (e.g. mypkg.models:Net); got {err['input']!r}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind in _RANGES or kind in ("too_short", "too_long"):
        return f"{msg}, got {_shown(err['input'])}"
    if kind == "missing":
        return f"required: {_description(err['loc']) or 'give a value'}"
    return msg


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _description(loc: tuple[int | str, ...]) -> str | None:
    """The description of the field at ``loc``, as the spec documents it."""
    owner = _model_at(Experiment, loc[:-1])
    field = owner.model_fields.get(str(loc[-1])) if owner is not None and loc else None
    return field.description if field is not None else None


def _unknown_field(loc: tuple[int | str, ...], value: object = None) -> str:
    """``unknown field 'epoch'; did you mean 'epochs'? (valid: ...)``."""
    owner = _model_at(Experiment, loc[:-1])
    if owner is None:
        return "unknown field; remove it or check its spelling"
    valid = list(owner.model_fields)
    name = str(loc[-1])
    if owner is OptimizerSpec and name in _optimizer_arguments():
        shown = _shown(value) if value is not None else "..."
        hint = f"; torch arguments go under 'params' (params: {{{name}: {shown}}})"
    else:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {name!r}{hint} (valid: {', '.join(valid)})"


@functools.cache
def _optimizer_arguments() -> frozenset[str]:
    """What torch's SGD and Adam take besides the parameters and the learning rate."""
    import torch

    names = set()
    for optimizer in (torch.optim.SGD, torch.optim.Adam):
        names |= set(inspect.signature(optimizer).parameters)
    return frozenset(names - {"params", "lr"})


def _unknown_layer(tag: object) -> str:
    lowered = {t.lower(): t for t in LAYER_TYPES}
    hint = difflib.get_close_matches(str(tag).lower(), list(lowered), n=1)
    guess = f"; did you mean {lowered[hint[0]]!r}?" if hint else ""
    return f"unknown layer type {tag!r}{guess} (valid: {', '.join(LAYER_TYPES)})"


def _model_at(tp: Any, loc: tuple[int | str, ...]) -> type[pydantic.BaseModel] | None:
    """The pydantic model a validation error path ends in (walking the annotations)."""
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """``Annotated[X | None, ...]`` -> ``X``: the type an optional section holds."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _step(tp: Any, part: int | str) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        field = tp.model_fields.get(str(part))
        if field is None:
            return None
        # FieldInfo.annotation drops Annotated metadata but keeps the type itself
        return field.annotation
    origin = get_origin(tp)
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict:
        return get_args(tp)[1]
    if origin in (Union, UnionType):  # a discriminated union names its member: Linear
        for member in get_args(tp):
            member = _unwrap(member)
            if isinstance(member, type) and member.__name__ == part:
                return member
    return None


def _is_union_tag(part: object) -> bool:
    """pydantic puts the union member (``Linear``) in the path of layer errors: drop it."""
    return isinstance(part, str) and part in LAYER_TYPES


@dataclass
class Verdict:
    """What the validator decided about one experiment."""

    experiment: Experiment | None
    problems: list[Problem] = field(default_factory=list)
    #: label -> (simulator AIM, device); AIM ``""`` when no simulator declared itself.
    routes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.experiment is not None and not self.problems


def review_experiment(
    raw: Any,
    base_dir: Path,
    candidates: Mapping[str, SimulatorCapabilities] | None = None,
    load: Mapping[str, int] | None = None,
    trusted_from: Path | None = None,
) -> Verdict:
    """Every problem of one experiment, or where each of its jobs should run.

    ``candidates`` are the simulators that could take its jobs (by AIM name); with
    none, routing is not checked (a validate-only use, such as ``aif check``).
    ``trusted_from`` (a secure run's state directory): the user's code must come from
    its Store install cache, else it is refused and nothing of it is imported.
    """
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        from aif.aims.analog.experiments import anchor_path

        raw = {**raw, "model": dict(raw["model"])}  # the caller's copy stays as it was
        anchor_path(raw["model"], "weights", base_dir)  # read from the workflow's folder
    experiment, problems = spec_problems(raw)
    if trusted_from is not None and isinstance(raw, dict):
        from aif.aims.analog.trusted_code import untrusted_code

        untrusted = untrusted_code(raw, trusted_from)
        if untrusted:
            return Verdict(experiment, list(dict.fromkeys([*problems, *untrusted])))
    if experiment is None:
        if isinstance(raw, dict):  # still check what aihwkit says about the sound sections
            from aif.aims.analog.build import check_sections

            try:
                problems += check_sections(raw, base_dir)
            except ExperimentError as exc:
                problems += exc.problems or [("<experiment>", str(exc))]
        return Verdict(None, list(dict.fromkeys(problems)))
    from aif.aims.analog.build import check_experiment

    try:
        problems = check_experiment(experiment, base_dir)
    except ExperimentError as exc:
        problems = exc.problems or [("<experiment>", str(exc))]
    from aif.aims.analog.run_checks import run_problems

    verdict = Verdict(experiment, list(dict.fromkeys([*problems, *run_problems(experiment)])))
    _route(verdict, experiment, candidates or {}, load or {})
    return verdict


def _route(
    verdict: Verdict,
    experiment: Experiment,
    candidates: Mapping[str, SimulatorCapabilities],
    load: Mapping[str, int],
) -> None:
    from aif.aims.analog.build import build_rpu_config, family_of, tile_kind, torch_families

    configurations = experiment.configurations()
    for label, (config_label, _) in job_specs(experiment).items():
        path = f"sweep.{config_label}" if config_label else "rpu"
        if not candidates:
            verdict.routes[label] = ("", experiment.device)
            continue
        try:
            config = build_rpu_config(configurations[config_label], path)
        except ExperimentError:
            continue  # reported by check_experiment already
        choice = choose_simulator(
            candidates,
            {**load, **_planned(verdict)},
            family=family_of(config),
            kind=tile_kind(config),
            device=experiment.device,
            torch_families=torch_families(),
        )
        if isinstance(choice, str):
            where = "device" if experiment.device == "cuda" else f"{path}.config"
            if (where, choice) not in verdict.problems:
                verdict.problems.append((where, choice))
        else:
            verdict.routes[label] = choice


def _planned(verdict: Verdict) -> Counter[str]:
    """Jobs of this experiment already routed: a sweep spreads over the simulators."""
    return Counter(aim for aim, _ in verdict.routes.values())


class AnalogValidator(AIM):
    """Checks analog experiments, routes accepted jobs to simulators, rejects the rest."""

    queues = ("validation",)
    #: Opts in to the daemon's warm workers (when placed ``process``): aihwkit imported once.
    warm_modules = (*_HEAVY_MODULES, "aif.aims.analog.warm_up:validator")

    inputs = {"experiments": EXPERIMENT_RECORD}
    outputs = {"jobs": JOB_RECORD, "rejections": REJECTION_RECORD}

    async def setup(self) -> None:
        #: Jobs sent to each simulator so far: the load the routing balances.
        self._load: Counter[str] = Counter()
        #: aihwkit, torch and the digits set load while the other AIMs start.
        self._preload = Preload(_HEAVY_MODULES)

    async def run(self) -> None:
        accepted = rejected = jobs = 0
        async for event in self.events():
            if not isinstance(event, Record):
                continue
            routed = await self.review(event.value)
            if routed:
                accepted += 1
                jobs += routed
            else:
                rejected += 1
        await self.result(accepted=accepted, rejected=rejected, jobs=jobs)

    async def review(self, record: dict[str, Any]) -> int:
        """Check one experiment record; returns the number of jobs sent (0 = rejected)."""
        name, source = record["name"], record["source"]
        if record["error"]:
            await self._reject(name, source, [(source, record["error"])])
            return 0
        try:
            raw = json.loads(record["spec"])
        except ValueError as exc:
            await self._reject(name, source, [("<experiment>", f"not JSON: {exc}")])
            return 0
        await self._preload.ready()
        candidates = simulators(self.peers("jobs"))
        verdict = await asyncio.to_thread(
            review_experiment,
            raw,
            self.base_dir,
            candidates,
            dict(self._load),
            self.state_dir if self.secure else None,
        )
        if verdict.experiment is None or verdict.problems:
            await self._reject(name, source, verdict.problems)
            return 0
        experiment = verdict.experiment
        specs = job_specs(experiment)
        for label, (aim, device) in verdict.routes.items():
            if aim:
                self._load[aim] += 1
            value = {
                "job": job_name(experiment.name, label),
                "experiment": experiment.name,
                "label": label,
                "source": source,
                "device": device,
                "spec": specs[label][1].model_dump_json(),
            }
            await self.send("jobs", value, to=aim or None)
        self.log.info("accepted %s: %d job(s)", experiment.name, len(verdict.routes))
        return len(verdict.routes)

    async def _reject(self, name: str, source: str, problems: list[Problem]) -> None:
        lines = [f"{path}: {message}" for path, message in problems]
        self.log.warning("rejected %s (%s): %s", name, source, "; ".join(lines))
        await self.send("rejections", {"experiment": name, "source": source, "problems": lines})
