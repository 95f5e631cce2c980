"""``analog-validator``: checks each experiment before any simulator spends time on it.

The validator is the gate of the Analog AI Cloud Composer's pipeline. For every
experiment it receives it reports *every* problem, each with its field path:

1. the shape of the YAML (``spec.Experiment``: unknown fields, types, ranges);
2. what only aihwkit can answer (``build.check_experiment``): config, preset, device
   and noise-model names, their fields, layer shapes, one forward pass on two
   samples; nothing is trained;
3. whether a connected simulator can run it (``capabilities``): a family whose tiles
   need aihwkit's C++ extension, or ``device: cuda`` with no GPU anywhere.

An accepted experiment becomes one job per RPU configuration, each routed to the
least loaded simulator that can run it; a rejected one goes to ``rejections``.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic

from aif.aims.analog.capabilities import SimulatorCapabilities, choose_simulator, simulators
from aif.aims.analog.records import EXPERIMENT_RECORD, JOB_RECORD, REJECTION_RECORD
from aif.aims.analog.spec import LAYER_TYPES, Experiment, job_name
from aif.aims.base import AIM
from aif.communication.ports import Record
from aif.errors import ExperimentError

Problem = tuple[str, str]


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
            loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = _unknown_field(err["loc"])
            elif err["type"] == "union_tag_invalid":
                msg = _unknown_layer(err.get("ctx", {}).get("tag"))
            problems.append((".".join(loc) or "<experiment>", msg))
        return None, problems


def _unknown_field(loc: tuple[int | str, ...]) -> str:
    """``unknown field 'epoch'; did you mean 'epochs'? (valid: ...)``."""
    owner = _model_at(Experiment, loc[:-1])
    if owner is None:
        return "unknown field; remove it or check its spelling"
    valid = list(owner.model_fields)
    hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    guess = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown field {loc[-1]!r}{guess} (valid: {', '.join(valid)})"


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
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel) else None


def _step(tp: Any, part: int | str) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        field = tp.model_fields.get(str(part))
        return field.annotation if field is not None else None
    origin = get_origin(tp)
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict:
        return get_args(tp)[1]
    if origin in (Union, UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        for member in members:  # a discriminated union names its member: Linear
            if isinstance(member, type) and member.__name__ == part:
                return member
        return _step(members[0], part) if len(members) == 1 else None
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
) -> Verdict:
    """Every problem of one experiment, or where each of its jobs should run.

    ``candidates`` are the simulators that could take its jobs (by AIM name); with
    none, routing is not checked (a validate-only use, such as ``aif check``).
    """
    experiment, problems = spec_problems(raw)
    if experiment is None:
        return Verdict(None, problems)
    from aif.aims.analog.build import check_experiment

    try:
        problems = check_experiment(experiment, base_dir)
    except ExperimentError as exc:
        problems = exc.problems or [("<experiment>", str(exc))]
    verdict = Verdict(experiment, list(problems))
    _route(verdict, experiment, candidates or {}, load or {})
    return verdict


def _route(
    verdict: Verdict,
    experiment: Experiment,
    candidates: Mapping[str, SimulatorCapabilities],
    load: Mapping[str, int],
) -> None:
    from aif.aims.analog.build import build_rpu_config, family_of, tile_kind

    for label, rpu in experiment.configurations().items():
        path = f"sweep.{label}" if label else "rpu"
        if not candidates:
            verdict.routes[label] = ("", experiment.device)
            continue
        try:
            config = build_rpu_config(rpu, path)
        except ExperimentError:
            continue  # reported by check_experiment already
        choice = choose_simulator(
            candidates,
            {**load, **_planned(verdict)},
            family=family_of(config),
            kind=tile_kind(config),
            device=experiment.device,
        )
        if isinstance(choice, str):
            where = "device" if experiment.device == "cuda" else f"{path}.config"
            verdict.problems.append((where, choice))
        else:
            verdict.routes[label] = choice


def _planned(verdict: Verdict) -> Counter[str]:
    """Jobs of this experiment already routed: a sweep spreads over the simulators."""
    return Counter(aim for aim, _ in verdict.routes.values())


class AnalogValidator(AIM):
    """Checks analog experiments, routes accepted jobs to simulators, rejects the rest."""

    inputs = {"experiments": EXPERIMENT_RECORD}
    outputs = {"jobs": JOB_RECORD, "rejections": REJECTION_RECORD}

    async def setup(self) -> None:
        #: Jobs sent to each simulator so far: the load the routing balances.
        self._load: Counter[str] = Counter()

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
        candidates = simulators(self.peers("jobs"))
        verdict = await asyncio.to_thread(
            review_experiment, raw, self.base_dir, candidates, dict(self._load)
        )
        if verdict.experiment is None or verdict.problems:
            await self._reject(name, source, verdict.problems)
            return 0
        experiment = verdict.experiment
        for label, (aim, device) in verdict.routes.items():
            if aim:
                self._load[aim] += 1
            value = {
                "job": job_name(experiment.name, label),
                "experiment": experiment.name,
                "label": label,
                "source": source,
                "device": device,
                "spec": experiment.job(label).model_dump_json(),
            }
            await self.send("jobs", value, to=aim or None)
        self.log.info("accepted %s: %d job(s)", experiment.name, len(verdict.routes))
        return len(verdict.routes)

    async def _reject(self, name: str, source: str, problems: list[Problem]) -> None:
        lines = [f"{path}: {message}" for path, message in problems]
        self.log.warning("rejected %s (%s): %s", name, source, "; ".join(lines))
        await self.send("rejections", {"experiment": name, "source": source, "problems": lines})
