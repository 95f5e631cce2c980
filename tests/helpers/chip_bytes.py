"""Hand-made chip protocol frames, for tests that feed the decoder or the emulator bad bytes."""

from __future__ import annotations

import struct

from aif.aims.analog.imc_chip import protocol as p


def frame(
    opcode: int,
    payload: bytes,
    *,
    rid: int = 11,
    version: int = 1,
    magic: bytes = p.MAGIC,
    length: int | None = None,
) -> bytes:
    """A header and ``payload``, each header field overridable to break it on purpose."""
    size = len(payload) if length is None else length
    return struct.pack("<4sHHII", magic, version, opcode, rid, size) + payload
