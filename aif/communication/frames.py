"""Length-prefixed msgpack frames on a pipe: how aif talks to the helper processes it
starts itself (warm workers, the daemon's YAML parser).

A frame is a 4-byte big-endian body length, then one msgpack map (no pickle). Reading
checks the announced length against the reader's limit before reading the body, and
reads exactly that many bytes: a pipe hands a large frame over in parts.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, BinaryIO

import msgpack

from aif.errors import MalformedMessage

HEADER = struct.Struct(">I")


def encode(message: Mapping[str, Any]) -> bytes:
    """One frame: the body's length, then ``message`` as a msgpack map."""
    body: bytes = msgpack.packb(dict(message), use_bin_type=True)
    return HEADER.pack(len(body)) + body


def body_length(header: bytes, limit: int, what: str) -> int:
    """The body length a header announces; ``MalformedMessage`` past ``limit``."""
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise MalformedMessage(f"{what} frame of {length} bytes (limit {limit})")
    return int(length)


def decode(body: bytes, what: str) -> dict[str, Any]:
    """A frame's body as its map; ``MalformedMessage`` when it is not msgpack or not a map."""
    try:
        data = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedMessage(f"{what} frame is not msgpack: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessage(f"{what} frame is not a map: {type(data).__name__}")
    return data


def read_body(stream: BinaryIO, limit: int, what: str) -> bytes | None:
    """The next frame's body from a blocking ``stream``; None at end of file."""
    header = _read_exactly(stream, HEADER.size)
    if len(header) < HEADER.size:
        return None
    length = body_length(header, limit, what)
    body = _read_exactly(stream, length)
    return body if len(body) == length else None


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes, fewer only at end of file."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
