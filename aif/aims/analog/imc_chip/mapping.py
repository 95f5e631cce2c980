"""From an experiment's layers to crossbar tiles, and the host side of a chip inference.

An analog layer is a matrix product: a Linear's weight is ``out x in``, a Conv2d's is
``out_channels x (in_channels * kh * kw)`` applied to its input unfolded into patches
(``torch.nn.functional.unfold``), one vector per output position. The matrix is cut
into blocks of at most ``rows x cols`` (rows = outputs, cols = inputs, as a tile is),
one tile per block::

          cols ──►                       input vector x, cut the same way
        ┌───────┬───────┬───┐            ┌──┬──┬─┐
  rows  │ t0    │ t1    │t2 │  out 0..r  │x0│x1│x2│ ──► y[0:r] = s0·t0(x0) + s1·t1(x1) + …
   │    ├───────┼───────┼───┤            └──┴──┴─┘
   ▼    │ t3    │ t4    │t5 │  out r..2r
        └───────┴───────┴───┘

What the host does around the chip, and why:

* **Weight scale per block**: a block is programmed as ``W / s`` with ``s`` its largest
  absolute weight, so every block fills the tile's ``[-1, 1]`` range whatever the
  layer's own range; the host multiplies the tile's output by ``s``.
* **Input scale per vector and input block**: the DAC takes ``[-1, 1]``, so each
  vector's slice is divided by its own absolute maximum (aihwkit's ``ABS_MAX`` noise
  management) and the output multiplied back: small activations keep their DAC bits.
* **Partial sums and bias on the host**: the outputs of the tiles that share output
  rows are added in float32; the bias is added digitally, as aihwkit's
  ``digital_bias`` does.
* **Global drift compensation per block**: right after programming, each block answers
  a fixed calibration input (random signs from a fixed seed); later the same input is
  sent again and the block's outputs are scaled by ``mean|reference| / mean|now|``,
  aihwkit's ``GlobalDriftCompensation`` done per tile.

The chip is reached through :class:`ChipPort` (the two verbs this module needs, which
:class:`~aif.aims.analog.imc_chip.client.ChipClient` has), so a whole test-set chunk goes
through a layer in a handful of large MVM requests of at most ``batch`` vectors: the
forward pass runs layer by layer in the caller's event loop (:meth:`ChipModel.forward`),
digital layers on the host between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from aif.aims.analog.imc_chip.twin import DigitalModel
from aif.errors import ExperimentError

Floats = npt.NDArray[np.float32]

#: Calibration vectors per block for drift compensation (see ``calibration_input``).
CALIBRATION_VECTORS = 32
_CALIBRATION_SEED = 20_240_601


class ChipPort(Protocol):
    """What the mapping needs of a chip: program a tile, multiply by it."""

    async def program(self, tile: int, weights: Floats) -> object: ...

    async def mvm(self, tile: int, inputs: Floats) -> Floats: ...


# -- tiles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One tile's share of a layer: output rows ``[r0, r1)`` times input columns ``[c0, c1)``."""

    tile: int
    r0: int
    r1: int
    c0: int
    c1: int
    #: The layer's weights are ``weights * scale``; ``weights`` fill [-1, 1].
    scale: float
    weights: Floats


@dataclass(frozen=True)
class TileUse:
    """How much of the chip a model takes."""

    tiles_used: int
    tiles_total: int
    cells_used: int
    #: Cells of the used tiles (tiles_used * rows * cols): what a block leaves empty is lost.
    cells_in_used_tiles: int

    def as_dict(self) -> dict[str, Any]:
        """For result events and logs."""
        fill = self.cells_used / self.cells_in_used_tiles if self.cells_in_used_tiles else 0.0
        return {
            "tiles_used": self.tiles_used,
            "tiles_total": self.tiles_total,
            "cells_used": self.cells_used,
            "cells_in_used_tiles": self.cells_in_used_tiles,
            "cell_fill": round(fill, 4),
        }

    def text(self) -> str:
        """``3/64 tiles, 41.2% of their cells used``."""
        fill = self.as_dict()["cell_fill"]
        return f"{self.tiles_used}/{self.tiles_total} tiles, {100 * fill:.1f}% of their cells used"


def layer_matrix(layer: torch.nn.Module, where: str) -> torch.Tensor:
    """The ``out x in`` matrix a layer multiplies by (a Conv2d's kernel flattened).

    Raises :class:`ExperimentError` for a layer that is not a matrix product the
    chip can run (only Linear and plain Conv2d are).
    """
    if isinstance(layer, torch.nn.Linear):
        return layer.weight.detach()
    if isinstance(layer, torch.nn.Conv2d):
        if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ExperimentError(
                "the model cannot be mapped onto the chip",
                [(where, "only Conv2d with groups=1 and zero padding maps onto tiles")],
            )
        return layer.weight.detach().reshape(layer.out_channels, -1)
    raise ExperimentError(
        "the model cannot be mapped onto the chip",
        [
            (
                where,
                f"{type(layer).__name__} is not a matrix product; only Linear and Conv2d "
                "run on tiles: set 'analog: false' on it",
            )
        ],
    )


def split_blocks(matrix: torch.Tensor, rows: int, cols: int, first_tile: int) -> list[Block]:
    """``matrix`` (out x in) cut into blocks of at most ``rows x cols``, row blocks outer."""
    if rows < 1 or cols < 1:
        raise ValueError(f"a tile must have at least one row and column, got {rows}x{cols}")
    data = matrix.detach().to(torch.float32).cpu().numpy()
    n_out, n_in = data.shape
    blocks: list[Block] = []
    for r0 in range(0, n_out, rows):
        for c0 in range(0, n_in, cols):
            r1, c1 = min(r0 + rows, n_out), min(c0 + cols, n_in)
            part = data[r0:r1, c0:c1]
            peak = float(np.abs(part).max(initial=0.0))
            scale = peak if peak > 0 else 1.0
            weights = np.clip(part / np.float32(scale), -1.0, 1.0).astype(np.float32)
            blocks.append(Block(first_tile + len(blocks), r0, r1, c0, c1, scale, weights))
    return blocks


def tiles_needed(n_out: int, n_in: int, rows: int, cols: int) -> int:
    """How many ``rows x cols`` tiles an ``n_out x n_in`` matrix takes."""
    return math.ceil(n_out / rows) * math.ceil(n_in / cols)


def _tiles_of(matrix: torch.Tensor, rows: int, cols: int) -> int:
    return tiles_needed(int(matrix.shape[0]), int(matrix.shape[1]), rows, cols)


# -- the host side of a chip inference -------------------------------------------------


class ChipLayer(torch.nn.Module):
    """An analog Linear or Conv2d whose products run on chip tiles; the rest on the host.

    It stands where the digital layer stood in the model, but it is called through
    :meth:`run` (async, with the chip), never ``forward``.
    """

    def __init__(self, index: int, layer: torch.nn.Linear | torch.nn.Conv2d, blocks: list[Block]):
        super().__init__()
        self.index = index
        self.layer = layer
        self.blocks = blocks
        self.n_out = int(layer.weight.shape[0])
        bias = layer.bias
        self.bias = None if bias is None else bias.detach().to(torch.float32).cpu().numpy()
        #: Per-block drift compensation factors (1 until :meth:`ChipModel.compensate`).
        self.alpha = np.ones(len(blocks), dtype=np.float64)
        self.reference = np.ones(len(blocks), dtype=np.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError(
            f"layer {self.index} runs on the chip: call it through ChipModel.forward (async)"
        )

    async def run(self, chip: ChipPort, x: torch.Tensor, batch: int) -> torch.Tensor:
        """This layer on ``x`` (a batch of samples), products on the chip."""
        if isinstance(self.layer, torch.nn.Linear):
            vectors = x.reshape(x.shape[0], -1).to(torch.float32).cpu().numpy()
            out = await self.matmul(chip, vectors, batch)
            if self.bias is not None:
                out += self.bias
            return torch.from_numpy(out)
        conv = self.layer
        n, _, h, w = x.shape
        k, st, p, d = conv.kernel_size, conv.stride, conv.padding, conv.dilation
        assert not isinstance(p, str)  # refused by layer_matrix
        patches = F.unfold(x.to(torch.float32), k, dilation=d, padding=p, stride=st)
        positions = patches.shape[2]
        vectors = patches.transpose(1, 2).reshape(n * positions, -1).contiguous().numpy()
        out = await self.matmul(chip, vectors, batch)
        if self.bias is not None:
            out += self.bias
        h_out = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // st[0] + 1
        w_out = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // st[1] + 1
        y = torch.from_numpy(out).reshape(n, positions, self.n_out).transpose(1, 2)
        return y.reshape(n, self.n_out, h_out, w_out).contiguous()

    async def matmul(self, chip: ChipPort, vectors: Floats, batch: int) -> Floats:
        """``vectors @ W.T`` for ``vectors`` (M, in), block by block on the chip."""
        out = np.zeros((len(vectors), self.n_out), dtype=np.float32)
        if not len(vectors):
            return out
        scaled: dict[tuple[int, int], tuple[Floats, Floats]] = {}
        for b, block in enumerate(self.blocks):
            key = (block.c0, block.c1)
            if key not in scaled:
                scaled[key] = _input_scaled(vectors[:, block.c0 : block.c1])
            inputs, peaks = scaled[key]
            y = await _mvm_batched(chip, block.tile, inputs, batch)
            factor = np.float32(block.scale * self.alpha[b])
            out[:, block.r0 : block.r1] += y * (peaks * factor)
        return out


def _input_scaled(part: Floats) -> tuple[Floats, Floats]:
    """Each row divided by its absolute maximum (zero rows stay zero), and the maxima."""
    peaks = np.abs(part).max(axis=1, keepdims=True)
    peaks[peaks == 0] = 1.0
    return np.ascontiguousarray(part / peaks, dtype=np.float32), peaks.astype(np.float32)


async def _mvm_batched(chip: ChipPort, tile: int, inputs: Floats, batch: int) -> Floats:
    """One MVM request per ``batch`` vectors, outputs stacked."""
    if len(inputs) <= batch:
        return await chip.mvm(tile, inputs)
    parts = [await chip.mvm(tile, inputs[lo : lo + batch]) for lo in range(0, len(inputs), batch)]
    return np.concatenate(parts, axis=0)


class ChipModel:
    """The digital model with its analog layers replaced by :class:`ChipLayer` s.

    Building it plans the tiles (raising :class:`ExperimentError` when the chip has
    too few); :meth:`program`, :meth:`calibrate`, :meth:`compensate` and
    :meth:`forward` then talk to the chip given to them.
    """

    def __init__(
        self,
        digital: DigitalModel,
        rows: int,
        cols: int,
        tiles: int,
        chip_name: str = "the chip",
    ) -> None:
        model = digital.model
        needed: list[tuple[int, torch.Tensor]] = []
        problems: list[tuple[str, str]] = []
        for i in digital.analog:
            try:
                needed.append((i, layer_matrix(model[i], f"model.layers.{i}")))
            except ExperimentError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ExperimentError("the model cannot be mapped onto the chip", problems)
        total = sum(_tiles_of(m, rows, cols) for _, m in needed)
        if total > tiles:
            per_layer = ", ".join(
                f"layer {i} ({m.shape[0]}x{m.shape[1]}): {_tiles_of(m, rows, cols)}"
                for i, m in needed
            )
            raise ExperimentError(
                "the model does not fit on the chip",
                [
                    (
                        "model",
                        f"needs {total} tiles of {rows}x{cols} ({per_layer}) but {chip_name} "
                        f"has {tiles}; use a chip with at least {total} tiles (emulator: "
                        f"tiles: {total}) or run some layers digitally ('analog: false')",
                    )
                ],
            )
        layers: list[ChipLayer] = []
        modules = list(model.children())
        first = 0
        for i, matrix in needed:
            blocks = split_blocks(matrix, rows, cols, first)
            first += len(blocks)
            original = modules[i]
            assert isinstance(original, torch.nn.Linear | torch.nn.Conv2d)
            layers.append(ChipLayer(i, original, blocks))
            modules[i] = layers[-1]
        self.model = torch.nn.Sequential(*modules).eval()
        self.layers = layers
        cells = sum(b.weights.size for layer in layers for b in layer.blocks)
        self.use = TileUse(first, tiles, cells, first * rows * cols)

    @property
    def blocks(self) -> list[Block]:
        """Every block, in tile order."""
        return [b for layer in self.layers for b in layer.blocks]

    async def program(self, chip: ChipPort) -> None:
        """Program every block onto its tile."""
        for block in self.blocks:
            await chip.program(block.tile, block.weights)

    async def calibrate(self, chip: ChipPort) -> None:
        """Record each block's response to the calibration input (right after programming)."""
        for layer in self.layers:
            layer.reference = await self._responses(chip, layer)
            layer.alpha = np.ones(len(layer.blocks), dtype=np.float64)

    async def compensate(self, chip: ChipPort) -> list[float]:
        """Set each block's factor to reference / now; returns the factors, tile order."""
        factors: list[float] = []
        for layer in self.layers:
            now = await self._responses(chip, layer)
            safe = np.where(now > 0, now, 1.0)
            layer.alpha = np.where(now > 0, layer.reference / safe, 1.0)
            factors.extend(float(a) for a in layer.alpha)
        return factors

    def uncompensated(self) -> None:
        """Back to raw outputs (factors of 1)."""
        for layer in self.layers:
            layer.alpha = np.ones(len(layer.blocks), dtype=np.float64)

    async def _responses(self, chip: ChipPort, layer: ChipLayer) -> npt.NDArray[np.float64]:
        out = np.ones(len(layer.blocks), dtype=np.float64)
        for b, block in enumerate(layer.blocks):
            y = await chip.mvm(block.tile, calibration_input(block.c1 - block.c0))
            out[b] = float(np.mean(np.abs(y)))
        return out

    async def forward(self, chip: ChipPort, x: torch.Tensor, batch: int) -> torch.Tensor:
        """The model on ``x``: chip layers through the chip, the others on the host."""
        with torch.no_grad():
            for module in self.model:
                if isinstance(module, ChipLayer):
                    x = await module.run(chip, x, batch)
                else:
                    x = module(x)
        return x

    async def accuracy(
        self,
        chip: ChipPort,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64],
        batch: int,
        chunk: int,
    ) -> float:
        """Share of ``x`` classified as ``y``, ``chunk`` samples per forward pass."""
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
        if not len(y):
            return math.nan
        correct = 0
        for lo in range(0, len(y), chunk):
            xb = torch.from_numpy(np.array(x[lo : lo + chunk], dtype=np.float32))
            logits = await self.forward(chip, xb, batch)
            correct += int((logits.argmax(dim=1).numpy() == y[lo : lo + chunk]).sum())
        return correct / len(y)


def calibration_input(width: int) -> Floats:
    """The fixed calibration vectors for a block ``width`` inputs wide: ±a, a fixed seed.

    The amplitude ``a = min(1, 4 / sqrt(width))`` keeps the response of a block of full
    range weights (standard deviation ``a * sqrt(width) * rms(w)``, at most 4) inside
    the ADC's range, so saturation does not hide drift.
    """
    rng = np.random.default_rng([_CALIBRATION_SEED, width])
    signs = rng.integers(0, 2, size=(CALIBRATION_VECTORS, width)) * 2 - 1
    amplitude = min(1.0, 4.0 / math.sqrt(width))
    return (signs * amplitude).astype(np.float32)
