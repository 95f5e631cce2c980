"""Training in slices: an epoch that yields to its AIM between whole batches.

A simulator AIM must answer signals (stop, pause) while a job trains, but one epoch of
a large model can take minutes. :class:`EpochRunner` therefore runs an epoch as a
series of :meth:`EpochRunner.step` calls, each taking whole batches until a wall-time
budget is used up; the AIM awaits one step in a worker thread, checks its signals,
and calls the next. Slicing never changes the result: the batches, their order and
their content depend only on ``(seed, epoch)``, so an epoch run in one slice or in a
hundred gives the same weights.

Reproducibility: :func:`seed_everything` seeds Python, NumPy and torch (every CUDA
device included). Everything aihwkit draws through torch follows from it: the weight
initialisation, the noise of the torch-based tiles (``TorchInferenceRPUConfig``), the
programming and drift noise of the inference noise models. The C++ RPUCuda tiles
(``InferenceRPUConfig``, ``SingleRPUConfig``, ``UnitCellRPUConfig``, ...) draw their
cycle-to-cycle noise (forward/backward noise, stochastic update pulses, weight
modifiers) from their own generator, which aihwkit 1.2.0 seeds from the clock and does
not expose; such runs repeat only statistically unless that noise is off.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from aif.aims.analog.augment import Augment, batch_generator
from aif.errors import ExperimentError

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_order(samples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of one epoch: a function of ``(seed, epoch)`` only."""
    entropy = [seed % 2**63, epoch % 2**63]
    return np.random.default_rng(np.random.SeedSequence(entropy)).permutation(samples)


def batch_bounds(samples: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each batch; a trailing single sample joins the batch before.

    A batch of one sample would make ``BatchNorm`` fail in training mode ("expected
    more than 1 value per channel"), so e.g. 33 samples in batches of 32 give one
    batch of 33 rather than 32 + 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    bounds = [(i, min(i + batch_size, samples)) for i in range(0, samples, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


class EpochRunner:
    """One epoch in slices, so the AIM can honour signals between slices.

    ``model`` must already be on ``device``; each batch is moved there as it is used.
    ``loss`` is the sample-weighted mean training loss of the batches run so far
    (NaN before the first), ``samples`` and ``batches`` count them, ``done`` turns
    True once every batch of the epoch has run. The caller steps the learning-rate
    scheduler after the epoch. ``augment`` (see :mod:`aif.aims.analog.augment`) changes
    each training batch, with randomness drawn from ``(seed, epoch, batch)`` alone.
    ``clip_grad_norm`` clips the gradients' total norm (``torch.nn.utils.clip_grad_norm_``)
    before each optimizer step. Float labels (regression targets) stay float32.

    ``shard = (rank, ranks)`` runs one rank's part of data-parallel training: every
    global batch (the same batches one rank would run) is split across the ranks by
    striding, rank ``r`` taking samples ``r, r + ranks, ...`` of it. The global batches,
    and so what DistributedDataParallel's averaged gradients see, are those of one rank.
    ``loss``, ``samples`` count this rank's part.

    A batch whose loss is not finite (NaN or infinite: the training diverged, or the
    data hold NaN) raises ``ExperimentError`` naming the epoch, the batch, the loss and
    the fixes; the check reads the loss the runner sums anyway, so it costs nothing.
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        loss_fn: LossFunction,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int,
        epoch: int,
        device: torch.device,
        augment: Augment | None = None,
        clip_grad_norm: float | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.device = device
        self._augment = augment
        self._clip = clip_grad_norm
        self._rank, self._ranks = shard
        self._seed, self._epoch = seed, epoch
        self._x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        labels = np.float32 if y.dtype.kind == "f" else np.int64
        self._y = torch.from_numpy(np.ascontiguousarray(y, dtype=labels))
        self._order = torch.from_numpy(epoch_order(len(y), seed, epoch))
        self._bounds = batch_bounds(len(y), batch_size)
        self._total = 0.0
        self.samples = 0
        self.batches = 0

    @property
    def total_batches(self) -> int:
        """How many batches the whole epoch has."""
        return len(self._bounds)

    @property
    def done(self) -> bool:
        """Whether every batch of the epoch has run."""
        return self.batches >= len(self._bounds)

    @property
    def loss(self) -> float:
        """Mean training loss per sample so far (NaN before the first batch)."""
        return self._total / self.samples if self.samples else math.nan

    def step(self, budget_s: float) -> bool:
        """Run whole batches until ``budget_s`` seconds of wall time are used.

        At least one batch runs (unless the epoch is already done), so a budget of
        zero advances by exactly one batch. Returns :attr:`done`.
        """
        if self.done:
            return True
        start = time.perf_counter()
        self.model.train()
        while not self.done:
            self._run_batch(*self._bounds[self.batches])
            if time.perf_counter() - start >= budget_s:
                break
        return self.done

    def _run_batch(self, lo: int, hi: int) -> None:
        index = self._order[lo:hi][self._rank :: self._ranks]
        xb = self._x[index]
        if self._augment is not None:
            xb = self._augment(xb, batch_generator(self._seed, self._epoch, self.batches))
        xb = xb.to(self.device)
        yb = self._y[index].to(self.device)
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(xb), yb)
        loss.backward()  # type: ignore[no-untyped-call]
        if self._clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self._clip)
        self.optimizer.step()
        # .item() waits for the device, which also makes the time budget honest on CUDA.
        value = float(loss.item())
        if not math.isfinite(value):
            raise self._diverged(value)
        self._total += value * len(index)
        self.samples += len(index)
        self.batches += 1

    def _diverged(self, loss: float) -> ExperimentError:
        lr = self.optimizer.param_groups[0]["lr"]
        clip = (
            f"a smaller training.clip_grad_norm (now {self._clip:g})"
            if self._clip is not None
            else "training.clip_grad_norm (e.g. 1.0)"
        )
        return ExperimentError(
            f"training diverged: the loss is {loss} at epoch {self._epoch}, batch "
            f"{self.batches + 1} of {len(self._bounds)}; lower training.optimizer.lr "
            f"(now {float(lr):g}), set {clip}, or check the data for NaN or infinite values"
        )


def evaluate(
    model: Any, x: np.ndarray, y: np.ndarray, batch_size: int, device: torch.device
) -> float:
    """Accuracy of ``model`` on ``(x, y)``: eval mode, no gradients, NaN for no samples.

    The model's training mode is restored afterwards.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
    if len(y) == 0:
        return math.nan
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    was_training = bool(model.training)
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for lo in range(0, len(y), batch_size):
                xb = np.ascontiguousarray(x[lo : lo + batch_size], dtype=np.float32)
                yb = np.ascontiguousarray(y[lo : lo + batch_size], dtype=np.int64)
                output = model(torch.from_numpy(xb).to(device))
                labels = torch.from_numpy(yb).to(device)
                correct += int((output.argmax(dim=1) == labels).sum().item())
    finally:
        model.train(was_training)
    return correct / len(y)
