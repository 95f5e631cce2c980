"""What every layer of an experiment's layer list shares, stated once for the two
modules that declare layer types (``model_spec`` and ``model_blocks``).

Unknown fields are refused; a weighted layer may say whether it is ``analog`` and
whether it has a ``bias``; a pooling layer has a window.
"""

from __future__ import annotations

import pydantic
from pydantic import Field

from aif.aims.analog.spec_values import Int

#: Layer models refuse fields they do not know, naming them.
FORBID = pydantic.ConfigDict(extra="forbid")


class LayerBase(pydantic.BaseModel):
    """A layer type: refuses unknown fields."""

    model_config = FORBID


class WeightedLayer(LayerBase):
    """A layer with weights, which may run on an analog tile."""

    analog: bool | None = Field(
        default=None, description="run this layer on an analog tile (default: the model's convert)"
    )
    bias: bool = True


class PoolLayer(LayerBase):
    """A pooling window."""

    kernel_size: Int = Field(ge=1, le=64, description="the side of the window, e.g. kernel_size: 2")
    stride: Int | None = Field(default=None, ge=1, le=64, description="default: kernel_size")
    padding: Int = Field(default=0, ge=0, le=32)
