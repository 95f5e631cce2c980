"""The emulated chip itself: crossbar tiles of PCM conductance pairs, with no socket in sight.

``Chip`` is what the emulator process serves over the protocol, and what tests and
``benchmarks/chip.py`` drive in-process. Its physics, in the order a request meets it:

* PROGRAM: weights ``w`` in [-1, 1] become target conductances ``G+ = max(w, 0) g_max``
  and ``G- = max(-w, 0) g_max`` (uS), as aihwkit's ``SinglePairConductanceConverter``
  maps a weight block whose abs max is 1; or the host gives the targets itself
  (CONDUCTANCES). aihwkit's ``PCMLikeNoiseModel`` then draws the programming noise
  (``apply_programming_noise_to_conductance``: Gaussian, its std a polynomial in G,
  negative results clamped to 0) and each device's drift exponent ``nu``
  (``generate_drift_coefficients``, from the target). The tile remembers the chip clock
  at programming, ``t_program``.
* Drift: at chip clock ``t`` every device reads
  ``apply_drift_noise_to_conductance(G_prog, nu, t - t_program)``: aihwkit's convention
  adds its ``t_0`` (20 s) so the factor is ``((t - t_program + t_0) / t_0) ** -nu``,
  with 1/f read noise accumulated since programming. Recomputed once per clock value
  and cached, so MVMs at one clock all see the same conductances, as on a chip where
  the conductances are what they are until time passes.
* MVM: the DAC clips the inputs to [-1, 1] and rounds them to ``dac_bits`` (step
  ``2 / (2**dac_bits - 2)``, aihwkit's ``inp_res`` convention); the crossbar sums
  ``y_i = sum_j (G+_ij - G-_ij) / g_max * x_j``; the periphery adds Gaussian output noise
  of std ``read_noise`` (aihwkit's ``forward.out_noise``, in the same units); the ADC
  rounds to ``adc_bits`` over [-out_bound, out_bound] (step ``2 out_bound /
  (2**adc_bits - 2)``) and clips. ``bits = 0`` switches a converter's rounding off.

Randomness: every tile has two seeded ``torch.Generator`` streams, one for its devices
(aihwkit's draws, run inside ``torch.random.fork_rng`` with the global generator set
to the tile's state, so nothing outside is disturbed) and one for MVM output noise. A
tile's noise therefore depends only on the seed and that tile's own history, not on the
order in which tiles are used. ``noise=False`` is an ideal chip: no programming noise,
drift, read noise or output noise, exact up to the converters' rounding.

Refusals raise ``ChipError`` with the protocol ``Status`` the emulator puts in its
ERROR reply, so an in-process caller sees what a client of the emulator would.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

from aif.aims.analog.imc_chip.config import MAX_CLOCK, ChipConfig
from aif.aims.analog.imc_chip.messages import (
    ALL_TILES,
    PROTOCOL_VERSION,
    InfoReply,
    Kind,
    ProgramReply,
    ReadReply,
    Status,
)
from aif.errors import ChipError

__all__ = ["Chip"]

#: Largest MVM batch the emulator accepts (16 MiB of float32 inputs at 256 columns).
#: Values this far past a range edge (float32 rounding of a host's scaling) are clipped.
_SLACK: Final = 1e-6

Floats = npt.NDArray[np.float32]


@contextmanager
def _drawing_from(generator: torch.Generator) -> Iterator[None]:
    """Run aihwkit's draws (global torch RNG) from ``generator``, leaving the global alone."""
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        yield
        generator.set_state(torch.get_rng_state())


def _generator(seed: int, tile: int, stream: int) -> torch.Generator:
    words = np.random.SeedSequence([seed, tile, stream]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator()
    generator.manual_seed(int(words[0]) << 32 | int(words[1]))
    return generator


class _Tile:
    """One crossbar: the programmed state of its used rows x cols, and the clock cache."""

    def __init__(self, devices: torch.Generator, outputs: torch.Generator) -> None:
        self.devices = devices
        self.outputs = outputs
        self.g_prog: torch.Tensor | None = None  # (2, rows_used, cols_used) uS after programming
        self.nu: torch.Tensor | None = None  # drift exponents, same shape
        self.t_program = 0.0
        self.cached_at: float | None = None
        self.g_now = torch.empty(0)  # conductances at cached_at
        self.weights_t = torch.empty(0)  # (cols_used, rows_used): (G+ - G-) / g_max, transposed

    def erase(self) -> None:
        self.g_prog = self.nu = None
        self.cached_at = None
        self.g_now = self.weights_t = torch.empty(0)


class Chip:
    """An emulated IMC chip: ``config.tiles`` tiles of rows x cols conductance pairs."""

    def __init__(self, config: ChipConfig | None = None) -> None:
        self.config = config or ChipConfig()
        cfg = self.config
        self.seed = cfg.seed if cfg.seed is not None else secrets.randbits(63)
        self.clock = 0.0
        self._model = PCMLikeNoiseModel(g_max=cfg.g_max)
        self._tiles = [
            _Tile(_generator(self.seed, i, 0), _generator(self.seed, i, 1))
            for i in range(cfg.tiles)
        ]

    @property
    def name(self) -> str:
        cfg = self.config
        kind = "PCM" if cfg.noise else "ideal (no noise, no drift)"
        return f"aif emulator: {kind}, {cfg.tiles} tiles of {cfg.rows}x{cfg.cols}"

    def info(self) -> InfoReply:
        cfg = self.config
        return InfoReply(
            version=PROTOCOL_VERSION,
            tiles=cfg.tiles,
            rows=cfg.rows,
            cols=cfg.cols,
            dac_bits=cfg.dac_bits,
            adc_bits=cfg.adc_bits,
            g_max=cfg.g_max,
            out_bound=cfg.out_bound,
            clock=self.clock,
            name=self.name,
        )

    def program(self, tile: int, data: npt.ArrayLike, kind: Kind = Kind.WEIGHTS) -> ProgramReply:
        """Program ``tile`` with weights (rows, cols) or conductances (2, rows, cols) in uS."""
        what = "PROGRAM request"
        state = self._tile(what, tile)
        cfg = self.config
        values = _floats(what, "data", data, 2 if kind == Kind.WEIGHTS else 3)
        if kind == Kind.CONDUCTANCES and values.shape[0] != 2:
            raise ChipError(
                f"{what}: CONDUCTANCES data has shape {values.shape}; it must be "
                "(2, rows, cols): G+ then G-",
                Status.MALFORMED,
            )
        rows, cols = values.shape[-2:]
        if not (1 <= rows <= cfg.rows and 1 <= cols <= cfg.cols):
            raise ChipError(
                f"{what}: a {rows}x{cols} block does not fit tile {tile}: tiles are "
                f"{cfg.rows}x{cfg.cols} (rows = outputs, cols = inputs); split the matrix",
                Status.OUT_OF_RANGE,
            )
        _finite(what, "data", values)
        if kind == Kind.WEIGHTS:
            _within(what, "data", values, -1.0, 1.0, "weights; scale the block to abs max 1")
            w = torch.from_numpy(np.clip(values, -1.0, 1.0))
            g_target = torch.stack([w.clamp(min=0.0), (-w).clamp(min=0.0)]) * cfg.g_max
        else:
            _within(what, "data", values, 0.0, cfg.g_max, "uS: conductances within [0, g_max]")
            g_target = torch.from_numpy(np.clip(values, 0.0, cfg.g_max))
        if cfg.noise:
            with _drawing_from(state.devices):
                state.g_prog = self._model.apply_programming_noise_to_conductance(g_target)
                state.nu = self._model.generate_drift_coefficients(g_target)
        else:
            state.g_prog, state.nu = g_target, None
        state.t_program = self.clock
        state.cached_at = None
        return ProgramReply(tile, rows, cols, self.clock)

    def read(self, tile: int) -> ReadReply:
        """The tile's conductances (uS) now: programming noise, drift and 1/f noise included."""
        self._conductances("READ request", tile)
        g_now = self._tiles[tile].g_now
        return ReadReply(tile, self.clock, g_now[0].numpy().copy(), g_now[1].numpy().copy())

    def mvm(self, tile: int, inputs: npt.ArrayLike) -> Floats:
        """``inputs`` (batch, cols_used) through ``tile``: outputs (batch, rows_used)."""
        what = "MVM request"
        cfg = self.config
        state = self._conductances(what, tile)
        x = _floats(what, "inputs", inputs, 2)
        batch, n_in = x.shape
        cols_used = state.weights_t.shape[0]
        if n_in != cols_used:
            raise ChipError(
                f"{what}: n_in = {n_in} but tile {tile} is programmed with cols_used = "
                f"{cols_used} inputs; send vectors of {cols_used} values",
                Status.MALFORMED,
            )
        if batch > cfg.max_batch:
            raise ChipError(
                f"{what}: batch {batch} is over this chip's limit of {cfg.max_batch} vectors; "
                "split it into several requests",
                Status.TOO_LARGE,
            )
        _finite(what, "inputs", x)
        # Elementwise steps in numpy (a few us each on small batches, where torch's
        # per-op overhead would dominate), the product and the noise draw in torch.
        dac = np.clip(x, -1.0, 1.0)  # a copy: writable, ours
        _quantise(dac, 1.0, cfg.dac_step)
        y = torch.from_numpy(dac) @ state.weights_t
        if cfg.noise and cfg.read_noise > 0:
            y.add_(torch.randn(y.shape, generator=state.outputs), alpha=cfg.read_noise)
        out: Floats = y.numpy()
        _quantise(out, cfg.out_bound, cfg.adc_step)
        return out

    def wait(self, seconds: float) -> float:
        """Advance the chip clock by ``seconds``; returns the clock after.

        The clock never passes ``MAX_CLOCK``: a longer wait is refused, the clock unmoved.
        """
        left = MAX_CLOCK - self.clock
        if not (math.isfinite(seconds) and 0 <= seconds <= left):
            raise ChipError(
                f"WAIT request: seconds = {seconds} must be a finite number >= 0 and "
                f"<= {left:g} (the chip clock is at {self.clock:g} s and stops at "
                f"MAX_CLOCK = {MAX_CLOCK:g} s)",
                Status.OUT_OF_RANGE,
            )
        self.clock = min(self.clock + seconds, MAX_CLOCK)  # no rounding past it either
        return self.clock

    def reset(self, tile: int = ALL_TILES) -> int:
        """Erase ``tile`` (or every tile with ``ALL_TILES``); returns how many were reset."""
        if tile == ALL_TILES:
            for state in self._tiles:
                state.erase()
            return len(self._tiles)
        self._tile("RESET request", tile).erase()
        return 1

    def programmed(self, tile: int) -> bool:
        return self._tile("programmed()", tile).g_prog is not None

    def _tile(self, what: str, tile: int) -> _Tile:
        if not 0 <= tile < len(self._tiles):
            raise ChipError(
                f"{what}: tile {tile} is out of range; this chip has tiles "
                f"0..{len(self._tiles) - 1}",
                Status.OUT_OF_RANGE,
            )
        return self._tiles[tile]

    def _conductances(self, what: str, tile: int) -> _Tile:
        """The tile, its conductances and weights brought to the current clock (cached)."""
        state = self._tile(what, tile)
        if state.g_prog is None:
            raise ChipError(
                f"{what}: tile {tile} is not programmed (erased by RESET or never "
                "programmed); PROGRAM it first",
                Status.NOT_PROGRAMMED,
            )
        if state.cached_at != self.clock:
            if self.config.noise and state.nu is not None:
                with _drawing_from(state.devices):
                    state.g_now = self._model.apply_drift_noise_to_conductance(
                        state.g_prog, state.nu, self.clock - state.t_program
                    )
            else:
                state.g_now = state.g_prog
            weights = (state.g_now[0] - state.g_now[1]) / self.config.g_max
            state.weights_t = weights.T.contiguous()
            state.cached_at = self.clock
        return state


def _floats(what: str, field: str, value: npt.ArrayLike, ndim: int) -> Floats:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ChipError(
            f"{what}: {field} is not an array of numbers ({exc})", Status.MALFORMED
        ) from exc
    if array.ndim != ndim:
        raise ChipError(
            f"{what}: {field} has shape {array.shape}; it must have {ndim} dimensions",
            Status.MALFORMED,
        )
    return array


def _finite(what: str, field: str, values: Floats) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ChipError(
            f"{what}: {field}{list(where)} is {values[where]}; every value must be finite",
            Status.OUT_OF_RANGE,
        )


def _within(what: str, field: str, values: Floats, low: float, high: float, hint: str) -> None:
    slack = _SLACK * max(abs(low), abs(high))
    bad = (values < low - slack) | (values > high + slack)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ChipError(
            f"{what}: {field}{list(where)} = {values[where]:g} is outside [{low:g}, {high:g}] "
            f"({hint})",
            Status.OUT_OF_RANGE,
        )


def _quantise(values: Floats, bound: float, step: float) -> None:
    """Round to the converter's grid (step 0: no rounding), then clip to +-bound, in place.

    Round half to even, as ``torch.round`` in aihwkit's ``UniformQuantize``.
    """
    if step:
        np.divide(values, step, out=values)
        np.round(values, out=values)
        np.multiply(values, step, out=values)
    np.clip(values, -bound, bound, out=values)
