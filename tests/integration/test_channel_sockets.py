"""Channels and events over real inproc, ipc and tcp sockets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zmq
import zmq.asyncio

from aif.communication import codec
from aif.communication.channel import ChannelReader, ChannelWriter, Transport
from aif.communication.events import Event, EventPublisher, EventSubscriber
from aif.communication.ports import EndOfStream, Signal
from aif.errors import ChannelError, MalformedMessage

pytestmark = pytest.mark.integration

TRANSPORTS: list[Transport] = ["inproc", "ipc", "tcp"]
TIMEOUT = 20.0


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    value: Transport = request.param
    return value


def open_pair(
    ctx: zmq.asyncio.Context, transport: Transport, tmp_path: Path, **options: Any
) -> tuple[ChannelReader, ChannelWriter]:
    reader = ChannelReader(ctx, "in", transport, ipc_dir=tmp_path, **options)
    writer = ChannelWriter(ctx, "out", reader.endpoints, **options)
    return reader, writer


async def recv(reader: ChannelReader) -> Any:
    return await asyncio.wait_for(reader.recv(), TIMEOUT)


def wait_readable(sock: zmq.Socket[Any]) -> None:
    """Block until ``sock`` has a message (test set-up only: a deterministic start state)."""
    assert sock.poll(int(TIMEOUT * 1000), zmq.POLLIN), "nothing arrived"


async def test_records_signals_and_eos_arrive(
    ctx: zmq.asyncio.Context, transport: Transport, tmp_path: Path
) -> None:
    reader, writer = open_pair(ctx, transport, tmp_path)
    try:
        if transport == "tcp":
            assert reader.endpoints.normal.startswith("tcp://127.0.0.1:")
            assert not reader.endpoints.normal.endswith(":*")
        values = [1, "two", {"three": [3.0, None]}, b"\x04", np.arange(5, dtype=np.int16)]
        for value in values:
            await writer.send(value)
        await writer.send_eos()
        await writer.send_signal(260)
        received = [await recv(reader) for _ in range(len(values) + 2)]
        signals = [e for e in received if isinstance(e, Signal)]
        stream = [e for e in received if not isinstance(e, Signal)]
        assert signals == [Signal(260, "in")]
        assert [e.value for e in stream[:-2]] == values[:-1]
        np.testing.assert_array_equal(stream[-2].value, values[-1])
        assert stream[-1] == EndOfStream("in")
    finally:
        writer.close(0)
        reader.close()


async def test_a_signal_overtakes_a_backlog_of_ten_thousand_records(
    ctx: zmq.asyncio.Context, transport: Transport, tmp_path: Path
) -> None:
    reader, writer = open_pair(ctx, transport, tmp_path, queue_size=20_000)
    try:
        for i in range(10_000):
            await writer.send(i)
        await writer.send_signal(4)
        wait_readable(reader._high)  # both lanes hold messages: the order is up to recv
        wait_readable(reader._normal)
        assert await recv(reader) == Signal(4, "in")
        received = [(await recv(reader)).value for _ in range(10_000)]
        assert received == list(range(10_000))
    finally:
        writer.close(0)
        reader.close()


async def test_backpressure_blocks_the_writer_and_loses_nothing(
    ctx: zmq.asyncio.Context, transport: Transport, tmp_path: Path
) -> None:
    # 400 x 64 KiB is more than the sockets' queues (1 message each) plus any kernel
    # buffers hold, so the writer must wait for the reader.
    reader, writer = open_pair(ctx, transport, tmp_path, queue_size=1)
    payload = os.urandom(64 * 1024)
    count, sent = 400, 0

    async def produce() -> None:
        nonlocal sent
        for i in range(count):
            await writer.send([i, payload])
            sent += 1

    try:
        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.2)
        assert not producer.done() and sent < count  # blocked, not dropping
        received = []
        for _ in range(count):
            event = await recv(reader)
            assert event.value[1] == payload
            received.append(event.value[0])
        await asyncio.wait_for(producer, TIMEOUT)
        assert received == list(range(count)) and sent == count
        assert reader.dropped == 0
    finally:
        writer.close(0)
        reader.close()


async def test_a_16_mib_tensor_arrives_bytes_identical(
    ctx: zmq.asyncio.Context, transport: Transport, tmp_path: Path
) -> None:
    reader, writer = open_pair(ctx, transport, tmp_path)
    tensor = torch.from_numpy(np.frombuffer(os.urandom(16 * 2**20), dtype=np.float32).copy())
    try:
        await writer.send({"weights": tensor.reshape(2048, 2048)})
        event = await recv(reader)
        got = event.value["weights"]
        assert isinstance(got, torch.Tensor) and got.shape == (2048, 2048)
        assert got.dtype == torch.float32
        assert got.numpy().tobytes() == tensor.numpy().tobytes()
    finally:
        writer.close(0)
        reader.close()


async def test_garbage_from_a_raw_socket_is_dropped_and_good_records_still_arrive(
    ctx: zmq.asyncio.Context, transport: Transport, tmp_path: Path
) -> None:
    reader, writer = open_pair(ctx, transport, tmp_path)
    raw: zmq.Socket[Any] = zmq.Socket(ctx, zmq.PUSH)
    try:
        raw.connect(reader.endpoints.normal)
        good = codec.encode({"n": np.arange(3)})
        raw.send_multipart([b"junk"])
        raw.send_multipart([bytes(good[0]), bytes(good[1])[:-1], bytes(good[2])])
        raw.send_multipart([bytes(f) for f in good])
        event = await recv(reader)
        np.testing.assert_array_equal(event.value["n"], np.arange(3))
        assert reader.dropped == 2
    finally:
        raw.close(0)
        writer.close(0)
        reader.close()


# --------------------------------------------------------------------------- events


async def drain(subscriber: EventSubscriber) -> None:
    while True:
        try:
            await asyncio.wait_for(subscriber.recv(), 0.05)
        except TimeoutError:
            return


async def until_subscribed(publisher: EventPublisher, subscriber: EventSubscriber) -> None:
    """PUB drops events until a subscription reaches it: publish probes until one arrives."""
    while True:
        await publisher.publish(Event("progress", "probe", None, {}))
        try:
            await asyncio.wait_for(subscriber.recv(), 0.05)
            return
        except TimeoutError:
            continue


async def test_events_reach_subscribers_of_their_topic(
    ctx: zmq.asyncio.Context, transport: Transport, tmp_path: Path
) -> None:
    publisher = EventPublisher(ctx, transport=transport, ipc_dir=tmp_path)
    everything = EventSubscriber(ctx, publisher.endpoint)
    progress_only = EventSubscriber(ctx, publisher.endpoint, topics=["progress"])
    try:
        for subscriber in (everything, progress_only):
            await until_subscribed(publisher, subscriber)
        for subscriber in (everything, progress_only):
            await drain(subscriber)
        sent = [
            Event("state", "sim", "run-1", {"state": "running"}, 1.0),
            Event("progress", "sim", "run-1", {"epoch": 2, "loss": np.float32(0.5)}, 2.0),
            Event("result", "sim", "run-1", {"accuracy": 0.9}, 3.0),
        ]
        for event in sent:
            await publisher.publish(event)
        got_all = [await asyncio.wait_for(everything.recv(), TIMEOUT) for _ in sent]
        assert [e.topic for e in got_all] == ["state", "progress", "result"]
        assert got_all[0] == sent[0]
        assert got_all[1].data == {"epoch": 2, "loss": 0.5}
        only = await asyncio.wait_for(progress_only.recv(), TIMEOUT)
        assert only == Event("progress", "sim", "run-1", {"epoch": 2, "loss": 0.5}, 2.0)
    finally:
        everything.close()
        progress_only.close()
        publisher.close()


async def test_malformed_events_are_dropped_and_counted(ctx: zmq.asyncio.Context) -> None:
    raw: zmq.Socket[Any] = zmq.Socket(ctx, zmq.PUB)
    endpoint = "inproc://events-garbage"
    raw.bind(endpoint)
    subscriber = EventSubscriber(ctx, endpoint)
    try:
        good = Event("log", "x", None, {"line": "ok"}, 1.0).to_frames()
        received = None
        while received is None:  # until the subscription is in place
            raw.send_multipart([b"log", b"\xc1"])
            raw.send_multipart([b"state", codec.pack({"source": 1})])
            raw.send_multipart(good)
            try:
                received = await asyncio.wait_for(subscriber.recv(), 0.05)
            except TimeoutError:
                continue
        assert received.data == {"line": "ok"}
        assert subscriber.dropped >= 2
    finally:
        subscriber.close()
        raw.close(0)


@pytest.mark.parametrize(
    "frames",
    [
        [b"log"],
        [b"weather", codec.pack({})],
        [b"log", codec.pack([1])],
        [b"log", codec.pack({"source": "a", "workflow": None, "data": {}, "time": "now"})],
        [b"log", codec.pack({"source": "a", "workflow": 3, "data": {}, "time": 1.0})],
        [b"log", codec.pack({"source": "a", "workflow": None, "data": [], "time": 1.0})],
    ],
)
def test_event_frames_are_validated(frames: list[bytes]) -> None:
    with pytest.raises(MalformedMessage):
        Event.from_frames(frames)


async def test_unknown_topics_are_refused(ctx: zmq.asyncio.Context) -> None:
    with pytest.raises(ChannelError, match="unknown event topics"):
        EventSubscriber(ctx, "inproc://nowhere", topics=["weather"])  # type: ignore[list-item]
