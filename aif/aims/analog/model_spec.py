"""The model part of an experiment: a list of layers, a zoo model or the user's torch model.

Split from :mod:`aif.aims.analog.spec` (which re-exports everything here) because the
layer vocabulary is its own small language: one pydantic class per layer type, a
discriminated union over ``type``, and the short form ``ReLU`` for ``{type: ReLU}``.
Shapes are not checked here; :mod:`aif.aims.analog.layers` follows them through the
network when the experiment is built.

A model is one of three sources: ``layers`` (the list above), ``zoo: NAME`` (a built-in
architecture of :mod:`aif.aims.analog.zoo`) or ``torch: package.module:Factory`` (a
torch module class or factory from the environment), the last two called with
``args`` and converted by aihwkit's ``convert_to_analog``
(:mod:`aif.aims.analog.torch_models`). Zoo names, their arguments and the factory are
checked when the experiment is built, not here, so the spec stays free of torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from aif.aims.analog.layer_base import FORBID as _FORBID
from aif.aims.analog.layer_base import LayerBase as _Layer
from aif.aims.analog.layer_base import PoolLayer as _Pool
from aif.aims.analog.layer_base import WeightedLayer as _Weighted
from aif.aims.analog.model_blocks import (
    BLOCK_LAYER_TYPES,
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
from aif.aims.analog.spec_values import Int


class Linear(_Weighted):
    """A fully connected layer."""

    type: Literal["Linear"] = "Linear"
    out_features: Int = Field(
        ge=1, le=1_000_000, description="the width of its output, e.g. out_features: 10"
    )
    in_features: Int | None = Field(default=None, ge=1, description="inferred when left out")


class Conv2d(_Weighted):
    """A 2-d convolution."""

    type: Literal["Conv2d"] = "Conv2d"
    out_channels: Int = Field(
        ge=1, le=100_000, description="the channels of its output, e.g. out_channels: 8"
    )
    kernel_size: Int = Field(ge=1, le=64, description="the side of the kernel, e.g. kernel_size: 3")
    stride: Int = Field(default=1, ge=1, le=64)
    padding: Int = Field(default=0, ge=0, le=64)
    in_channels: Int | None = Field(default=None, ge=1, description="inferred when left out")


class MaxPool2d(_Pool):
    """Max pooling."""

    type: Literal["MaxPool2d"] = "MaxPool2d"


class AvgPool2d(_Pool):
    """Average pooling."""

    type: Literal["AvgPool2d"] = "AvgPool2d"


class BatchNorm1d(_Layer):
    """Batch normalisation of features (digital)."""

    type: Literal["BatchNorm1d"] = "BatchNorm1d"
    num_features: Int | None = Field(default=None, ge=1, description="inferred when left out")


class BatchNorm2d(_Layer):
    """Batch normalisation of channels (digital)."""

    type: Literal["BatchNorm2d"] = "BatchNorm2d"
    num_features: Int | None = Field(default=None, ge=1, description="inferred when left out")


class Dropout(_Layer):
    """Dropout during training."""

    type: Literal["Dropout"] = "Dropout"
    p: float = Field(default=0.5, ge=0, lt=1)


class Flatten(_Layer):
    """Flattens everything but the batch dimension."""

    type: Literal["Flatten"] = "Flatten"


class ReLU(_Layer):
    """Rectified linear unit."""

    type: Literal["ReLU"] = "ReLU"


class Tanh(_Layer):
    """Hyperbolic tangent."""

    type: Literal["Tanh"] = "Tanh"


class Sigmoid(_Layer):
    """Logistic sigmoid."""

    type: Literal["Sigmoid"] = "Sigmoid"


class LogSoftmax(_Layer):
    """Log of the softmax over classes (pair it with loss ``nll``)."""

    type: Literal["LogSoftmax"] = "LogSoftmax"


class Sequential(_Layer):
    """A nested list of layers; its layers are named ``<i>.<j>`` (``rpu: {layers: ...}``)."""

    type: Literal["Sequential"] = "Sequential"
    layers: LayerList = Field(min_length=1, description="Sequential, Residual: the inner layers")


class Residual(_Layer):
    """``layers`` with their input added to their output (a ResNet block)."""

    type: Literal["Residual"] = "Residual"
    layers: LayerList = Field(min_length=1)
    shortcut: Literal["identity", "projection"] = Field(
        default="identity",
        description="what is added: the input itself, or its 1x1 Conv2d (Linear on features, "
        "Conv1d on sequences) 'projection' to the shape of the output, analog when a layer "
        "of the block is and named <i>.shortcut",
    )


LayerSpec = Annotated[
    Linear
    | Conv2d
    | MaxPool2d
    | AvgPool2d
    | BatchNorm1d
    | BatchNorm2d
    | Dropout
    | Flatten
    | ReLU
    | Tanh
    | Sigmoid
    | LogSoftmax
    | Conv1d
    | MaxPool1d
    | AvgPool1d
    | AdaptiveAvgPool2d
    | Embedding
    | GELU
    | LeakyReLU
    | ELU
    | LSTM
    | GRU
    | RNN
    | Sequential
    | Residual,
    Field(discriminator="type"),
]
#: Layer type names, as written in YAML.
LAYER_TYPES = (
    "Linear",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout",
    "Flatten",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "LogSoftmax",
    *BLOCK_LAYER_TYPES,
    "Sequential",
    "Residual",
)
#: Layers that hold weights and may run on analog tiles.
WEIGHTED_TYPES = ("Linear", "Conv2d", "Conv1d", "LSTM", "GRU", "RNN")
#: Layers that hold a list of layers.
CONTAINER_TYPES = ("Sequential", "Residual")
_WEIGHTED = Linear | Conv2d | Conv1d | LSTM | GRU | RNN


def _layer_short_form(value: object) -> object:
    """``ReLU`` -> ``{type: ReLU}``; a mapping without ``type`` gets a clear message."""
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, dict) and "type" not in value:
        raise ValueError(f"a layer needs 'type', one of: {', '.join(LAYER_TYPES)}")
    return value


#: A list of layers, each in the long or the short form.
LayerList = list[Annotated[LayerSpec, pydantic.BeforeValidator(_layer_short_form)]]
Sequential.model_rebuild()
Residual.model_rebuild()


def weighted_analog(layer: Any, convert: str) -> bool:
    """Whether a Linear, Conv or recurrent ``layer`` runs on analog tiles."""
    if layer.analog is not None:
        return bool(layer.analog)
    return convert == "all"


def analog_layer_names(layers: list[Any], convert: str, prefix: str = "") -> Iterator[str]:
    """The dotted names (``0``, ``3.1``, ``3.shortcut``) of the analog layers of ``layers``."""
    for i, layer in enumerate(layers):
        name = f"{prefix}{i}"
        if isinstance(layer, _WEIGHTED):
            if weighted_analog(layer, convert):
                yield name
        elif isinstance(layer, Sequential | Residual):
            inner = list(analog_layer_names(layer.layers, convert, f"{name}."))
            yield from inner
            if inner and isinstance(layer, Residual) and layer.shortcut == "projection":
                yield f"{name}.shortcut"


#: ``package.module:Name`` (the form of a class-path AIM).
TORCH_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_.]*$"
#: The fields that say where a model comes from; exactly one is given.
MODEL_SOURCES = ("layers", "zoo", "torch")


class ModelSpec(pydantic.BaseModel):
    """The network: a list of layers, a zoo model or a torch model of the user's."""

    model_config = _FORBID
    layers: LayerList | None = Field(
        default=None,
        min_length=1,
        description="the layers, first first, e.g. [Flatten, {type: Linear, out_features: 10}]",
    )
    zoo: str | None = Field(
        default=None,
        description="a built-in architecture (mlp, lenet5, vgg8, resnet, lstm), built from "
        "'args' and converted by aihwkit's convert_to_analog",
    )
    torch: str | None = Field(
        default=None,
        pattern=TORCH_PATH,
        description="package.module:ClassOrFactory, a torch module called with 'args' and "
        "converted by aihwkit's convert_to_analog",
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="zoo and torch: the factory's keyword arguments"
    )
    exclude: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="zoo and torch: module names (fnmatch patterns such as 'fc*') to keep digital",
    )
    weights: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="zoo and torch: a .npz or .safetensors file of the model's state dict "
        "(pre-trained digital weights, loaded before conversion; relative to the "
        "experiment file)",
    )
    convert: Literal["all", "none"] = Field(
        default="none",
        description="layers: 'all' makes every Linear, Conv and recurrent layer analog "
        "unless it says 'analog: false'",
    )

    @property
    def source(self) -> Literal["layers", "zoo", "torch"]:
        """Where the model comes from (the one source field given)."""
        if self.zoo is not None:
            return "zoo"
        if self.torch is not None:
            return "torch"
        return "layers"

    def is_analog(self, index: int) -> bool:
        """Whether layer ``index`` of ``layers`` runs on analog tiles (a block: any of it)."""
        layer = (self.layers or [])[index]
        return any(analog_layer_names([layer], self.convert))

    def analog_names(self) -> list[str]:
        """The dotted names of the analog layers (``0``, ``3.1``), as ``rpu.layers`` matches."""
        return list(analog_layer_names(self.layers or [], self.convert))

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        given = [f for f in MODEL_SOURCES if getattr(self, f) is not None]
        if len(given) != 1:
            listed = ", ".join(repr(f) for f in given)
            raise ValueError(
                f"give one of 'layers', 'zoo' or 'torch', not {listed}"
                if given
                else "give 'layers' (a list of layers), 'zoo' (a built-in model) or "
                "'torch' (package.module:ClassOrFactory)"
            )
        if self.layers is None:
            # 'none' is the default a job's dumped spec writes out, so only 'all' is a fault
            if self.convert != "none":
                raise ValueError(
                    f"'convert' is for 'layers'; aihwkit's convert_to_analog decides what a "
                    f"{self.source} model runs on analog tiles: remove it (keep a module "
                    "digital with 'exclude')"
                )
            return self
        for name in ("args", "exclude", "weights"):
            if getattr(self, name):
                raise ValueError(f"{name!r} is for 'zoo' and 'torch' models, not 'layers'")
        if not self.analog_names():
            raise ValueError(
                "no layer is analog: set 'convert: all' or 'analog: true' on a Linear or Conv2d"
            )
        return self
