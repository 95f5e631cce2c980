"""The analog experiment as data: what users write in YAML, checked field by field.

An experiment names a data set, a model (a list of layers, each digital or analog),
an aihwkit RPU configuration, how to train and how to test after drift. This module
only checks the *shape* of what was written (types, ranges, unknown fields); names
that must exist in aihwkit (config families, presets, devices, noise models, their
fields) are resolved by :mod:`aif.aims.analog.build`, which lists the valid choices
when one is wrong. A minimal experiment::

    name: hwa-mlp
    model:
      convert: all
      layers:
        - Flatten
        - {type: Linear, out_features: 64}
        - ReLU
        - {type: Linear, out_features: 10}
    rpu: {config: InferenceRPUConfig, noise_model: PCMLikeNoiseModel}
    training: {epochs: 5}
    inference: {drift_times: [1s, 1h, 1d, 1y]}

Layer sizes that follow from the data (``in_features``, ``in_channels``,
``num_features``) are inferred; give them only to have them checked. Instead of
``layers``, ``model: {zoo: resnet, args: {depth: 20}}`` takes a built-in architecture
and ``model: {torch: package.module:Net, args: {...}}`` the user's own torch model;
aihwkit's ``convert_to_analog`` makes both analog.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from aif.aims.analog.data_spec import FILE_SETS, AugmentSpec, DatasetSpec
from aif.aims.analog.model_blocks import (
    ELU,
    GELU,
    GRU,
    LSTM,
    RNN,
    AdaptiveAvgPool2d,
    AvgPool1d,
    Conv1d,
    Embedding,
    LeakyReLU,
    MaxPool1d,
)
from aif.aims.analog.model_spec import (
    LAYER_TYPES,
    WEIGHTED_TYPES,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LayerSpec,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ModelSpec,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Tanh,
)
from aif.aims.analog.run_spec import CalibrateSpec, DistributedSpec, EarlyStoppingSpec
from aif.aims.analog.spec_values import Int, refuse_bad_numbers

__all__ = [
    "DURATION_UNITS",
    "ELU",
    "FILE_SETS",
    "GELU",
    "GRU",
    "LAYER_TYPES",
    "LSTM",
    "NAME_RULE",
    "RNN",
    "WEIGHTED_TYPES",
    "AdaptiveAvgPool2d",
    "AugmentSpec",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "CalibrateSpec",
    "Conv1d",
    "Conv2d",
    "DatasetSpec",
    "DistributedSpec",
    "Dropout",
    "Duration",
    "EarlyStoppingSpec",
    "Embedding",
    "Experiment",
    "Flatten",
    "InferenceSpec",
    "LayerSpec",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MaxPool1d",
    "MaxPool2d",
    "ModelSpec",
    "NoiseModelSpec",
    "OptimizerSpec",
    "RPUSpec",
    "ReLU",
    "Residual",
    "ScheduleSpec",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "TrainingSpec",
    "format_duration",
    "job_name",
    "parse_duration",
    "valid_name",
]

_FORBID = pydantic.ConfigDict(extra="forbid")

#: Seconds per unit of a written duration (``1y`` is 365 days, as drift papers use).
DURATION_UNITS = {
    "s": 1.0,
    "min": 60.0,
    "h": 3_600.0,
    "d": 86_400.0,
    "w": 604_800.0,
    "y": 31_536_000.0,
}
#: Longest drift time, seconds (about 317 years). Drift laws are fitted to hours or years
#: of measurement; far past them the numbers mean nothing, and an emulated chip's clock
#: (``imc_chip.config.MAX_CLOCK``, 1e13 s) holds 1000 repetitions of it.
MAX_DRIFT_TIME = 1e10
_DURATION = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(s|min|h|d|w|y)\s*$")


def parse_duration(value: object) -> float:
    """``"1h"`` -> ``3600.0``; plain numbers are seconds (raises ``ValueError``)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            units = ", ".join(DURATION_UNITS)
            raise ValueError(f"{value!r} is not a duration; write e.g. 1s, 1h, 1y (units: {units})")
        seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)]
    else:
        raise ValueError("a duration is a number of seconds or a string like '1h'")
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration; write e.g. 1h, 1y or 1e9s")
    if seconds <= 0:
        raise ValueError(f"a drift time must be positive, got {value!r}")
    if seconds > MAX_DRIFT_TIME:
        raise ValueError(
            f"{value!r} is past the longest drift time, {MAX_DRIFT_TIME:g} s (about 317 "
            "years, far outside any measured drift); write e.g. 10y"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """``3600`` -> ``1h``: drift times as analog-AI papers write them."""
    for unit in ("y", "w", "d", "h", "min"):
        size = DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, pydantic.BeforeValidator(parse_duration)]


def _one_or_more(value: object) -> object:
    """``drift_times: 1d`` is the one-element list ``[1d]``."""
    return [value] if isinstance(value, str | int | float) else value


# -- RPU configuration -----------------------------------------------------------------


class NoiseModelSpec(pydantic.BaseModel):
    """An aihwkit inference noise model by class name, with constructor arguments."""

    model_config = _FORBID
    name: str = Field(description="e.g. PCMLikeNoiseModel, ReRamWan2022NoiseModel")
    params: dict[str, Any] = Field(default_factory=dict)

    @pydantic.field_validator("params")
    @classmethod
    def _finite(cls, params: dict[str, Any]) -> dict[str, Any]:
        return refuse_bad_numbers(params, "")  # type: ignore[no-any-return]


def _noise_short_form(value: object) -> object:
    """``PCMLikeNoiseModel`` -> ``{name: PCMLikeNoiseModel}``; ``none`` is no noise model."""
    if isinstance(value, str):
        return None if value.strip().lower() == "none" else {"name": value}
    return value


def _rpu_short_form(value: object) -> object:
    """``rpu: InferenceRPUConfig`` -> ``{config: InferenceRPUConfig}``."""
    return {"config": value} if isinstance(value, str) else value


def _text_keys(value: object) -> object:
    """``layers: {0: PCMPreset}``: YAML reads a layer index as an integer; it is a name."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class RPUSpec(pydantic.BaseModel):
    """An aihwkit RPU configuration: a family or preset, then overrides by field name.

    Every section is a mapping of aihwkit field names to values; enum fields take
    the enum member's name (``noise_management: ABS_MAX``). Besides the sections named
    here, any parameter section of the config class (its dataclass fields holding
    aihwkit parameters, e.g. ``act_quant_config``) is taken by its own name, so these
    models allow extra fields: the names are checked against aihwkit itself, for the
    config class written, when the experiment is validated. ``layers`` gives some layers
    configurations of their own.
    """

    model_config = pydantic.ConfigDict(extra="allow")
    config: str = Field(
        default="InferenceRPUConfig",
        description="a class of aihwkit.simulator.configs (InferenceRPUConfig, SingleRPUConfig, "
        "UnitCellRPUConfig, TorchInferenceRPUConfig, FloatingPointRPUConfig, ...) or of "
        "aihwkit.simulator.presets (ReRamSBPreset, TikiTakaReRamSBPreset, PCMPreset, ...)",
    )
    device: str | None = Field(
        default=None,
        description="a device class of aihwkit (ConstantStepDevice, ReRamSBPresetDevice, ...) "
        "that replaces the config's device",
    )
    device_params: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides on the device's fields (dw_min: 0.01); compound devices: "
        "unit_cell_devices: [{dw_min: 0.1}, {type: SoftBoundsDevice}], unit_cell_devices.0.dw_min",
    )
    forward: dict[str, Any] = Field(default_factory=dict, description="forward IOParameters")
    backward: dict[str, Any] = Field(default_factory=dict, description="backward IOParameters")
    update: dict[str, Any] = Field(default_factory=dict, description="UpdateParameters")
    mapping: dict[str, Any] = Field(
        default_factory=dict, description="MappingParameter: max_input_size, max_output_size, ..."
    )
    modifier: dict[str, Any] = Field(
        default_factory=dict, description="weight noise during hardware-aware training"
    )
    clip: dict[str, Any] = Field(default_factory=dict, description="weight clipping")
    remap: dict[str, Any] = Field(
        default_factory=dict, description="WeightRemapParameter: remapping of weights to columns"
    )
    pre_post: dict[str, Any] = Field(
        default_factory=dict,
        description="PrePostProcessingParameter: input_range: {enable: true, ...} learns the "
        "input ranges",
    )
    runtime: dict[str, Any] = Field(default_factory=dict, description="RuntimeParameter")
    noise_model: Annotated[NoiseModelSpec | None, pydantic.BeforeValidator(_noise_short_form)] = (
        None
    )
    drift_compensation: str | None = Field(
        default=None,
        description="e.g. GlobalDriftCompensation, PerColumnDriftCompensation; 'none' for none; "
        "left out: aihwkit's default",
    )
    layers: Annotated[
        dict[str, Annotated[RPUSpec, pydantic.BeforeValidator(_rpu_short_form)]],
        pydantic.BeforeValidator(_text_keys),
    ] = Field(
        default_factory=dict,
        description="module-name pattern -> RPU configuration for the layers it matches "
        "(layer indices of a layer list, fnmatch patterns of a zoo or torch model); "
        "the first match wins, the other layers use this configuration",
    )

    @pydantic.field_validator(
        *("device_params", "forward", "backward", "update", "mapping", "modifier", "clip"),
        *("remap", "pre_post", "runtime"),
    )
    @classmethod
    def _finite(cls, section: dict[str, Any]) -> dict[str, Any]:
        """NaN and infinity mean nothing to aihwkit; a negative noise neither."""
        return refuse_bad_numbers(section, "")  # type: ignore[no-any-return]

    @pydantic.model_validator(mode="after")
    def _finite_extra_sections(self) -> RPUSpec:
        refuse_bad_numbers(self.model_extra or {}, "")
        return self

    def sections(self) -> dict[str, Any]:
        """The parameter sections written, the named ones and the extra ones, in order."""
        named = (
            *("forward", "backward", "update", "mapping", "modifier", "clip"),
            *("remap", "pre_post", "runtime"),
        )
        return {**{n: getattr(self, n) for n in named}, **(self.model_extra or {})}


#: An RPU configuration as a field: a mapping, or only the config name.
RPU_FIELD = Annotated[RPUSpec, pydantic.BeforeValidator(_rpu_short_form)]


# -- training and inference -------------------------------------------------------------


class OptimizerSpec(pydantic.BaseModel):
    """An optimizer aihwkit supports: its own, or a torch one wrapped in AnalogOptimizer."""

    model_config = _FORBID
    name: str = Field(
        default="AnalogSGD",
        min_length=1,
        max_length=64,
        description="AnalogSGD, AnalogAdam, or a torch.optim class (AdamW, RMSprop, ...) "
        "that aihwkit's AnalogOptimizer wraps",
    )
    lr: float = Field(default=0.1, gt=0, le=100, allow_inf_nan=False)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="further arguments of the torch optimizer (momentum, weight_decay, ...)",
    )

    @pydantic.field_validator("params")
    @classmethod
    def _finite(cls, params: dict[str, Any]) -> dict[str, Any]:
        return refuse_bad_numbers(params, "")  # type: ignore[no-any-return]


class ScheduleSpec(pydantic.BaseModel):
    """A learning-rate schedule, stepped once per epoch."""

    model_config = _FORBID
    name: Literal["constant", "step", "exponential", "cosine"] = "constant"
    step_size: Int = Field(default=10, ge=1, description="step: epochs between decays")
    gamma: float = Field(default=0.5, gt=0, le=1, description="step, exponential: decay factor")


class TrainingSpec(pydantic.BaseModel):
    """How to train; ``epochs: 0`` skips training (e.g. to test a loaded checkpoint)."""

    model_config = _FORBID
    epochs: Int = Field(default=10, ge=0, le=10_000)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    loss: Literal["cross_entropy", "nll", "mse"] = Field(
        default="cross_entropy",
        description="nll expects a LogSoftmax last layer; mse: regression (or one-hot classes)",
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    seed: Int = 0
    seeds: list[Annotated[Int, Field(ge=0)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="one job per seed (labels seed-<n>), instead of 'seed'",
    )
    clip_grad_norm: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="clip the gradients' total norm before each step",
    )
    early_stopping: EarlyStoppingSpec | None = Field(
        default=None, description="needs dataset.validation_fraction > 0"
    )
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32",
        description="the dtype the model trains in (aihwkit's half-precision training, "
        "torch tiles only); calibration, checkpoints and drift inference run in float32",
    )
    distributed: DistributedSpec | None = Field(
        default=None,
        description="train on several processes with DistributedDataParallel: "
        "{ranks: 2, backend: gloo}; inference tiles only",
    )

    @pydantic.field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds repeat: {seeds}; give each seed once")
        return seeds


class InferenceSpec(pydantic.BaseModel):
    """Accuracy after programming the weights and letting the conductances drift."""

    model_config = _FORBID
    drift_times: Annotated[list[Duration], pydantic.BeforeValidator(_one_or_more)] = Field(
        default_factory=lambda: [1.0, 3_600.0, 86_400.0, 31_536_000.0],
        min_length=1,
        max_length=64,
        description="seconds, or durations like 1s, 1h, 1d, 1y; one alone needs no brackets",
    )
    repetitions: Int = Field(default=5, ge=1, le=1000, description="programming draws per time")
    compensation: Literal["with", "without", "both"] = Field(
        default="both", description="report accuracy with and/or without drift compensation"
    )
    seed: Int = 0
    calibrate: CalibrateSpec | None = Field(
        default=None, description="calibrate input ranges on training batches before drift"
    )


# -- the experiment ---------------------------------------------------------------------

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: The rule of ``_NAME`` in words, for messages.
NAME_RULE = (
    "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters"
)


def valid_name(text: str) -> bool:
    """Whether ``text`` may name an experiment, a sweep label or a checkpoint."""
    return re.match(_NAME, text) is not None


class Experiment(pydantic.BaseModel):
    """One analog experiment; a ``sweep`` makes one job per named RPU configuration."""

    model_config = _FORBID
    name: str = Field(pattern=_NAME, description=f"the experiment's name: {NAME_RULE}")
    description: str = ""
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(
        description="the network: model: {convert: all, layers: [...]}, {zoo: resnet, "
        "args: {depth: 20}} or {torch: package.module:Net, args: {...}}"
    )
    rpu: RPU_FIELD | None = None
    sweep: dict[Annotated[str, Field(pattern=_NAME)], RPU_FIELD] | None = Field(
        default=None, min_length=1, description="label -> RPU configuration, one job each"
    )
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    inference: InferenceSpec | None = None
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="auto", description="where to simulate; auto takes cuda when a simulator has it"
    )
    checkpoint: str | None = Field(
        default=None,
        pattern=_NAME,
        description="save the trained weights in the simulator's storage under this name",
    )
    load_checkpoint: str | None = Field(
        default=None, pattern=_NAME, description="start from weights saved under this name"
    )

    @pydantic.model_validator(mode="after")
    def _one_configuration_source(self) -> Experiment:
        if self.rpu is not None and self.sweep is not None:
            raise ValueError("give 'rpu' or 'sweep', not both")
        if self.rpu is None and self.sweep is None:
            self.rpu = RPUSpec()
        if self.training.epochs == 0 and self.load_checkpoint is None and not self.model.weights:
            raise ValueError(
                "training.epochs is 0 and there is no 'load_checkpoint' or 'model.weights': "
                "nothing would be tested"
            )
        return self

    def configurations(self) -> dict[str, RPUSpec]:
        """Label -> RPU configuration: the sweep, or ``{"": rpu}`` for a single one."""
        if self.sweep is not None:
            return dict(self.sweep)
        assert self.rpu is not None
        return {"": self.rpu}

    def job(self, label: str) -> Experiment:
        """The single-configuration experiment one job runs."""
        configs = self.configurations()
        return self.model_copy(update={"rpu": configs[label], "sweep": None})


def job_name(experiment: str, label: str) -> str:
    """``hwa-cnn`` or ``sweep[reram]``: how results and logs name one job."""
    return f"{experiment}[{label}]" if label else experiment
