"""The model part of an experiment: a list of layers, each digital or analog.

Split from :mod:`aif.aims.analog.spec` (which re-exports everything here) because the
layer vocabulary is its own small language: one pydantic class per layer type, a
discriminated union over ``type``, and the short form ``ReLU`` for ``{type: ReLU}``.
Shapes are not checked here; :mod:`aif.aims.analog.layers` follows them through the
network when the experiment is built.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
from pydantic import Field

_FORBID = pydantic.ConfigDict(extra="forbid")


class _Layer(pydantic.BaseModel):
    model_config = _FORBID


class _Weighted(_Layer):
    analog: bool | None = Field(
        default=None, description="run this layer on an analog tile (default: the model's convert)"
    )
    bias: bool = True


class Linear(_Weighted):
    """A fully connected layer."""

    type: Literal["Linear"] = "Linear"
    out_features: int = Field(
        ge=1, le=1_000_000, description="the width of its output, e.g. out_features: 10"
    )
    in_features: int | None = Field(default=None, ge=1, description="inferred when left out")


class Conv2d(_Weighted):
    """A 2-d convolution."""

    type: Literal["Conv2d"] = "Conv2d"
    out_channels: int = Field(
        ge=1, le=100_000, description="the channels of its output, e.g. out_channels: 8"
    )
    kernel_size: int = Field(ge=1, le=64, description="the side of the kernel, e.g. kernel_size: 3")
    stride: int = Field(default=1, ge=1, le=64)
    padding: int = Field(default=0, ge=0, le=64)
    in_channels: int | None = Field(default=None, ge=1, description="inferred when left out")


class _Pool(_Layer):
    kernel_size: int = Field(ge=1, le=64, description="the side of the window, e.g. kernel_size: 2")
    stride: int | None = Field(default=None, ge=1, le=64, description="default: kernel_size")
    padding: int = Field(default=0, ge=0, le=32)


class MaxPool2d(_Pool):
    """Max pooling."""

    type: Literal["MaxPool2d"] = "MaxPool2d"


class AvgPool2d(_Pool):
    """Average pooling."""

    type: Literal["AvgPool2d"] = "AvgPool2d"


class BatchNorm1d(_Layer):
    """Batch normalisation of features (digital)."""

    type: Literal["BatchNorm1d"] = "BatchNorm1d"
    num_features: int | None = Field(default=None, ge=1, description="inferred when left out")


class BatchNorm2d(_Layer):
    """Batch normalisation of channels (digital)."""

    type: Literal["BatchNorm2d"] = "BatchNorm2d"
    num_features: int | None = Field(default=None, ge=1, description="inferred when left out")


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
    | LogSoftmax,
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
)
#: Layers that hold weights and may run on analog tiles.
WEIGHTED_TYPES = ("Linear", "Conv2d")


def _layer_short_form(value: object) -> object:
    """``ReLU`` -> ``{type: ReLU}``; a mapping without ``type`` gets a clear message."""
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, dict) and "type" not in value:
        raise ValueError(f"a layer needs 'type', one of: {', '.join(LAYER_TYPES)}")
    return value


class ModelSpec(pydantic.BaseModel):
    """The network, first layer first."""

    model_config = _FORBID
    layers: list[Annotated[LayerSpec, pydantic.BeforeValidator(_layer_short_form)]] = Field(
        min_length=1,
        description="the layers, first first, e.g. [Flatten, {type: Linear, out_features: 10}]",
    )
    convert: Literal["all", "none"] = Field(
        default="none",
        description="all: every Linear and Conv2d is analog unless it says 'analog: false'",
    )

    def is_analog(self, index: int) -> bool:
        """Whether layer ``index`` runs on an analog tile."""
        layer = self.layers[index]
        if not isinstance(layer, Linear | Conv2d):
            return False
        if layer.analog is not None:
            return layer.analog
        return self.convert == "all"

    @pydantic.model_validator(mode="after")
    def _has_analog_layer(self) -> ModelSpec:
        if not any(self.is_analog(i) for i in range(len(self.layers))):
            raise ValueError(
                "no layer is analog: set 'convert: all' or 'analog: true' on a Linear or Conv2d"
            )
        return self
