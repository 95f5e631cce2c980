"""Length-prefixed msgpack frames (``aif.communication.frames``) on a real pipe: a frame
far larger than the pipe's buffer arrives whole, a length past the limit is refused
before its body is read, and end of file mid-frame is end of file."""

from __future__ import annotations

import os
import threading

import pytest

from aif.communication import frames
from aif.errors import MalformedMessage


def pipe_with(data: bytes, close: bool = True) -> int:
    """The read end of a pipe that a thread fills with ``data`` (in the pipe's own parts)."""
    read, write = os.pipe()

    def fill() -> None:
        os.write(write, data)  # blocks until the reader has taken the rest
        if close:
            os.close(write)

    threading.Thread(target=fill, daemon=True).start()
    return read


def test_a_frame_larger_than_the_pipe_buffer_is_read_whole() -> None:
    message = {"text": "x" * (4 << 20), "n": 7}
    with os.fdopen(pipe_with(frames.encode(message)), "rb", buffering=0) as stream:
        body = frames.read_body(stream, 8 << 20, "test")
        assert body is not None
        assert frames.decode(body, "test") == message
        assert frames.read_body(stream, 8 << 20, "test") is None  # then end of file


def test_a_length_past_the_limit_is_refused_before_the_body() -> None:
    frame = frames.encode({"text": "y" * 1000})
    with (
        os.fdopen(pipe_with(frame), "rb", buffering=0) as stream,
        pytest.raises(MalformedMessage, match=r"test frame of 10.. bytes \(limit 100\)"),
    ):
        frames.read_body(stream, 100, "test")


def test_end_of_file_mid_frame_is_end_of_file() -> None:
    frame = frames.encode({"a": 1})
    with os.fdopen(pipe_with(frame[:-2]), "rb", buffering=0) as stream:
        assert frames.read_body(stream, 1000, "test") is None


@pytest.mark.parametrize(
    ("body", "says"), [(b"\xc1", "not msgpack"), (b"\x93\x01\x02\x03", "not a map")]
)
def test_a_body_that_is_not_a_map_is_refused_by_name(body: bytes, says: str) -> None:
    with pytest.raises(MalformedMessage, match=f"test frame is {says}"):
        frames.decode(body, "test")
