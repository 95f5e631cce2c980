"""The IMC chip protocol's message vocabulary: what a host and a chip say to each other.

Six requests, each answered by its own reply (opcode | ``REPLY_FLAG``) or by an ERROR
reply that carries a ``Status``:

    INFO     what the chip is: geometry, DAC/ADC bits, g_max, output bound, clock, name
    PROGRAM  write one tile: weights in [-1, 1] (``Kind.WEIGHTS``) or G+ / G- in uS
             (``Kind.CONDUCTANCES``); the reply gives the used shape and the clock
    READ     the conductances (uS) of the used part of a tile, at the chip clock
    MVM      multiply a batch of inputs in [-1, 1] by a tile's weights; outputs are in
             weight units
    WAIT     advance the chip clock by some seconds (the devices drift)
    RESET    erase one tile, or every tile with ``ALL_TILES``; the reply counts them

A tile is rows x cols with rows = outputs and cols = inputs (aihwkit's out x in).
Messages are frozen dataclasses that compare field by field, numpy arrays by shape and
value (NaN equals NaN). ``protocol.py`` turns them into bytes and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALL_TILES",
    "PROTOCOL_VERSION",
    "REPLY_FLAG",
    "ErrorReply",
    "InfoReply",
    "InfoRequest",
    "Kind",
    "Message",
    "MvmReply",
    "MvmRequest",
    "Opcode",
    "ProgramReply",
    "ProgramRequest",
    "ReadReply",
    "ReadRequest",
    "Reply",
    "Request",
    "ResetReply",
    "ResetRequest",
    "Status",
    "WaitReply",
    "WaitRequest",
]

PROTOCOL_VERSION: Final = 1
#: Reply opcode = request opcode | REPLY_FLAG.
REPLY_FLAG: Final = 0x80
#: RESET of this tile index resets every tile.
ALL_TILES: Final = 0xFFFF

Floats = npt.NDArray[np.float32]


class Opcode(IntEnum):
    """Request opcodes (a reply sets ``REPLY_FLAG``) and the ERROR reply."""

    INFO = 0x01
    PROGRAM = 0x02
    READ = 0x03
    MVM = 0x04
    WAIT = 0x05
    RESET = 0x06
    ERROR = 0xFF


class Status(IntEnum):
    """Status code of an ERROR reply."""

    MALFORMED = 1  # payload does not decode, or vector sizes do not match the fields
    UNSUPPORTED_VERSION = 2
    UNKNOWN_OPCODE = 3
    OUT_OF_RANGE = 4  # tile index, shape bigger than a tile, value out of range, NaN
    NOT_PROGRAMMED = 5  # READ or MVM of an erased tile
    TOO_LARGE = 6  # payload over MAX_PAYLOAD, or a batch over the chip's limit
    INTERNAL = 7


class Kind(IntEnum):
    """What the data of a PROGRAM request holds."""

    WEIGHTS = 0  # rows x cols values in [-1, 1]
    CONDUCTANCES = 1  # G+ then G- blocks, rows x cols each, in uS within [0, g_max]


class _Message:
    """Equality by fields, arrays compared by shape and value (dataclass ``eq`` cannot)."""

    __slots__ = ()
    opcode: ClassVar[int]
    label: ClassVar[str]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for field in fields(self):  # type: ignore[arg-type]
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if isinstance(mine, np.ndarray) or isinstance(theirs, np.ndarray):
                if not (
                    isinstance(mine, np.ndarray)
                    and isinstance(theirs, np.ndarray)
                    and mine.shape == theirs.shape
                    and np.array_equal(mine, theirs, equal_nan=True)
                ):
                    return False
            elif mine != theirs and not _both_nan(mine, theirs):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


def _both_nan(a: object, b: object) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


@dataclass(frozen=True, slots=True, eq=False)
class InfoRequest(_Message):
    """Ask the chip what it is."""

    opcode: ClassVar[int] = Opcode.INFO
    label: ClassVar[str] = "INFO request"


@dataclass(frozen=True, slots=True, eq=False)
class InfoReply(_Message):
    """The chip's geometry, converters, conductance range, output bound and clock."""

    version: int
    tiles: int
    rows: int
    cols: int
    dac_bits: int
    adc_bits: int
    g_max: float
    out_bound: float
    clock: float
    name: str  # the chip's description, e.g. "aif emulator: PCM, 64 tiles of 256x256"

    opcode: ClassVar[int] = Opcode.INFO | REPLY_FLAG
    label: ClassVar[str] = "INFO reply"


@dataclass(frozen=True, slots=True, eq=False)
class ProgramRequest(_Message):
    """Program one tile: ``data`` (rows, cols) weights or (2, rows, cols) G+ / G- in uS."""

    tile: int
    kind: Kind
    data: Floats

    opcode: ClassVar[int] = Opcode.PROGRAM
    label: ClassVar[str] = "PROGRAM request"


@dataclass(frozen=True, slots=True, eq=False)
class ProgramReply(_Message):
    """The tile was programmed at ``clock`` (s on the chip clock)."""

    tile: int
    rows_used: int
    cols_used: int
    clock: float

    opcode: ClassVar[int] = Opcode.PROGRAM | REPLY_FLAG
    label: ClassVar[str] = "PROGRAM reply"


@dataclass(frozen=True, slots=True, eq=False)
class ReadRequest(_Message):
    """Read back a tile's conductances."""

    tile: int

    opcode: ClassVar[int] = Opcode.READ
    label: ClassVar[str] = "READ request"


@dataclass(frozen=True, slots=True, eq=False)
class ReadReply(_Message):
    """Conductances (uS) of the used part of a tile at ``clock``, each (rows_used, cols_used)."""

    tile: int
    clock: float
    g_plus: Floats
    g_minus: Floats

    opcode: ClassVar[int] = Opcode.READ | REPLY_FLAG
    label: ClassVar[str] = "READ reply"


@dataclass(frozen=True, slots=True, eq=False)
class MvmRequest(_Message):
    """Multiply ``inputs`` (batch, n_in) in [-1, 1] by a tile's weights."""

    tile: int
    inputs: Floats

    opcode: ClassVar[int] = Opcode.MVM
    label: ClassVar[str] = "MVM request"


@dataclass(frozen=True, slots=True, eq=False)
class MvmReply(_Message):
    """The tile's ``outputs`` (batch, n_out) in weight units."""

    tile: int
    outputs: Floats

    opcode: ClassVar[int] = Opcode.MVM | REPLY_FLAG
    label: ClassVar[str] = "MVM reply"


@dataclass(frozen=True, slots=True, eq=False)
class WaitRequest(_Message):
    """Advance the chip clock by ``seconds`` (drift)."""

    seconds: float

    opcode: ClassVar[int] = Opcode.WAIT
    label: ClassVar[str] = "WAIT request"


@dataclass(frozen=True, slots=True, eq=False)
class WaitReply(_Message):
    """The chip clock after the wait."""

    clock: float

    opcode: ClassVar[int] = Opcode.WAIT | REPLY_FLAG
    label: ClassVar[str] = "WAIT reply"


@dataclass(frozen=True, slots=True, eq=False)
class ResetRequest(_Message):
    """Erase one tile, or every tile with ``ALL_TILES``."""

    tile: int

    opcode: ClassVar[int] = Opcode.RESET
    label: ClassVar[str] = "RESET request"


@dataclass(frozen=True, slots=True, eq=False)
class ResetReply(_Message):
    """How many tiles were erased."""

    tiles_reset: int

    opcode: ClassVar[int] = Opcode.RESET | REPLY_FLAG
    label: ClassVar[str] = "RESET reply"


@dataclass(frozen=True, slots=True, eq=False)
class ErrorReply(_Message):
    """The request failed: ``status`` (a ``Status``; an unknown code stays an int)."""

    status: int
    message: str

    opcode: ClassVar[int] = Opcode.ERROR
    label: ClassVar[str] = "ERROR reply"


Request = InfoRequest | ProgramRequest | ReadRequest | MvmRequest | WaitRequest | ResetRequest
Reply = InfoReply | ProgramReply | ReadReply | MvmReply | WaitReply | ResetReply | ErrorReply
Message = Request | Reply
