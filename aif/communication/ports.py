"""Port declarations and the typed events an AIM receives from its ports.

An AIM reads one stream of events: ``Record`` (a value arrived on an input port),
``Signal`` (a uint16 high-priority code, from a peer or the controller) and ``Stop``
(no more input will come). Each has a ``Literal`` tag, so ``match`` statements and
type checkers can tell them apart without string-keyed dicts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from aif.communication.types import RecordType, parse_type


class SignalCode(enum.IntEnum):
    """High-priority codes (uint16). Codes from ``USER`` up are the AIMs' own."""

    STOP = 1
    SUSPEND = 2
    RESUME = 3
    ABORT = 4
    USER = 256


#: Largest value a signal code may take (it travels as a little-endian uint16).
MAX_SIGNAL = 0xFFFF


@dataclass(frozen=True)
class PortSpec:
    """A named, typed port of an AIM."""

    name: str
    direction: Literal["input", "output"]
    type_text: str
    type: RecordType = field(compare=False)

    @classmethod
    def parse(cls, name: str, direction: Literal["input", "output"], type_text: str) -> PortSpec:
        """Build a port from its MPAI-AIF type string (raises ``TypeSyntaxError``)."""
        return cls(name=name, direction=direction, type_text=type_text, type=parse_type(type_text))


@dataclass(frozen=True, slots=True)
class Record:
    """A value that arrived on input port ``port``."""

    port: str
    value: Any
    kind: Literal["record"] = "record"


@dataclass(frozen=True, slots=True)
class Signal:
    """A high-priority code; ``port`` is None when the controller sent it."""

    code: int
    port: str | None = None
    kind: Literal["signal"] = "signal"

    @property
    def name(self) -> str:
        """The code's name when it is a standard one, else ``USER+n``."""
        try:
            return SignalCode(self.code).name
        except ValueError:
            return (
                f"USER+{self.code - SignalCode.USER}"
                if self.code >= SignalCode.USER
                else str(self.code)
            )


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The writer at the other end of an input channel closed it; no more records follow."""

    port: str
    kind: Literal["eos"] = "eos"


@dataclass(frozen=True, slots=True)
class Stop:
    """No more events will come: every input closed, or the AIM was told to stop."""

    reason: str
    kind: Literal["stop"] = "stop"


PortEvent = Record | Signal | EndOfStream
AIMEvent = Record | Signal | Stop
