"""From an experiment spec to real aihwkit objects, and the check that they work together.

The validator and the simulator build through this module, so an experiment the
validator accepts is one the simulator can start: the RPU configuration (names resolved
by :mod:`aif.aims.analog.aihwkit_names`), the model as an ``AnalogSequential`` of aihwkit
and torch layers with every size inferred from the data, the analog optimizer and its
schedule. :func:`check_experiment` is the validator's part that needs aihwkit: for each
configuration of a sweep it builds everything and runs one forward and backward pass on
two samples (no optimizer step, so no weight changes), then programs the weights and
applies each drift time once, which surfaces what aihwkit only refuses when a tile is
built or used (a torch tile asked for an unsupported noise type, a drift time a noise
model has no data for).

Which simulator runs a family (aihwkit 1.2.0, read from each config's ``tile_class``):

* ``rpucuda``, the C++ RPUCuda extension: ``FloatingPointRPUConfig``
  (``FloatingPointTile``), ``InferenceRPUConfig`` (``InferenceTile``) and the training
  families ``SingleRPUConfig``, ``UnitCellRPUConfig``, ``DigitalRankUpdateRPUConfig``
  (``AnalogTile``), presets included. On CUDA they need an aihwkit compiled with CUDA
  (``aihwkit.simulator.rpu_base.cuda.is_compiled()``).
* ``torch``, plain torch ops (``TorchInferenceTile`` over ``TorchSimulatorTile``), so
  they run wherever torch does: ``TorchInferenceRPUConfig``,
  ``QuantizedTorchInferenceRPUConfig``, ``TorchInferenceRPUConfigIRDropT`` and the preset
  ``FloatingPointPreset`` (a ``TorchInferenceRPUConfig`` despite its name). They refuse
  some non-idealities (``forward.w_noise``, PCM modifier noise, analog bias) when a tile
  is built. aihwkit itself still needs its C++ extension to import.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from aif.aims.analog import aihwkit_names as names
from aif.aims.analog import spec as s
from aif.aims.analog.datasets import load_dataset
from aif.errors import ExperimentError

Problem = tuple[str, str]
Shape = tuple[int, ...]
#: Sample shape to check a model against when the data set itself cannot be read.
_FALLBACK_SHAPES = {"digits": (1, 8, 8), "idx": (1, 28, 28)}


# -- RPU configurations and what they run on ----------------------------------------------


def build_rpu_config(spec: s.RPUSpec, path: str = "rpu") -> Any:
    """The aihwkit RPU configuration ``spec`` describes; all faults in one ExperimentError."""
    rpu, problems = names.rpu_config(spec, path)
    if problems:
        raise ExperimentError(f"the RPU configuration at {path!r} does not fit aihwkit", problems)
    return rpu


def family_of(rpu_config: Any) -> str:
    """The config family: the first class of its MRO defined in ``aihwkit.simulator.configs``.

    A preset reports the family it extends (``ReRamSBPreset`` -> ``SingleRPUConfig``).
    """
    return names.family_of_class(type(rpu_config))


def tile_kind(rpu_config: Any) -> Literal["torch", "rpucuda"]:
    """``rpucuda`` when the config's tiles wrap the C++ RPUCuda simulator, else ``torch``.

    Read from ``tile_class`` rather than from a list of names, so presets and later
    families are classified by what they build (see the module docstring).
    """
    from aihwkit.simulator.tiles.rpucuda import RPUCudaSimulatorTileWrapper

    tile_class = getattr(rpu_config, "tile_class", None)
    if isinstance(tile_class, type) and issubclass(tile_class, RPUCudaSimulatorTileWrapper):
        return "rpucuda"
    return "torch"


def is_inference_family(rpu_config: Any) -> bool:
    """Whether the config has an inference noise model (programming, drift, read noise)."""
    return "noise_model" in names.field_names(type(rpu_config))


def pulsed_training(rpu_config: Any) -> bool:
    """Whether training updates the weights in memory with device pulses.

    True for ``SingleRPUConfig`` with a pulsed device, ``UnitCellRPUConfig`` (transfer
    compounds, Tiki-Taka, vector cells) and ``DigitalRankUpdateRPUConfig`` (mixed
    precision: the rank update is digital, its transfer to the array pulsed), unless
    ``update.pulse_type`` is ``NONE`` (a floating-point update). False for inference
    families (hardware-aware training: noisy forward, perfect backward, ideal update) and
    for ``FloatingPointRPUConfig``.
    """
    from aihwkit.simulator.configs import (
        DigitalRankUpdateRPUConfig,
        PulseType,
        SingleRPUConfig,
        UnitCellRPUConfig,
    )
    from aihwkit.simulator.configs.devices import PulsedDevice

    if isinstance(rpu_config, SingleRPUConfig):
        pulsed = isinstance(rpu_config.device, PulsedDevice)
    else:
        pulsed = isinstance(rpu_config, UnitCellRPUConfig | DigitalRankUpdateRPUConfig)
    return pulsed and rpu_config.update.pulse_type != PulseType.NONE


def config_families() -> list[str]:
    """The RPU config families this aihwkit has (presets excluded), sorted."""
    return sorted(names.family_classes())


def _inference_families() -> list[str]:
    return sorted(
        n for n, c in names.family_classes().items() if "noise_model" in names.field_names(c)
    )


# -- the model ----------------------------------------------------------------------------


def build_model(
    spec: s.ModelSpec,
    rpu_config: Any,
    sample_shape: tuple[int, int, int],
    path: str = "model",
    rpu_path: str = "rpu",
) -> torch.nn.Module:
    """An ``AnalogSequential`` of the layers in ``spec``, sizes inferred from ``sample_shape``.

    Shape faults are problems at ``<path>.layers.<i>`` saying the actual shape and the
    fix; a layer aihwkit refuses to build with ``rpu_config`` is a problem at ``rpu_path``.
    """
    from aihwkit.nn import AnalogSequential

    problems: list[Problem] = []
    modules: list[torch.nn.Module] = []
    refused: dict[str, list[str]] = {}  # aihwkit's reason -> the layers it refused
    shape: Shape | None = tuple(sample_shape)
    for i, layer in enumerate(spec.layers):
        where = f"{path}.layers.{i}"
        shape, factory = _layer(layer, shape, where, problems)
        if factory is None:
            continue
        try:
            modules.append(factory(rpu_config if spec.is_analog(i) else None))
        except Exception as exc:  # aihwkit refuses this configuration for this tile
            refused.setdefault(names.describe(exc), []).append(where)
    for reason, layers in refused.items():
        family = family_of(rpu_config)
        problems.append(
            (rpu_path, f"aihwkit cannot build {', '.join(layers)} as {family}: {reason}")
        )
    if problems:
        raise ExperimentError("the model cannot be built as written", problems)
    model: torch.nn.Module = AnalogSequential(*modules)
    return model


Factory = Callable[[Any], torch.nn.Module]


def _layer(
    layer: Any, shape: Shape | None, where: str, problems: list[Problem]
) -> tuple[Shape | None, Factory | None]:
    """The shape after ``layer`` and how to build it (``None``: unknown, not buildable)."""
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    if isinstance(layer, s.Linear):
        if shape is not None and len(shape) != 1:
            problems.append((where, f"Linear gets {_text(shape)}; add Flatten before it"))
        n = math.prod(shape) if shape is not None else layer.in_features
        _check_given(layer.in_features, n, f"{where}.in_features", problems)
        if n is None:
            return None, None
        out, bias = layer.out_features, layer.bias

        n_in = n

        def linear(rpu: Any) -> torch.nn.Module:
            if rpu is None:
                return torch.nn.Linear(n_in, out, bias=bias)
            module: torch.nn.Module = AnalogLinear(n_in, out, bias=bias, rpu_config=rpu)
            return module

        return (out,), linear
    if isinstance(layer, s.Conv2d):
        image = _image(shape, layer.type, where, problems)
        if image is None:
            return None, None
        c = image[0]
        _check_given(layer.in_channels, c, f"{where}.in_channels", problems)
        k, st, p, out = layer.kernel_size, layer.stride, layer.padding, layer.out_channels
        size = _window(image, k, st, p, where, problems)
        bias = layer.bias

        def conv(rpu: Any) -> torch.nn.Module:
            if rpu is None:
                return torch.nn.Conv2d(c, out, k, stride=st, padding=p, bias=bias)
            module: torch.nn.Module = AnalogConv2d(
                c, out, k, stride=st, padding=p, bias=bias, rpu_config=rpu
            )
            return module

        return ((out, *size) if size else None), conv
    if isinstance(layer, s.MaxPool2d | s.AvgPool2d):
        image = _image(shape, layer.type, where, problems)
        k, st, p = layer.kernel_size, layer.stride or layer.kernel_size, layer.padding
        if p * 2 > k:
            problems.append(
                (f"{where}.padding", f"is {p}; it may be at most half of kernel_size {k}")
            )
            return None, None
        size = _window(image, k, st, p, where, problems) if image is not None else None
        pool = torch.nn.MaxPool2d if isinstance(layer, s.MaxPool2d) else torch.nn.AvgPool2d
        after = (image[0], *size) if image is not None and size else None
        return after, lambda _: pool(k, stride=st, padding=p)
    if isinstance(layer, s.BatchNorm1d | s.BatchNorm2d):
        two_d = isinstance(layer, s.BatchNorm2d)
        if shape is not None and len(shape) != (3 if two_d else 1):
            fix = "use BatchNorm1d after Flatten" if two_d else "use BatchNorm2d on images"
            problems.append((where, f"{layer.type} gets {_text(shape)}; {fix}"))
            return shape, None
        n = shape[0] if shape is not None else layer.num_features
        _check_given(layer.num_features, n, f"{where}.num_features", problems)
        if n is None:
            return None, None
        norm = torch.nn.BatchNorm2d if two_d else torch.nn.BatchNorm1d
        return shape, lambda _: norm(n)
    if isinstance(layer, s.Flatten):
        return ((math.prod(shape),) if shape is not None else None), lambda _: torch.nn.Flatten()
    simple: dict[type, Factory] = {
        s.Dropout: lambda _: torch.nn.Dropout(layer.p),
        s.ReLU: lambda _: torch.nn.ReLU(),
        s.Tanh: lambda _: torch.nn.Tanh(),
        s.Sigmoid: lambda _: torch.nn.Sigmoid(),
        s.LogSoftmax: lambda _: torch.nn.LogSoftmax(dim=1),
    }
    return shape, simple[type(layer)]


def _text(shape: Shape) -> str:
    if len(shape) == 1:
        return f"{shape[0]} features"
    return f"a {'x'.join(map(str, shape))} (channels x height x width) image"


def _check_given(
    given: int | None, actual: int | None, where: str, problems: list[Problem]
) -> None:
    if given is not None and actual is not None and given != actual:
        problems.append(
            (where, f"is {given} but the layer before gives {actual}; set {actual} or leave it out")
        )


def _image(shape: Shape | None, kind: str, where: str, problems: list[Problem]) -> Shape | None:
    if shape is not None and len(shape) != 3:
        problems.append(
            (where, f"{kind} needs an image but gets {_text(shape)}; move Flatten after it")
        )
        return None
    return shape


def _window(
    image: Shape, k: int, stride: int, padding: int, where: str, problems: list[Problem]
) -> tuple[int, int] | None:
    """Height and width after a ``k`` x ``k`` window, or a problem if it does not fit."""
    h, w = image[1] + 2 * padding, image[2] + 2 * padding
    if k > h or k > w:
        problems.append(
            (
                f"{where}.kernel_size",
                f"is {k} but its input is {_text(image)}"
                f"{f' ({h}x{w} padded)' if padding else ''}; use a smaller kernel_size, more "
                "padding or fewer pooling layers before it",
            )
        )
        return None
    return (h - k) // stride + 1, (w - k) // stride + 1


# -- training parts -----------------------------------------------------------------------


def build_optimizer(spec: s.TrainingSpec, model: torch.nn.Module) -> Any:
    """``AnalogSGD`` or ``AnalogAdam`` over ``model``, regrouped for its analog tiles."""
    from aihwkit.optim import AnalogAdam, AnalogSGD

    opt = spec.optimizer
    cls = AnalogSGD if opt.name == "AnalogSGD" else AnalogAdam
    where = "training.optimizer.params"
    params = {k: v for k, v in opt.params.items() if k != "lr"}
    kwargs, problems = names.call_with(cls, params, where, skip=("params", "lr"))
    if "lr" in opt.params:
        problems.insert(0, (f"{where}.lr", "set training.optimizer.lr instead"))
    if problems:
        raise ExperimentError("the optimizer cannot be built", problems)
    try:
        optimizer = cls(model.parameters(), lr=opt.lr, **kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ExperimentError(
            "the optimizer cannot be built", [(where, f"{opt.name} refuses: {exc}")]
        ) from exc
    optimizer.regroup_param_groups(model)
    return optimizer


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
    """``cross_entropy`` on logits, or ``nll_loss`` on log-probabilities."""
    if spec.loss == "nll":
        return torch.nn.functional.nll_loss
    return torch.nn.functional.cross_entropy


# -- the check ----------------------------------------------------------------------------


def check_experiment(experiment: s.Experiment, base_dir: Path) -> list[Problem]:
    """Every problem aihwkit finds with ``experiment``, for every configuration; no training.

    Empty means valid. Paths name the field (``sweep.<label>.forward.out_nois``,
    ``model.layers.3``, ``inference``); a problem common to all configurations is listed
    once.
    """
    problems: list[Problem] = []
    data = experiment.dataset
    try:
        dataset = load_dataset(data, base_dir)
        x, y = dataset.x_train[:2], dataset.y_train[:2]
        shape, classes = dataset.sample_shape, dataset.classes
        batches = len(dataset.y_train) % data.batch_size
    except ExperimentError as exc:
        problems += exc.problems
        side = data.image_size
        shape = _FALLBACK_SHAPES.get(data.name, (1, side, side))
        x, y, classes, batches = np.zeros((2, *shape), np.float32), np.zeros(2, np.int64), None, 0
    if len(y) < 2:  # max_train: 1; two samples keep BatchNorm's training mode usable
        x, y = np.concatenate([x, x]), np.concatenate([y, y])
    layers = experiment.model.layers
    if batches == 1 and any(isinstance(layer, s.BatchNorm1d | s.BatchNorm2d) for layer in layers):
        problems.append(
            (
                "dataset.batch_size",
                "leaves a last batch of one sample, which BatchNorm cannot train on; "
                "change batch_size or max_train",
            )
        )
    if experiment.training.loss == "nll" and not isinstance(layers[-1], s.LogSoftmax):
        problems.append(
            (
                "training.loss",
                "nll expects log-probabilities: add LogSoftmax as the last layer, "
                "or use cross_entropy",
            )
        )
    shape_problems: list[Problem] = []  # reported even when no configuration builds
    layer_shape: Shape | None = shape
    for i, layer in enumerate(layers):
        layer_shape, _ = _layer(layer, layer_shape, f"model.layers.{i}", shape_problems)
    problems += shape_problems
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(experiment.training.seed)
        for label, rpu_spec in experiment.configurations().items():
            rpu_path = f"sweep.{label}" if label else "rpu"
            problems += _check_one(experiment, rpu_spec, rpu_path, shape, x, y, classes)
    if experiment.inference is not None and experiment.sweep is not None:
        problems += _sweep_can_drift(experiment)
    return list(dict.fromkeys(problems))


def _sweep_can_drift(experiment: s.Experiment) -> list[Problem]:
    """A sweep with 'inference' needs at least one configuration that drifts."""
    for label, rpu_spec in experiment.configurations().items():
        rpu, problems = names.rpu_config(rpu_spec, f"sweep.{label}")
        if rpu is None or problems or is_inference_family(rpu):
            return []
    return [
        (
            "inference",
            "no configuration of the sweep has an inference noise model to drift; give one "
            f"a family of {', '.join(_inference_families())} or remove 'inference'",
        )
    ]


def _check_one(
    experiment: s.Experiment,
    rpu_spec: s.RPUSpec,
    rpu_path: str,
    shape: tuple[int, int, int],
    x: np.ndarray,
    y: np.ndarray,
    classes: int | None,
) -> list[Problem]:
    rpu, problems = names.rpu_config(rpu_spec, rpu_path)
    if rpu is None or problems:  # a half-configured tile would only repeat the same faults
        return problems
    inference = experiment.inference is not None and is_inference_family(rpu)
    # In a sweep, the configurations without a noise model skip drift inference (the
    # table compares them at t=0); only a single configuration that cannot drift is
    # an error, because its 'inference' section would be silently ignored.
    if experiment.inference is not None and not inference and experiment.sweep is None:
        problems.append(
            (
                "inference",
                f"{rpu_path} is a {family_of(rpu)}, which has no inference noise model for "
                f"drift; use one of {', '.join(_inference_families())} or remove 'inference'",
            )
        )
    try:
        model = build_model(experiment.model, rpu, shape, rpu_path=rpu_path)
    except ExperimentError as exc:
        return problems + exc.problems
    try:
        optimizer = build_optimizer(experiment.training, model)
        build_scheduler(experiment.training, optimizer)
    except ExperimentError as exc:
        problems += exc.problems
    last = f"model.layers.{len(experiment.model.layers) - 1}"
    try:
        model.train()
        out = model(torch.from_numpy(x))
        if out.dim() != 2 or (classes is not None and out.shape[1] != classes):
            got, want = _text(tuple(out.shape[1:])), classes or "one output per class"
            has = f" but the dataset has {classes} classes" if classes else ""
            fix = f"end with a Linear of out_features: {want}"
            problems.append((last, f"the model ends with {got}{has}; {fix}"))
        else:
            loss = loss_function(experiment.training)(out, torch.from_numpy(y))
            loss.backward()  # type: ignore[no-untyped-call]
    except Exception as exc:  # aihwkit refuses at run time what it accepted at build time
        problems.append((rpu_path, f"a forward pass fails: {names.describe(exc)}"))
        return problems
    if inference and experiment.inference is not None:
        problems += _check_drift(model, experiment.inference.drift_times, rpu_path)
    return problems


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
            return [(rpu_path, f"programming the weights fails: {names.describe(exc)}")]
        for i, t in enumerate(times):
            try:
                model.drift_analog_weights(t)
            except Exception as exc:
                problems.append(
                    (
                        f"inference.drift_times.{i}",
                        f"{s.format_duration(t)} fails with {rpu_path}: {names.describe(exc)}",
                    )
                )
    return problems
