"""From an experiment spec to real aihwkit objects, and the check that they work together.

The validator and the simulator build through this module, so an experiment the
validator accepts is one the simulator can start: the RPU configuration
(:mod:`aif.aims.analog.rpu_configs`), the model as an ``AnalogSequential`` of aihwkit
and torch layers with every size inferred from the data (:mod:`aif.aims.analog.layers`)
or as a zoo or user torch model converted by aihwkit's ``convert_to_analog``
(:mod:`aif.aims.analog.torch_models`, which also runs it on a dummy batch), the analog
optimizer and its schedule. :func:`check_experiment` is the validator's part
that needs aihwkit: for each configuration of a sweep it builds everything and runs one
forward and backward pass on two samples (no optimizer step, so no weight changes), then
programs the weights and applies each drift time once, which surfaces what aihwkit only
refuses when a tile is built or used (a torch tile asked for an unsupported noise type, a
drift time a noise model has no data for). :func:`check_sections` does the same for the
sections of an experiment that parse on their own when the whole does not, so one
rejection lists every reason.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch

from aif.aims.analog import spec as s
from aif.aims.analog.aihwkit_names import describe
from aif.aims.analog.datasets import (
    DIGITS_CLASSES,
    DIGITS_SAMPLES,
    DIGITS_SHAPE,
    KNOWN_SHAPES,
    expected_shape,
    load_dataset,
    split_sizes,
    use_problems,
)
from aif.aims.analog.layers import Shape, layer_step, shape_text
from aif.aims.analog.layers import build_model as build_layers
from aif.aims.analog.optimizers import build_optimizer, optimizer_problems
from aif.aims.analog.precision import train_in
from aif.aims.analog.rpu_configs import (
    build_rpu_config,
    config_families,
    family_of,
    inference_families,
    is_inference_family,
    pulsed_training,
    rpu_config,
    tile_kind,
    torch_families,
    unparsed_problems,
)
from aif.aims.analog.task_metrics import model_outputs
from aif.errors import ExperimentError

__all__ = [
    "build_model",
    "build_optimizer",
    "build_rpu_config",
    "build_scheduler",
    "check_experiment",
    "check_sections",
    "config_families",
    "family_of",
    "is_inference_family",
    "loss_function",
    "pulsed_training",
    "tile_kind",
    "torch_families",
]

Problem = tuple[str, str]


# -- the model ----------------------------------------------------------------------------


def build_model(
    spec: s.ModelSpec,
    rpu_config: Any,
    sample_shape: Shape,
    path: str = "model",
    rpu_path: str = "rpu",
    classes: int | None = None,
) -> torch.nn.Module:
    """The analog model of ``spec``: its layer list, or its zoo or torch model converted.

    ``classes`` (the data set's) sizes a zoo model's last layer (default: its ``args``
    or 10). Raises :class:`ExperimentError` with a problem per fault.
    """
    if spec.layers is not None:
        return build_layers(spec, rpu_config, sample_shape, path, rpu_path)
    from aif.aims.analog.torch_models import build_torch_model

    return build_torch_model(spec, rpu_config, sample_shape, classes, path, rpu_path)


# -- training parts -----------------------------------------------------------------------


def build_scheduler(spec: s.TrainingSpec, optimizer: Any) -> Any | None:
    """The learning-rate schedule, stepped once per epoch; ``None`` for ``constant``."""
    sched, lr = spec.schedule, torch.optim.lr_scheduler
    if sched.name == "step":
        return lr.StepLR(optimizer, step_size=sched.step_size, gamma=sched.gamma)
    if sched.name == "exponential":
        return lr.ExponentialLR(optimizer, gamma=sched.gamma)
    if sched.name == "cosine":
        return lr.CosineAnnealingLR(optimizer, T_max=max(spec.epochs, 1))
    return None


def loss_function(spec: s.TrainingSpec) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``cross_entropy`` on logits, ``nll_loss`` on log-probabilities, or ``mse``."""
    if spec.loss == "mse":
        from aif.aims.analog.task_metrics import mse_loss

        return mse_loss
    if spec.loss == "nll":
        return torch.nn.functional.nll_loss
    return torch.nn.functional.cross_entropy


# -- the check ----------------------------------------------------------------------------


@dataclass
class Parts:
    """The sections of an experiment to check; ``None`` for one that did not parse."""

    dataset: s.DatasetSpec | None
    model: s.ModelSpec | None
    training: s.TrainingSpec | None
    inference: s.InferenceSpec | None
    #: path (``rpu`` or ``sweep.<label>``) -> the configurations that parsed
    configurations: dict[str, s.RPUSpec]
    sweep: bool
    #: every configuration parsed (a sweep-wide conclusion needs them all)
    complete: bool = True
    #: the sample shape when the dataset section did not parse (``None``: unknown)
    fallback: Shape | None = None

    @classmethod
    def of(cls, experiment: s.Experiment) -> Parts:
        configs = {
            (f"sweep.{label}" if label else "rpu"): rpu
            for label, rpu in experiment.configurations().items()
        }
        return cls(
            experiment.dataset,
            experiment.model,
            experiment.training,
            experiment.inference,
            configs,
            experiment.sweep is not None,
        )


def check_experiment(experiment: s.Experiment, base_dir: Path) -> list[Problem]:
    """Every problem aihwkit finds with ``experiment``, for every configuration; no training.

    Empty means valid. Paths name the field (``sweep.<label>.forward.out_nois``,
    ``model.layers.3``, ``inference``); a problem common to all configurations is listed
    once.
    """
    return check_parts(Parts.of(experiment), base_dir)


def check_sections(raw: Mapping[str, Any], base_dir: Path) -> list[Problem]:
    """:func:`check_experiment` for an experiment that does not parse as a whole.

    Each section that parses on its own (each ``rpu`` and sweep configuration, ``model``
    with ``dataset``, ``training``, ``inference``) is checked as far as the others allow,
    so a mistake in one section does not hide aihwkit's problems with the rest.
    """
    dataset = _parse(s.DatasetSpec, raw.get("dataset", {}))
    configs: dict[str, s.RPUSpec] = {}
    complete = True
    rpu, sweep = raw.get("rpu"), raw.get("sweep")
    unparsed: list[Problem] = []  # unknown names in the configurations that do not parse
    if rpu is not None:
        parsed = _parse(s.RPU_FIELD, rpu)
        complete = parsed is not None
        if parsed is not None:
            configs["rpu"] = parsed
        else:
            unparsed += unparsed_problems(rpu, "rpu")
    if isinstance(sweep, Mapping):
        for label, value in sweep.items():
            parsed = _parse(s.RPU_FIELD, value)
            if parsed is None:
                unparsed += unparsed_problems(value, f"sweep.{label}")
            if parsed is None or not s.valid_name(str(label)):
                complete = False
            else:
                configs[f"sweep.{label}"] = parsed
    elif sweep is not None:
        complete = False
    if rpu is None and sweep is None:
        configs["rpu"] = s.RPUSpec()
    parts = Parts(
        dataset=dataset,
        model=_parse(s.ModelSpec, raw["model"]) if "model" in raw else None,
        training=_parse(s.TrainingSpec, raw.get("training", {})),
        inference=(
            _parse(s.InferenceSpec, raw["inference"]) if raw.get("inference") is not None else None
        ),
        configurations=configs,
        sweep=sweep is not None,
        complete=complete,
        fallback=_fallback_shape(raw.get("dataset")) if dataset is None else None,
    )
    return unparsed + check_parts(parts, base_dir)


def _parse(tp: Any, value: Any) -> Any:
    """``value`` validated as ``tp``, or ``None`` (its faults are the spec check's to report)."""
    try:
        return pydantic.TypeAdapter(tp).validate_python(value)
    except pydantic.ValidationError:
        return None


def _fallback_shape(raw: Any) -> Shape | None:
    """The sample shape a dataset section that does not parse would most likely give."""
    if not isinstance(raw, Mapping):
        return DIGITS_SHAPE if raw is None else None
    name = raw.get("name", "digits")
    side, depth = raw.get("image_size"), raw.get("channels")
    if name in ("synthetic", "images"):
        side = (8 if name == "synthetic" else 32) if side is None else side
        depth = (1 if name == "synthetic" else 3) if depth is None else depth
        fits = isinstance(side, int) and 2 <= side <= 256 and depth in (1, 3)
        return (depth, side, side) if fits else None
    return KNOWN_SHAPES.get(str(name))


def check_parts(parts: Parts, base_dir: Path) -> list[Problem]:
    """The checks of :func:`check_experiment` on the sections that parsed."""
    problems: list[Problem] = []
    shape: Shape | None = parts.fallback
    classes: int | None = None
    batches = 0
    x, y = None, np.zeros(2, np.int64)
    if parts.dataset is not None:
        data = parts.dataset
        try:
            if data.name == "digits":  # known facts: no scikit-learn import on the check's path
                shape, classes = DIGITS_SHAPE, DIGITS_CLASSES
                train = split_sizes(DIGITS_SAMPLES, data.test_fraction)[0]
                if data.validation_fraction:
                    train = split_sizes(train, data.validation_fraction)[0]
                train = min(train, data.max_train or DIGITS_SAMPLES)
                x, y = np.zeros((2, *shape), np.float32), np.array([0, 1], np.int64)
                batches = train % data.batch_size
            else:
                dataset = load_dataset(data, base_dir)
                x, y = dataset.x_train[:2], dataset.y_train[:2]
                shape, classes = dataset.sample_shape, model_outputs(dataset)
                batches = len(dataset.y_train) % data.batch_size
                loss = parts.training.loss if parts.training is not None else None
                problems += use_problems(data, dataset, loss)
        except ExperimentError as exc:
            problems += exc.problems
            shape = expected_shape(data)
    if shape is not None and x is None:
        x = np.zeros((2, *shape), np.float32)
    if x is not None and len(y) < 2:  # max_train: 1; two samples keep BatchNorm usable
        x, y = np.concatenate([x, x]), np.concatenate([y, y])
    if parts.training is not None:
        problems += optimizer_problems(parts.training)
    model = parts.model
    if model is None:  # no model to build: only the configurations' names and fields
        for rpu_path, rpu_spec in parts.configurations.items():
            problems += rpu_config(rpu_spec, rpu_path)[1]
        return list(dict.fromkeys(problems))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(parts.training.seed if parts.training else 0)
        model_faults = _model_problems(parts, batches, shape, classes)
    problems += model_faults
    # a zoo or torch model that does not build or fit would only repeat its faults per tile
    broken = model.layers is None and any(p.startswith("model") for p, _ in model_faults)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(parts.training.seed if parts.training else 0)
        for rpu_path, rpu_spec in parts.configurations.items():
            if shape is None or x is None or broken:
                problems += rpu_config(rpu_spec, rpu_path)[1]
            else:
                problems += _check_one(parts, model, rpu_spec, rpu_path, shape, x, y, classes)
    if parts.inference is not None and parts.sweep and parts.complete:
        problems += _sweep_can_drift(parts)
    return list(dict.fromkeys(problems))


def _model_problems(
    parts: Parts, batches: int, shape: Shape | None, classes: int | None
) -> list[Problem]:
    """What is wrong with the model whatever the configuration (reported even if none builds)."""
    assert parts.model is not None
    problems: list[Problem] = []
    layers = parts.model.layers
    if layers is None:  # a zoo or torch model: built digitally and run on a dummy batch
        from aif.aims.analog.torch_models import model_problems

        return model_problems(
            parts.model,
            shape,
            classes,
            single_sample_batch=batches == 1,
            nll=parts.training is not None and parts.training.loss == "nll",
        )
    if batches == 1 and any(isinstance(layer, s.BatchNorm1d | s.BatchNorm2d) for layer in layers):
        problems.append(
            (
                "dataset.batch_size",
                "leaves a last batch of one sample, which BatchNorm cannot train on; "
                "change batch_size or max_train",
            )
        )
    training = parts.training
    if training is not None and training.loss == "nll" and not isinstance(layers[-1], s.LogSoftmax):
        problems.append(
            (
                "training.loss",
                "nll expects log-probabilities: add LogSoftmax as the last layer, "
                "or use cross_entropy",
            )
        )
    for i, layer in enumerate(layers):
        shape, _ = layer_step(layer, shape, f"model.layers.{i}", problems)
    return problems


def _sweep_can_drift(parts: Parts) -> list[Problem]:
    """A sweep with 'inference' needs at least one configuration that drifts."""
    for rpu_path, rpu_spec in parts.configurations.items():
        rpu, problems = rpu_config(rpu_spec, rpu_path)
        if rpu is None or problems or is_inference_family(rpu):
            return []
    return [
        (
            "inference",
            "no configuration of the sweep has an inference noise model to drift; give one "
            f"a family of {', '.join(inference_families())} or remove 'inference'",
        )
    ]


def _check_one(
    parts: Parts,
    model_spec: s.ModelSpec,
    rpu_spec: s.RPUSpec,
    rpu_path: str,
    shape: Shape,
    x: np.ndarray,
    y: np.ndarray,
    classes: int | None,
) -> list[Problem]:
    rpu, problems = rpu_config(rpu_spec, rpu_path)
    if rpu is None or problems:  # a half-configured tile would only repeat the same faults
        return problems
    drifts = parts.inference is not None and is_inference_family(rpu)
    # In a sweep, the configurations without a noise model skip drift inference (the
    # table compares them at t=0); only a single configuration that cannot drift is
    # an error, because its 'inference' section would be silently ignored.
    if parts.inference is not None and not drifts and not parts.sweep:
        problems.append(
            (
                "inference",
                f"{rpu_path} is a {family_of(rpu)}, which has no inference noise model for "
                f"drift; use one of {', '.join(inference_families())} or remove 'inference'",
            )
        )
    try:
        model = build_model(model_spec, rpu, shape, rpu_path=rpu_path, classes=classes)
    except ExperimentError as exc:
        return problems + exc.problems
    training = parts.training or s.TrainingSpec()
    # the optimizer was checked by optimizer_problems, without building one
    layers = model_spec.layers
    last = f"model.layers.{len(layers) - 1}" if layers is not None else f"model.{model_spec.source}"
    half = train_in(model, training.precision)
    try:
        model.train()
        out = model(torch.from_numpy(x))
        if out.dim() != 2 or (classes is not None and out.shape[1] != classes):
            got, want = shape_text(tuple(out.shape[1:])), classes or "one output per class"
            has = f" but the dataset has {classes} classes" if classes else ""
            fix = f"end with a Linear of out_features: {want}"
            problems.append((last, f"the model ends with {got}{has}; {fix}"))
        else:
            loss = loss_function(training)(out, torch.from_numpy(y))
            loss.backward()  # type: ignore[no-untyped-call]
    except Exception as exc:  # aihwkit refuses at run time what it accepted at build time
        problems.append((rpu_path, f"a forward pass fails: {describe(exc)}"))
        return problems
    if half is not None:
        half.release()
    if drifts and parts.inference is not None:
        problems += _check_drift(model, parts.inference.drift_times, rpu_path)
    return problems


#: A list of numbers in an aihwkit message (``[1.0, 86400.0, 172800.0]``).
_NUMBER_LIST = re.compile(r"`?\[(\s*\d+(?:\.\d*)?(?:\s*,\s*\d+(?:\.\d*)?)*\s*)\]`?")


def _as_durations(message: str) -> str:
    """aihwkit names drift times in seconds; write them as durations (1s, 1d, 2d)."""

    def durations(match: re.Match[str]) -> str:
        times = [float(t) for t in match.group(1).split(",")]
        return ", ".join(s.format_duration(t) for t in times)

    return _NUMBER_LIST.sub(durations, message)


def _check_drift(model: Any, times: list[float], rpu_path: str) -> list[Problem]:
    """Programs the weights once and drifts them to each time, as inference will."""
    problems: list[Problem] = []
    model.eval()
    with warnings.catch_warnings():
        # ReRamCMONoiseModel applies numpy's log10 to torch tensors during drift, which
        # NumPy 2 deprecates (aihwkit 1.2.0, inference/noise/reram.py); harmless here.
        warnings.filterwarnings("ignore", "__array_wrap__ must accept context", DeprecationWarning)
        try:
            model.program_analog_weights()
        except Exception as exc:
            return [(rpu_path, f"programming the weights fails: {describe(exc)}")]
        for i, t in enumerate(times):
            try:
                model.drift_analog_weights(t)
            except Exception as exc:
                problems.append(
                    (
                        f"inference.drift_times.{i}",
                        f"{s.format_duration(t)} fails with {rpu_path}: "
                        f"{_as_durations(describe(exc))}",
                    )
                )
    return problems
