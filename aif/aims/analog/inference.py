"""Accuracy after programming and drift, with and without drift compensation.

What aihwkit 1.2.0 does (``aihwkit.simulator.tiles.inference``, shared by the RPUCuda
``InferenceTile`` and the pure-torch ``TorchInferenceTile``):

* ``program_weights()`` keeps the tile's current weights as the *reference* (once; later
  calls reprogram from the same reference), draws programming noise and per-device
  drift exponents from ``rpu_config.noise_model`` and writes the programmed weights
  into the tile. If ``rpu_config.drift_compensation`` is set, it then records a
  *baseline*: a forward pass of a read-out input (``eye`` for
  ``GlobalDriftCompensation``) through the freshly programmed tile, reduced to a
  number (mean absolute output) or a vector (``PerColumnDriftCompensation``).
* ``drift_weights(t)`` writes ``noise_model.apply_drift_noise(programmed, params, t)``
  into the tile, i.e. the conductances at time ``t`` with read noise. With a
  compensation it repeats the read-out and stores ``alpha = baseline / current``.
* In eval mode, ``post_forward`` multiplies every tile output by ``alpha`` while
  ``rpu_config.drift_compensation`` is set: compensation is a digital rescaling of the
  outputs, not a change to the conductances.

So one programmed-and-drifted state serves both measurements here. When "with" is
measured, each tile's compensation is installed before programming (its own, or
``GlobalDriftCompensation`` when the configuration has ``drift_compensation: null``;
aihwkit's inference configurations default to ``GlobalDriftCompensation``) so that
baselines and ``alpha`` exist, and ``rpu_config.drift_compensation`` is set to ``None``
only around the forward passes that measure "without" (``post_forward`` reads it on
every call). Both numbers then come from the same programming draw and the same
drifted conductances, so their difference is the compensation's doing alone. When
only "without" is measured, compensation stays off throughout.

Determinism: torch is seeded before programming and drifting each tile and before
each evaluation, from ``(seed, repetition, stage, time, tile or mode)``, so programming
noise, drift noise and the torch tiles' forward noise repeat exactly, and a "without"
number does not depend on whether "with" was measured too (the compensation read-outs
draw forward noise between tiles, which would otherwise shift the later draws). The
RPUCuda tiles draw forward noise from a clock-seeded C++ generator that aihwkit does
not expose, so with them results repeat only up to that noise. The caller's torch
random state is left as it was.

The trained model is left as it was: each tile's weights, programming state, ``alpha``
and compensation setting are saved first and restored afterwards, even on errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from aif.aims.analog.training import evaluate
from aif.errors import ExperimentError

Compensation = Literal["with", "without", "both"]
_STATE = (
    "reference_combined_weights",
    "programmed_weights",
    "drift_noise_parameters",
    "drift_baseline",
    "drift_readout_tensor",
)
_PROGRAM, _DRIFT, _EVAL = 0, 1, 2


@dataclass(frozen=True)
class DriftPoint:
    """Test accuracy at one inference time, over all programming repetitions."""

    seconds: float
    compensated: bool
    mean: float
    std: float
    accuracies: list[float] = field(default_factory=list)


def inference_tiles(model: Any) -> list[Any]:
    """The model's tiles that aihwkit can program and drift (inference tiles)."""
    from aihwkit.simulator.tiles.inference import InferenceTileWithPeriphery

    return [t for t in model.analog_tiles() if isinstance(t, InferenceTileWithPeriphery)]


def drift_inference(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    times: list[float],
    repetitions: int,
    compensation: Compensation,
    seed: int,
    batch_size: int,
    device: torch.device,
    should_stop: Callable[[], bool] | None = None,
    score: Callable[[Any, np.ndarray, np.ndarray, int, torch.device], float] = evaluate,
) -> list[DriftPoint]:
    """Program ``repetitions`` times; at each time in ``times``, drift and test.

    Returns one :class:`DriftPoint` per time and measured mode, in the order of
    ``times``, uncompensated before compensated. ``should_stop`` is asked before
    each repetition; when it says stop, the points cover the repetitions finished so
    far (none: an empty list). ``score`` measures the model (accuracy by default;
    the mse for regression). Raises :class:`ExperimentError` at ``inference`` when
    the model has no inference tiles.
    """
    if compensation not in ("with", "without", "both"):
        raise ValueError(f"compensation must be 'with', 'without' or 'both', not {compensation!r}")
    if repetitions < 1 or not times:
        raise ValueError("drift_inference needs at least one repetition and one time")
    tiles = inference_tiles(model)
    if not tiles:
        raise ExperimentError(
            "drift inference needs analog inference tiles",
            [
                (
                    "inference",
                    "the model has no tile that aihwkit can program and drift; use an "
                    "inference configuration (InferenceRPUConfig, TorchInferenceRPUConfig) "
                    "or remove 'inference'",
                )
            ],
        )
    modes = [False, True] if compensation == "both" else [compensation == "with"]
    accuracies: dict[tuple[int, bool], list[float]] = {
        (k, mode): [] for k in range(len(times)) for mode in modes
    }
    compensators = [_compensator(tile) for tile in tiles]

    with _preserved(model, tiles), _forked_rng(device):
        model.eval()
        _set_compensation(tiles, compensators, on=True in modes)
        for rep in range(repetitions):
            if should_stop is not None and should_stop():
                break
            for i, tile in enumerate(tiles):
                torch.manual_seed(_derived_seed(seed, rep, _PROGRAM, i))
                tile.program_weights()
            for k, seconds in enumerate(times):
                for i, tile in enumerate(tiles):
                    torch.manual_seed(_derived_seed(seed, rep, _DRIFT, k, i))
                    tile.drift_weights(seconds)
                for mode in modes:
                    torch.manual_seed(_derived_seed(seed, rep, _EVAL, k, int(mode)))
                    _set_compensation(tiles, compensators, on=mode)
                    accuracies[k, mode].append(score(model, x, y, batch_size, device))
                _set_compensation(tiles, compensators, on=True in modes)

    points = []
    for k, seconds in enumerate(times):
        for mode in modes:
            values = accuracies[k, mode]
            if values:
                mean = float(np.mean(values))
                points.append(DriftPoint(float(seconds), mode, mean, float(np.std(values)), values))
    return points


def _compensator(tile: Any) -> Any:
    """The tile's own drift compensation, or ``GlobalDriftCompensation`` if it has none."""
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation

    current = getattr(tile.rpu_config, "drift_compensation", None)
    return current if current is not None else GlobalDriftCompensation()


def _set_compensation(tiles: list[Any], compensators: list[Any], on: bool) -> None:
    for tile, compensator in zip(tiles, compensators, strict=True):
        tile.rpu_config.drift_compensation = compensator if on else None


def _derived_seed(seed: int, *parts: int) -> int:
    """A well-mixed 32-bit seed for one stage of one repetition."""
    sequence = np.random.SeedSequence([seed % 2**63, *parts])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


@contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """Seed freely inside; the caller's CPU (and this CUDA device's) RNG state is restored."""
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        yield


@contextmanager
def _preserved(model: Any, tiles: list[Any]) -> Iterator[None]:
    """Save what programming and drift change on each tile; put it back on exit."""
    was_training = bool(model.training)
    saved = []
    for tile in tiles:
        state = {name: getattr(tile, name, None) for name in _STATE}
        saved.append(
            (
                tile.tile.get_weights().clone(),
                state,
                tile.alpha.detach().clone(),
                tile.rpu_config.drift_compensation,
            )
        )
        # Program from the weights as they are now, never from a stale reference.
        tile.reference_combined_weights = None
    try:
        yield
    finally:
        for tile, (weights, state, alpha, compensation) in zip(tiles, saved, strict=True):
            tile.tile.set_weights(weights)
            for name, value in state.items():
                setattr(tile, name, value)
            tile.alpha = alpha
            tile.rpu_config.drift_compensation = compensation
        model.train(was_training)
