"""Channel behaviour on real inproc sockets: refusals, limits, drops, closing, fairness.

Transports other than inproc, backpressure and the signal-overtakes-backlog guarantee are
in tests/integration/test_channel_sockets.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
import zmq.asyncio

from aif.communication import codec
from aif.communication.channel import (
    YIELD_EVERY,
    ChannelEndpoints,
    ChannelReader,
    ChannelWriter,
    new_address,
)
from aif.communication.ports import EndOfStream, Record, Signal
from aif.communication.types import parse_type
from aif.errors import ChannelClosed, ChannelError, MessageTooLarge, PortTypeError

RECV_TIMEOUT = 10.0


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
async def pair(ctx: zmq.asyncio.Context) -> AsyncIterator[tuple[ChannelReader, ChannelWriter]]:
    reader = ChannelReader(ctx, "in", "inproc")
    writer = ChannelWriter(ctx, "out", reader.endpoints)
    yield reader, writer
    writer.close(linger_ms=0)
    reader.close()


async def recv(reader: ChannelReader) -> Any:
    return await asyncio.wait_for(reader.recv(), RECV_TIMEOUT)


def raw_push(ctx: zmq.asyncio.Context, address: str) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = zmq.Socket(ctx, zmq.PUSH)  # a plain socket: sends never wait here
    sock.connect(address)
    return sock


# --------------------------------------------------------------------------- endpoints


def test_endpoints_round_trip_through_a_dict() -> None:
    endpoints = ChannelEndpoints(normal="ipc:///tmp/a-n", high="ipc:///tmp/a-h")
    assert ChannelEndpoints.from_dict(msgpack.unpackb(msgpack.packb(endpoints.to_dict()))) == (
        endpoints
    )


@pytest.mark.parametrize(
    "data",
    [[], {"normal": "ipc:///a"}, {"normal": "http://x", "high": "ipc:///b"}, {"normal": 1}],
)
def test_bad_endpoint_dicts_name_the_field(data: Any) -> None:
    with pytest.raises(ChannelError, match="channel endpoints"):
        ChannelEndpoints.from_dict(data)


async def test_inproc_endpoints_carry_the_port_and_one_uuid(ctx: zmq.asyncio.Context) -> None:
    reader = ChannelReader(ctx, "frames", "inproc")
    try:
        normal, high = reader.endpoints.normal, reader.endpoints.high
        assert normal.startswith("inproc://aif-") and normal.endswith("-frames-n")
        assert high == normal[:-1] + "h"
    finally:
        reader.close()


def test_long_ipc_paths_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match="shorter ipc_dir"):
        new_address("ipc", "x", tmp_path / ("d" * 120))


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ChannelError, match="transport"):
        new_address("udp", "x", None)  # type: ignore[arg-type]


async def test_queue_size_must_be_positive(ctx: zmq.asyncio.Context) -> None:
    with pytest.raises(ChannelError, match="queue_size"):
        ChannelReader(ctx, "in", "inproc", queue_size=0)


async def test_own_ipc_dir_is_removed_on_close(ctx: zmq.asyncio.Context) -> None:
    reader = ChannelReader(ctx, "in", "ipc")
    path = Path(reader.endpoints.normal.removeprefix("ipc://")).parent
    assert path.is_dir()
    reader.close()
    assert not path.exists()


# --------------------------------------------------------------------------- the writer refuses


async def test_values_that_do_not_fit_the_port_type_are_refused_at_the_writer(
    ctx: zmq.asyncio.Context,
) -> None:
    reader = ChannelReader(ctx, "in", "inproc")
    writer = ChannelWriter(ctx, "count", reader.endpoints, record_type=parse_type("int32"))
    try:
        with pytest.raises(PortTypeError, match="port 'count'"):
            await writer.send("seven")
        await writer.send(7)
        assert await recv(reader) == Record("in", 7)  # the refused value never left
    finally:
        writer.close(0)
        reader.close()


async def test_too_large_messages_are_refused_with_both_sizes_and_the_fix(
    ctx: zmq.asyncio.Context,
) -> None:
    reader = ChannelReader(ctx, "in", "inproc")
    writer = ChannelWriter(ctx, "out", reader.endpoints, max_message_size=1000)
    try:
        with pytest.raises(MessageTooLarge) as info:
            await writer.send(b"x" * 2000)
        text = str(info.value)
        size = codec.message_size(codec.encode(b"x" * 2000))
        assert "port 'out'" in text and "1000 bytes" in text and f"{size} bytes" in text
        assert "max_message_size" in text and "split" in text
    finally:
        writer.close(0)
        reader.close()


async def test_send_after_eos_and_after_close_are_refused(
    pair: tuple[ChannelReader, ChannelWriter],
) -> None:
    reader, writer = pair
    await writer.send_eos()
    with pytest.raises(ChannelError, match="after send_eos"):
        await writer.send(1)
    await writer.send_signal(5)  # signals may still go
    writer.close()
    with pytest.raises(ChannelClosed, match="closed"):
        await writer.send_signal(1)
    assert await recv(reader) == Signal(5, "in")
    assert await recv(reader) == EndOfStream("in")


# --------------------------------------------------------------------------- the reader drops


async def test_oversized_messages_are_dropped_counted_and_logged(
    ctx: zmq.asyncio.Context, caplog: pytest.LogCaptureFixture
) -> None:
    reader = ChannelReader(ctx, "in", "inproc", max_message_size=100)
    writer = ChannelWriter(ctx, "out", reader.endpoints)  # a writer with a larger limit
    try:
        with caplog.at_level(logging.WARNING, logger="aif.channel"):
            await writer.send(b"y" * 500)
            await writer.send(b"ok")
            assert await recv(reader) == Record("in", b"ok")
        assert reader.dropped == 1
        assert "port 'in'" in caplog.text and "over the limit of 100" in caplog.text
    finally:
        writer.close(0)
        reader.close()


async def test_unknown_kinds_and_bad_signals_are_dropped(
    ctx: zmq.asyncio.Context, pair: tuple[ChannelReader, ChannelWriter]
) -> None:
    reader, _writer = pair
    normal = raw_push(ctx, reader.endpoints.normal)
    high = raw_push(ctx, reader.endpoints.high)
    try:
        normal.send_multipart(codec.encode(1, kind="gossip"))
        high.send_multipart([b"\x01\x00", b"extra"])
        high.send(b"\x01\x00\x00")
        normal.send_multipart(codec.encode("after"))
        high.send(codec.encode_signal(9))
        assert await recv(reader) == Signal(9, "in")  # behind the bad ones on its lane
        assert await recv(reader) == Record("in", "after")
        assert reader.dropped == 3
    finally:
        normal.close(0)
        high.close(0)


# --------------------------------------------------------------------------- waiting and closing


async def test_recv_waits_until_something_arrives(
    pair: tuple[ChannelReader, ChannelWriter],
) -> None:
    reader, writer = pair
    pending = asyncio.create_task(reader.recv())
    await asyncio.sleep(0.01)
    assert not pending.done()
    await writer.send({"a": 1})
    assert await asyncio.wait_for(pending, RECV_TIMEOUT) == Record("in", {"a": 1})


async def test_closing_a_reader_wakes_its_waiting_recv(
    pair: tuple[ChannelReader, ChannelWriter],
) -> None:
    reader, _ = pair
    pending = asyncio.create_task(reader.recv())
    await asyncio.sleep(0.01)
    reader.close()
    with pytest.raises(ChannelClosed, match="port 'in'"):
        await asyncio.wait_for(pending, RECV_TIMEOUT)
    with pytest.raises(ChannelClosed):
        await reader.recv()


async def test_a_cancelled_recv_loses_nothing(pair: tuple[ChannelReader, ChannelWriter]) -> None:
    reader, writer = pair
    pending = asyncio.create_task(reader.recv())
    await asyncio.sleep(0.01)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await writer.send(1)
    assert await recv(reader) == Record("in", 1)


async def test_several_tasks_may_share_a_reader(
    pair: tuple[ChannelReader, ChannelWriter],
) -> None:
    reader, writer = pair
    tasks = [asyncio.create_task(reader.recv()) for _ in range(3)]
    await asyncio.sleep(0.01)
    for i in range(3):
        await writer.send(i)
    events = await asyncio.wait_for(asyncio.gather(*tasks), RECV_TIMEOUT)
    assert sorted(e.value for e in events) == [0, 1, 2]


async def test_many_writers_feed_one_reader_each_ending_its_stream(
    ctx: zmq.asyncio.Context,
) -> None:
    reader = ChannelReader(ctx, "in", "inproc")
    writers = [ChannelWriter(ctx, f"w{i}", reader.endpoints) for i in range(3)]
    try:
        for i, writer in enumerate(writers):
            await writer.send(i)
            await writer.send_eos()
        events = [await recv(reader) for _ in range(6)]
        assert sorted(e.value for e in events if isinstance(e, Record)) == [0, 1, 2]
        assert events.count(EndOfStream("in")) == 3
    finally:
        for writer in writers:
            writer.close(0)
        reader.close()


async def test_a_steady_stream_does_not_starve_the_loop(
    pair: tuple[ChannelReader, ChannelWriter],
) -> None:
    reader, writer = pair
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = ticks
    count = 4 * YIELD_EVERY
    for i in range(count):
        await writer.send(i)  # never has to wait: the queue holds 1000
    assert ticks > start  # the writer yielded on its own
    start = ticks
    for _ in range(count):
        await reader.recv()  # never has to wait either
    assert ticks > start
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
