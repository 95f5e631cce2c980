"""Post-training input-range calibration: a step of its own, before drift inference.

``inference: {calibrate: {batches: 10}}`` passes the first ``batches`` training batches
(in data order, without augmentation) through the trained model under aihwkit's
``calibrate_input_ranges``, which sets each tile's input range (the DAC range) from the
inputs it saw. aihwkit 1.2.0 does this with ``force_all_layers=True``: every tile gets
an input range, and noise management is turned off on the tiles it calibrates, as
aihwkit requires. torch is seeded from the training seed around it, and the caller's
random state is restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from aif.aims.analog.run_spec import CalibrateSpec

_TYPES = {
    "cache_quantile": "CACHE_QUANTILE",
    "max": "MAX",
    "moving_std": "MOVING_STD",
    "moving_quantile": "MOVING_QUANTILE",
}


def has_input_ranges(rpu_config: Any) -> bool:
    """Whether tiles of ``rpu_config`` have input ranges aihwkit can calibrate."""
    from aihwkit.simulator.parameters.pre_post import PrePostProcessingRPU

    return isinstance(rpu_config, PrePostProcessingRPU) and hasattr(rpu_config, "forward")


def calibrate(
    model: Any,
    x: np.ndarray,
    spec: CalibrateSpec,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
) -> int:
    """Calibrate ``model``'s input ranges on the first ``spec.batches`` batches of ``x``.

    Returns the number of batches passed. The model's training mode is restored.
    """
    from aihwkit.inference.calibration import InputRangeCalibrationType, calibrate_input_ranges

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    starts = list(range(0, len(x), batch_size))[: spec.batches]

    def batches() -> Iterator[tuple[tuple[torch.Tensor], dict[str, Any]]]:
        for lo in starts:
            xb = np.ascontiguousarray(x[lo : lo + batch_size], dtype=np.float32)
            yield (torch.from_numpy(xb).to(device),), {}

    was_training = bool(model.training)
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            calibrate_input_ranges(
                model,
                InputRangeCalibrationType[_TYPES[spec.type]],
                batches(),
                quantile=spec.quantile,
            )
    finally:
        model.train(was_training)
    return len(starts)
