"""The emulated chip's geometry and physics, as settings: tiles, converters, noise.

Kept apart from :mod:`~aif.aims.analog.imc_chip.tiles` (which needs torch and aihwkit)
so that building the ``aif chip emulate`` command line and checking its options stay
instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from aif.aims.analog.imc_chip.messages import ALL_TILES
from aif.errors import ConfigError

#: Largest MVM batch (vectors per request) the emulator accepts by default.
DEFAULT_MAX_BATCH: Final = 16384
#: Latest the chip clock may read, in seconds (about 317,000 years): far past any drift
#: time an experiment asks for, a thousand times over, and small enough that the clock
#: stays finite and still tells seconds apart (float64 steps of about 2 ms there), so no
#: WAIT can push it to a value that spoils every later drift.
MAX_CLOCK: Final = 1e13


@dataclass(frozen=True, slots=True)
class ChipConfig:
    """The chip's geometry and physics; ``seed=None`` draws a fresh seed."""

    tiles: int = 64
    rows: int = 256
    cols: int = 256
    dac_bits: int = 8
    adc_bits: int = 8
    out_bound: float = 12.0
    g_max: float = 25.0
    read_noise: float = 0.02
    noise: bool = True
    seed: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        problems = []
        for name, top in (("tiles", ALL_TILES - 1), ("rows", 0xFFFF), ("cols", 0xFFFF)):
            value = getattr(self, name)
            if not 1 <= value <= top:
                problems.append(f"{name} = {value} must be within 1..{top}")
        for name in ("dac_bits", "adc_bits"):
            value = getattr(self, name)
            if value != 0 and not 2 <= value <= 24:
                problems.append(f"{name} = {value} must be 0 (no rounding) or within 2..24")
        for name in ("out_bound", "g_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} = {value} must be a finite number > 0")
        if not (math.isfinite(self.read_noise) and self.read_noise >= 0):
            problems.append(f"read_noise = {self.read_noise} must be a finite number >= 0")
        if self.max_batch < 1:
            problems.append(f"max_batch = {self.max_batch} must be >= 1")
        if self.seed is not None and self.seed < 0:
            problems.append(f"seed = {self.seed} must be >= 0")
        if problems:
            raise ConfigError("chip configuration: " + "; ".join(problems))

    @property
    def dac_step(self) -> float:
        """Input quantisation step (0: none)."""
        return _step(1.0, self.dac_bits)

    @property
    def adc_step(self) -> float:
        """Output quantisation step in weight units (0: none)."""
        return _step(self.out_bound, self.adc_bits)


def _step(bound: float, bits: int) -> float:
    return 2.0 * bound / (2**bits - 2) if bits else 0.0
