"""A live reader fed garbage by raw PUSH sockets never fails: it drops and counts each bad
message, delivers the good ones, and still serves a good record afterwards."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq
import zmq.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aif.communication import codec
from aif.communication.channel import ChannelReader
from aif.communication.ports import EndOfStream, Record, Signal
from aif.errors import MalformedMessage

MARK_SIGNAL = 0xFFFF
TIMEOUT = 10.0


class Rig:
    """One reader on ipc and raw PUSH sockets into both of its lanes, for all examples."""

    def __init__(self) -> None:
        self.ctx = zmq.asyncio.Context()
        self.reader = ChannelReader(self.ctx, "in", "ipc", max_message_size=4096)
        self.normal: zmq.Socket[Any] = zmq.Socket(self.ctx, zmq.PUSH)
        self.high: zmq.Socket[Any] = zmq.Socket(self.ctx, zmq.PUSH)
        self.normal.connect(self.reader.endpoints.normal)
        self.high.connect(self.reader.endpoints.high)
        self.ids = itertools.count()

    def close(self) -> None:
        self.normal.close(0)
        self.high.close(0)
        self.reader.close()
        self.ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def expected_event(frames: list[bytes]) -> Any:
    """What the reader should deliver for these normal-lane frames, or None if dropped."""
    if sum(map(len, frames)) > 4096:
        return None
    try:
        message = codec.decode(frames)
    except MalformedMessage:
        return None
    if message.kind == codec.KIND_RECORD:
        return Record("in", message.value)
    if message.kind == codec.KIND_EOS:
        return EndOfStream("in")
    return None


frames = st.lists(st.binary(max_size=48), min_size=1, max_size=5)


@st.composite
def near_misses(draw: st.DrawFn) -> list[bytes]:
    """A real message with one frame truncated or one byte changed."""
    value = draw(st.one_of(st.integers(0, 9), st.just({"a": np.arange(3, dtype=np.int8)})))
    message = [bytes(f) for f in codec.encode(value)]
    index = draw(st.integers(0, len(message) - 1))
    frame = message[index]
    if draw(st.booleans()) or not frame:
        message[index] = frame[: draw(st.integers(0, len(frame)))]
    else:
        at = draw(st.integers(0, len(frame) - 1))
        message[index] = frame[:at] + bytes([draw(st.integers(0, 255))]) + frame[at + 1 :]
    return message


oversized = st.just([codec.encode(b"z" * 5000)[0], codec.encode(b"z" * 5000)[1]]).map(
    lambda fs: [bytes(f) for f in fs]
)
normal_garbage = st.lists(st.one_of(frames, near_misses(), oversized), max_size=6)
# Anything on the high lane that is not one 2-byte frame is garbage.
high_garbage = st.lists(
    frames.filter(lambda fs: not (len(fs) == 1 and len(fs[0]) == 2)), max_size=4
)


async def feed(rig: Rig, normal: list[list[bytes]], high: list[list[bytes]]) -> None:
    reader = rig.reader
    dropped_before = reader.dropped
    mark = f"mark-{next(rig.ids)}"
    for message in normal:
        rig.normal.send_multipart(message)
    rig.normal.send_multipart([bytes(f) for f in codec.encode(mark)])  # same pipe: FIFO
    for message in high:
        rig.high.send_multipart(message)
    rig.high.send(codec.encode_signal(MARK_SIGNAL))

    wanted = [e for e in map(expected_event, normal) if e is not None]
    delivered: list[Any] = []
    got_mark = got_signal = False
    while not (got_mark and got_signal):
        event = await asyncio.wait_for(reader.recv(), TIMEOUT)
        if isinstance(event, Signal):
            assert event.code == MARK_SIGNAL and not got_signal
            got_signal = True
        elif isinstance(event, Record) and event.value == mark:
            got_mark = True
        else:
            assert not got_mark
            delivered.append(event)
    assert len(delivered) == len(wanted)
    for got, want in zip(delivered, wanted, strict=True):
        assert type(got) is type(want)
        if isinstance(want, Record):
            assert repr(got.value) == repr(want.value)
    assert reader.dropped - dropped_before == len(normal) - len(wanted) + len(high)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(normal=normal_garbage, high=high_garbage)
def test_a_live_reader_survives_garbage_on_both_lanes(
    rig: Rig, normal: list[list[bytes]], high: list[list[bytes]]
) -> None:
    asyncio.run(feed(rig, normal, high))
