"""The parts of ``training`` and ``inference`` that steer a run: early stopping,
input-range calibration and data-parallel ranks.

Split from :mod:`aif.aims.analog.spec` (which re-exports both) to keep that module
small. Shapes only; :mod:`aif.aims.analog.early_stopping` and
:mod:`aif.aims.analog.calibration` and :mod:`aif.aims.analog.ddp.supervisor` do the
work.
"""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic import Field

from aif.aims.analog.spec_values import Int

_FORBID = pydantic.ConfigDict(extra="forbid")


class EarlyStoppingSpec(pydantic.BaseModel):
    """Stop training when the validation metric has not improved for ``patience`` epochs."""

    model_config = _FORBID
    patience: Int = Field(
        default=3, ge=1, le=10_000, description="epochs without improvement before stopping"
    )
    metric: Literal["val_accuracy", "val_loss"] = Field(
        default="val_accuracy",
        description="val_accuracy (higher is better; for regression: the validation mse, "
        "lower is better) or val_loss (lower is better)",
    )
    min_delta: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="how much better than the best counts as an improvement",
    )


class CalibrateSpec(pydantic.BaseModel):
    """aihwkit's post-training input-range calibration (``calibrate_input_ranges``)."""

    model_config = _FORBID
    batches: Int = Field(default=10, ge=1, le=100_000, description="training batches to pass")
    type: Literal["cache_quantile", "max", "moving_std", "moving_quantile"] = Field(
        default="cache_quantile",
        description="aihwkit's InputRangeCalibrationType: CACHE_QUANTILE, MAX, MOVING_STD, "
        "MOVING_QUANTILE",
    )
    quantile: float = Field(
        default=0.99995, gt=0, le=1, description="cache_quantile, moving_quantile: the quantile"
    )


class DistributedSpec(pydantic.BaseModel):
    """Data-parallel training: ``training: {distributed: {ranks: 2, backend: gloo}}``.

    The job trains on ``ranks`` processes with torch's DistributedDataParallel; each
    global batch of ``dataset.batch_size`` samples is split across the ranks, so the
    model sees the same batches as on one rank (see :mod:`aif.aims.analog.ddp.rank`).
    """

    model_config = _FORBID
    ranks: Int = Field(default=2, ge=1, le=256, description="training processes")
    backend: Literal["gloo", "nccl"] = Field(
        default="gloo",
        description="torch.distributed backend: gloo (CPU, or GPU tensors) or nccl (GPUs only)",
    )
    restarts: Int = Field(
        default=0,
        ge=0,
        le=100,
        description="after a rank dies or fails, start the ranks again from the last finished "
        "epoch's weights, up to this many times (0: the job fails, naming the rank)",
    )
