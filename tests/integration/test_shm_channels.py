"""Large arrays through shared memory between real processes on ipc channels.

Every test checks /dev/shm afterwards by the names of its own readers, so tests that
run beside it (and their segments) do not matter.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
import zmq.asyncio

from aif.communication import codec, shm
from aif.communication.arrays import EXT_SHM_ARRAY
from aif.communication.channel import ChannelEndpoints, ChannelReader, ChannelWriter
from aif.communication.limits import SHM_MIN_BYTES, SHM_SLOTS
from aif.communication.ports import EndOfStream, Record
from aif.errors import MalformedMessage

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm"),
]

TIMEOUT = 30.0
MiB = 2**20

# A child process: "echo" sends every record back; "read" reads N records, says so on
# stdout, then sleeps (to be killed); "write" sends N arrays, says so, then sleeps.
CHILD = r"""
import asyncio, json, sys, time
from pathlib import Path
import numpy as np
import zmq.asyncio
from aif.communication.channel import ChannelEndpoints, ChannelReader, ChannelWriter
from aif.communication.ports import Record

async def main(role, ipc, arg):
    ctx = zmq.asyncio.Context()
    if role == "write":
        writer = ChannelWriter(ctx, "out", ChannelEndpoints.from_dict(json.loads(arg)))
        for i in range(6):
            await writer.send(np.full(2 * 2**20, i, dtype=np.uint8))
        print("sent", flush=True)
        time.sleep(600)
    reader = ChannelReader(ctx, "in", "ipc", ipc_dir=Path(ipc))
    print(json.dumps(reader.endpoints.to_dict()), flush=True)
    if role == "read":
        for _ in range(int(arg)):
            await reader.recv()
        print("read", flush=True)
        time.sleep(600)
    back = ChannelWriter(ctx, "back", ChannelEndpoints.from_dict(json.loads(sys.stdin.readline())))
    while isinstance(event := await reader.recv(), Record):
        await back.send(event.value)
    back.close()
    reader.close()
    ctx.term()

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


def child(role: str, ipc: Path, arg: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, role, str(ipc), arg],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    text = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), TIMEOUT)
    assert text, f"child exited with {proc.poll()}"
    return text


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(TIMEOUT)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def leftovers(address: str) -> list[str]:
    """What /dev/shm still holds for the reader at ``address``."""
    token = shm.reader_token(address)
    return sorted(n for n in os.listdir(shm.SHM_DIR) if n.startswith(f"aif-{token}"))


async def test_a_4mib_array_goes_there_and_back_bit_exact(
    ctx: zmq.asyncio.Context, tmp_path: Path
) -> None:
    back = ChannelReader(ctx, "back", "ipc", ipc_dir=tmp_path)
    proc = child("echo", tmp_path)
    try:
        there = ChannelEndpoints.from_dict(json.loads(await line(proc)))
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(back.endpoints.to_dict()) + "\n")
        proc.stdin.flush()
        writer = ChannelWriter(ctx, "out", there)
        sent = np.random.default_rng(7).standard_normal(MiB // 2)  # 4 MiB of float64
        for _ in range(3):  # again and again: the segments are reused
            await writer.send({"x": sent, "n": 1})
            event = await asyncio.wait_for(back.recv(), TIMEOUT)
            assert isinstance(event, Record)
            got = event.value["x"]
            assert got.dtype == sent.dtype and got.shape == sent.shape
            assert got.tobytes() == sent.tobytes()
            del event, got
        assert writer._segments is not None and writer._segments._slots  # it went by shm
        await writer.send_eos()
        assert proc.wait(TIMEOUT) == 0
        writer.close()
    finally:
        kill(proc)
        back.close()
    assert leftovers(there.normal) == []
    assert leftovers(back.endpoints.normal) == []


async def test_a_reader_killed_mid_stream_leaves_nothing_once_the_writer_closes(
    ctx: zmq.asyncio.Context, tmp_path: Path
) -> None:
    proc = child("read", tmp_path, "2")
    try:
        endpoints = ChannelEndpoints.from_dict(json.loads(await line(proc)))
        writer = ChannelWriter(ctx, "out", endpoints, queue_size=4)
        for i in range(4):
            await writer.send(np.full(2 * MiB, i, dtype=np.uint8))
        await line(proc)  # it read two, the others wait in its queue
        assert leftovers(endpoints.normal)  # the marker and the segments are there
        kill(proc)
        writer.close(linger_ms=0)
    finally:
        kill(proc)
    assert leftovers(endpoints.normal) == []


async def test_a_writer_killed_leaves_nothing_once_the_reader_closes(
    ctx: zmq.asyncio.Context, tmp_path: Path
) -> None:
    reader = ChannelReader(ctx, "in", "ipc", ipc_dir=tmp_path, queue_size=100)
    proc = child("write", tmp_path, json.dumps(reader.endpoints.to_dict()))
    try:
        await line(proc)
        first = await asyncio.wait_for(reader.recv(), TIMEOUT)
        assert isinstance(first, Record)
        assert first.value.shape == (2 * MiB,) and first.value[0] == 0
        kill(proc)
    finally:
        kill(proc)
        reader.close()
    # The array already received stays valid after its segment is gone.
    assert int(first.value.sum()) == 0
    assert leftovers(reader.endpoints.normal) == []


def forged(name: Any, nbytes: Any = SHM_MIN_BYTES, ticket: Any = 1) -> list[bytes]:
    handle = msgpack.packb([name, nbytes, ticket, "uint8", [nbytes], "np"])
    body = msgpack.packb({"x": msgpack.ExtType(EXT_SHM_ARRAY, handle)})
    return [codec.encode(None)[0], body]


async def test_forged_handles_are_refused_and_the_reader_goes_on(
    ctx: zmq.asyncio.Context, tmp_path: Path
) -> None:
    reader = ChannelReader(ctx, "in", "ipc", ipc_dir=tmp_path)
    token = reader._segments.token if reader._segments else ""
    own = f"aif-{token}-{'0' * 16}"
    planted = shm.SHM_DIR / f"{own}-7"  # a real segment of the right name, too small
    planted.write_bytes(bytes(shm.HEADER + 16))
    raw = ctx.socket(zmq.PUSH)
    raw.connect(reader.endpoints.normal)
    try:
        bad = [
            forged("../../etc/passwd"),
            forged(f"aif-{'f' * 16}-{'0' * 16}-1"),  # another reader's segment
            forged(f"{own}-1/../../x"),
            forged(f"{own}-99"),  # missing
            forged(f"{own}-7"),  # holds 16 bytes, the handle says 1 MiB
            forged(f"{own}-7", nbytes=16, ticket=5),  # not the ticket it holds
            forged(f"{own}-7", nbytes=-1),
            forged(f"{own}-7", nbytes=2**40),  # over the size limit
        ]
        for frames in bad:
            await raw.send_multipart(frames)
        await raw.send_multipart(codec.encode("fine"))
        event = await asyncio.wait_for(reader.recv(), TIMEOUT)
        assert isinstance(event, Record) and event.value == "fine"
        assert reader.dropped == len(bad)
    finally:
        raw.close(linger=0)
        reader.close()
    assert not planted.exists()  # the reader's close removes what was addressed to it
    with pytest.raises(MalformedMessage, match="shared-memory"):
        codec.decode(forged(f"{own}-7"))  # a plain decode takes no handle at all


async def test_a_reader_that_keeps_every_array_gets_the_rest_inline(
    ctx: zmq.asyncio.Context, tmp_path: Path
) -> None:
    reader = ChannelReader(ctx, "in", "ipc", ipc_dir=tmp_path, queue_size=100)
    writer = ChannelWriter(ctx, "out", reader.endpoints, queue_size=100)
    kept = []
    try:
        for i in range(SHM_SLOTS + 3):
            await writer.send(np.full(SHM_MIN_BYTES, i % 256, dtype=np.uint8))
            event = await asyncio.wait_for(reader.recv(), TIMEOUT)
            assert isinstance(event, Record)
            kept.append(event.value)
        assert [int(a[0]) for a in kept] == list(range(SHM_SLOTS + 3))
        assert all(int(a.min()) == int(a.max()) for a in kept)
        await writer.send_eos()
        assert isinstance(await asyncio.wait_for(reader.recv(), TIMEOUT), EndOfStream)
    finally:
        writer.close()
        reader.close()
    assert leftovers(reader.endpoints.normal) == []


def test_sweep_removes_what_a_dead_reader_left() -> None:
    token = "0123456789abcdef"
    names = [f"aif-{token}.live", f"aif-{token}-{'a' * 16}-0", f"aif-{token}-{'a' * 16}-1"]
    for name in names:
        (shm.SHM_DIR / name).write_bytes(b"x")
    shm.sweep()
    assert [n for n in names if (shm.SHM_DIR / n).exists()] == []
