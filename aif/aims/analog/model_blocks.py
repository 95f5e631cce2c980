"""More layer types for a layer list: sequences, embeddings, recurrent layers, activations.

Split from :mod:`aif.aims.analog.model_spec` (which puts them into its ``LayerSpec``
union and re-exports them) to keep that module readable. A sample here is one of

* ``(features,)``: a flat vector, or integer tokens for ``Embedding``;
* ``(channels, length)``: what ``Conv1d`` and the 1-d pools read; also ``(time,
  features)``, what ``LSTM``, ``GRU`` and ``RNN`` read (batch first, as in torch);
* ``(channels, height, width)``: an image.

Shapes are checked by :mod:`aif.aims.analog.layer_blocks` when the model is built.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aif.aims.analog.layer_base import LayerBase as _Layer
from aif.aims.analog.layer_base import PoolLayer as _Pool1d
from aif.aims.analog.layer_base import WeightedLayer as _Weighted


class Conv1d(_Weighted):
    """A 1-d convolution over ``(channels, length)`` samples (analog: ``AnalogConv1d``)."""

    type: Literal["Conv1d"] = "Conv1d"
    out_channels: int = Field(
        ge=1, le=100_000, description="the channels of its output, e.g. out_channels: 8"
    )
    kernel_size: int = Field(ge=1, le=64, description="the length of the kernel")
    stride: int = Field(default=1, ge=1, le=64)
    padding: int = Field(default=0, ge=0, le=64)
    in_channels: int | None = Field(default=None, ge=1, description="inferred when left out")


class MaxPool1d(_Pool1d):
    """Max pooling along the length of ``(channels, length)`` samples."""

    type: Literal["MaxPool1d"] = "MaxPool1d"


class AvgPool1d(_Pool1d):
    """Average pooling along the length of ``(channels, length)`` samples."""

    type: Literal["AvgPool1d"] = "AvgPool1d"


class AdaptiveAvgPool2d(_Layer):
    """Average pooling of an image to a fixed size (``output_size: 1``: global pooling)."""

    type: Literal["AdaptiveAvgPool2d"] = "AdaptiveAvgPool2d"
    output_size: int = Field(
        default=1, ge=1, le=4096, description="the side of the pooled image, e.g. output_size: 1"
    )


class Embedding(_Layer):
    """A table of vectors for integer tokens (digital): ``(T,)`` tokens -> ``(T, dim)``."""

    type: Literal["Embedding"] = "Embedding"
    num_embeddings: int = Field(
        ge=1, le=10_000_000, description="the number of tokens; each token is below it"
    )
    embedding_dim: int = Field(ge=1, le=100_000, description="the width of each token's vector")


class GELU(_Layer):
    """Gaussian error linear unit."""

    type: Literal["GELU"] = "GELU"


class LeakyReLU(_Layer):
    """Rectified linear unit with a slope below zero."""

    type: Literal["LeakyReLU"] = "LeakyReLU"
    negative_slope: float = Field(default=0.01, ge=0, le=1, description="the slope below zero")


class ELU(_Layer):
    """Exponential linear unit."""

    type: Literal["ELU"] = "ELU"
    alpha: float = Field(default=1.0, gt=0, le=100, description="ELU: the value it tends to")


class _Recurrent(_Weighted):
    hidden_size: int = Field(ge=1, le=100_000, description="the units of each recurrent layer")
    num_layers: int = Field(default=1, ge=1, le=16, description="recurrent layers stacked")
    bidirectional: bool = Field(
        default=False, description="also read the sequence backwards (doubles the output width)"
    )
    last: bool = Field(
        default=True,
        description="keep only the last time step's output (a Linear may follow); "
        "false: the whole sequence",
    )


class LSTM(_Recurrent):
    """Long short-term memory over ``(time, features)`` (analog: aihwkit's ``AnalogLSTMCell``)."""

    type: Literal["LSTM"] = "LSTM"


class GRU(_Recurrent):
    """Gated recurrent unit over ``(time, features)`` (analog: aihwkit's ``AnalogGRUCell``)."""

    type: Literal["GRU"] = "GRU"


class RNN(_Recurrent):
    """Tanh recurrent layer over ``(time, features)`` (analog: ``AnalogVanillaRNNCell``)."""

    type: Literal["RNN"] = "RNN"


#: The layer types of this module, as written in YAML.
BLOCK_LAYER_TYPES = (
    "Conv1d",
    "MaxPool1d",
    "AvgPool1d",
    "AdaptiveAvgPool2d",
    "Embedding",
    "GELU",
    "LeakyReLU",
    "ELU",
    "LSTM",
    "GRU",
    "RNN",
)
