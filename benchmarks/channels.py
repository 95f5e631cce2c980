"""aif channels against raw pyzmq + msgpack, side by side, in one process.

Run: ``python -m benchmarks.channels [--quick] [--transport ipc|tcp|inproc]``

What is measured (each aif run interleaved with its baseline run to cancel noise):

* round-trip latency (median, p99): a value goes A -> B, B echoes it back. aif: two
  channels (ChannelWriter -> ChannelReader each way), the echo side re-sends the
  decoded value. raw: the same socket kinds (zmq.asyncio PUSH -> PULL each way) carrying
  ``msgpack.packb(value)``, sent with ``copy=False``, received with ``copy`` chosen for
  the size (a hand-tuned pipe for this one payload), echoed after ``unpackb``/``packb``.
  The payload is ``bytes`` for both; an extra column shows aif carrying the same
  payload as a uint8 ndarray (the zero-copy buffer-frame path).
* one-way throughput (MiB/s): one writer, one reader, same queue depth for both.
* signal latency: from ``send_signal`` to the reader's ``recv`` returning the signal,
  with an idle reader and with a reader working through a 10,000-record backlog (it
  yields to the loop after each record, as an AIM awaiting its own work would). For
  contrast, a raw single-socket pipe where the "signal" queues behind the backlog.

* two processes (``--only two-process`` measures only this): a writer process (this
  one) and an echo process (``--echo``, a real second process), over ipc. aif channels
  each way against the floor, a blocking pyzmq PAIR pair that sends each frame back as
  it came, alternating; median round trip for 8 B and 1 KiB (``bytes``), 1 MiB and
  16 MiB (uint8 ndarrays: aif sends these through shared memory). Ratios are aif over
  the floor: ``two_process_ratio_8B`` (target <= 1.5), ``two_process_ratio_16MiB``
  (target <= 0.6).

The last line printed is one JSON object with the ratios and whether the targets hold.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq
import zmq.asyncio

from aif.communication.channel import ChannelEndpoints, ChannelReader, ChannelWriter, Transport
from aif.communication.ports import Record, Signal
from benchmarks.machine import describe, rounded

MiB = 2**20
SIZES: list[tuple[str, int]] = [
    ("8 B", 8),
    ("4 KiB", 4096),
    ("64 KiB", 64 * 1024),
    ("1 MiB", MiB),
    ("16 MiB", 16 * MiB),
]
TARGETS = {
    "latency_ratio_small": ("<=", 1.25),
    "throughput_ratio_16MiB": (">=", 0.8),
    "signal_backlog_ratio": ("<=", 2.0),
}
BACKLOG = 10_000
COPY_THRESHOLD = 64 * 1024  # the raw pipe receives smaller messages as bytes (copy=True)


def rtt_count(size: int, quick: bool) -> int:
    full = {8: 6000, 4096: 6000, 64 * 1024: 2000, MiB: 300, 16 * MiB: 40}[size]
    return max(10, full // 5) if quick else full


def throughput_count(size: int, quick: bool) -> int:
    """Messages per contender: enough bytes to average out the big sizes' noise."""
    budget = (128 if quick else 512) * MiB
    return max(24 if quick else 96, min(budget // size, 5000 if quick else 20000))


def queue_for(size: int) -> int:
    """Same queue depth for aif and raw; deep for small messages, bounded memory for big."""
    return max(2, min(1000, (64 * MiB) // size))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- pipes


class AifPipe:
    """A -> B and B -> A over aif channels; ``echo`` runs on B."""

    def __init__(self, ctx: zmq.asyncio.Context, transport: Transport, ipc: Path, hwm: int):
        self.to_b = ChannelReader(ctx, "b", transport, ipc_dir=ipc, queue_size=hwm)
        self.a_out = ChannelWriter(ctx, "a", self.to_b.endpoints, queue_size=hwm)
        self.to_a = ChannelReader(ctx, "a", transport, ipc_dir=ipc, queue_size=hwm)
        self.b_out = ChannelWriter(ctx, "b", self.to_a.endpoints, queue_size=hwm)

    async def echo(self) -> None:
        while True:
            event = await self.to_b.recv()
            if not isinstance(event, Record):
                return
            await self.b_out.send(event.value)

    async def round_trips(self, payload: Any, n: int, out: list[float]) -> None:
        send, recv, clock = self.a_out.send, self.to_a.recv, time.perf_counter
        for _ in range(n):
            start = clock()
            await send(payload)
            await recv()
            out.append(clock() - start)

    async def one_way(self, payload: Any, n: int) -> float:
        async def consume() -> None:
            for _ in range(n):
                await self.to_b.recv()

        start = time.perf_counter()
        task = asyncio.create_task(consume())
        for _ in range(n):
            await self.a_out.send(payload)
        await task
        return time.perf_counter() - start

    async def stop(self) -> None:
        await self.a_out.send_eos()

    def close(self) -> None:
        for part in (self.a_out, self.b_out, self.to_a, self.to_b):
            part.close()


class RawPipe:
    """The baseline: zmq.asyncio PUSH -> PULL each way, one msgpack frame per message."""

    def __init__(
        self, ctx: zmq.asyncio.Context, transport: Transport, ipc: Path, hwm: int, size: int
    ):
        self.copy = size < COPY_THRESHOLD
        self.sockets: list[zmq.asyncio.Socket] = []
        self.a_out, self.to_b = self._pair(ctx, transport, ipc, hwm, "rb")
        self.b_out, self.to_a = self._pair(ctx, transport, ipc, hwm, "ra")

    def _pair(
        self, ctx: zmq.asyncio.Context, transport: str, ipc: Path, hwm: int, name: str
    ) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
        pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
        pull.rcvhwm = push.sndhwm = hwm
        pull.linger = push.linger = 0
        address = {
            "ipc": f"ipc://{ipc}/{name}-{os.urandom(4).hex()}",
            "inproc": f"inproc://{name}-{os.urandom(4).hex()}",
            "tcp": "tcp://127.0.0.1:*",
        }[transport]
        pull.bind(address)
        push.connect(pull.last_endpoint.decode())
        self.sockets += [pull, push]
        return push, pull

    async def _recv(self, sock: zmq.asyncio.Socket) -> Any:
        if self.copy:
            return msgpack.unpackb(await sock.recv())
        frame = await sock.recv(copy=False)
        return msgpack.unpackb(frame.buffer)

    async def echo(self) -> None:
        while True:
            value = await self._recv(self.to_b)
            if value is None:
                return
            await self.b_out.send(msgpack.packb(value), copy=False)

    async def round_trips(self, payload: Any, n: int, out: list[float]) -> None:
        send, clock = self.a_out.send, time.perf_counter
        for _ in range(n):
            start = clock()
            await send(msgpack.packb(payload), copy=False)
            await self._recv(self.to_a)
            out.append(clock() - start)

    async def one_way(self, payload: Any, n: int) -> float:
        async def consume() -> None:
            for _ in range(n):
                await self._recv(self.to_b)

        start = time.perf_counter()
        task = asyncio.create_task(consume())
        for _ in range(n):
            await self.a_out.send(msgpack.packb(payload), copy=False)
        await task
        return time.perf_counter() - start

    async def stop(self) -> None:
        await self.a_out.send(msgpack.packb(None))

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)


# --------------------------------------------------------------------------- measurements


async def interleaved(
    runs: dict[str, Callable[[int, list[float]], Awaitable[None]]], n: int, rounds: int
) -> dict[str, list[float]]:
    """Run each contender ``n`` times in total, alternating in ``rounds`` slices."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            await runs[name](max(1, n // rounds), samples[name])
    return samples


async def latency(
    ctx: zmq.asyncio.Context, transport: Transport, ipc: Path, size: int, quick: bool
) -> dict[str, dict[str, float]]:
    hwm = queue_for(size)
    aif, aif_np, raw = (
        AifPipe(ctx, transport, ipc, hwm),
        AifPipe(ctx, transport, ipc, hwm),
        RawPipe(ctx, transport, ipc, hwm, size),
    )
    pipes: dict[str, Any] = {"aif": aif, "raw": raw, "aif_ndarray": aif_np}
    payloads = {"aif": os.urandom(size), "raw": os.urandom(size)}
    payloads["aif_ndarray"] = np.frombuffer(os.urandom(size), dtype=np.uint8)
    echoes = [asyncio.create_task(p.echo()) for p in pipes.values()]
    for name, pipe in pipes.items():  # warm up connections and allocators
        await pipe.round_trips(payloads[name], 5, [])

    def run(name: str) -> Callable[[int, list[float]], Awaitable[None]]:
        return lambda n, out: pipes[name].round_trips(payloads[name], n, out)

    n = rtt_count(size, quick)
    samples = await interleaved({name: run(name) for name in pipes}, n, 6 if quick else 10)
    for pipe in pipes.values():
        await pipe.stop()
    await asyncio.gather(*echoes)
    for pipe in pipes.values():
        pipe.close()
    return {
        name: {"median_us": statistics.median(s) * 1e6, "p99_us": percentile(s, 0.99) * 1e6}
        for name, s in samples.items()
    }


async def throughput(
    ctx: zmq.asyncio.Context, transport: Transport, ipc: Path, size: int, quick: bool
) -> dict[str, float]:
    hwm = queue_for(size)
    pipes: dict[str, Any] = {
        "aif": AifPipe(ctx, transport, ipc, hwm),
        "raw": RawPipe(ctx, transport, ipc, hwm, size),
        "aif_ndarray": AifPipe(ctx, transport, ipc, hwm),
    }
    payloads: dict[str, Any] = {"aif": os.urandom(size), "raw": os.urandom(size)}
    payloads["aif_ndarray"] = np.frombuffer(os.urandom(size), dtype=np.uint8)
    n = throughput_count(size, quick)
    rounds = 4 if quick else 6
    seconds = {name: 0.0 for name in pipes}
    names = list(pipes)
    for name in names:
        await pipes[name].one_way(payloads[name], min(n, 20))  # warm up
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds[name] += await pipes[name].one_way(payloads[name], max(1, n // rounds))
    for pipe in pipes.values():
        pipe.close()
    total = max(1, n // rounds) * rounds * size / MiB
    return {name: total / s for name, s in seconds.items()}


class SignalProbe:
    """One channel and a consumer task that records when each signal reaches it."""

    def __init__(self, ctx: zmq.asyncio.Context, transport: Transport, ipc: Path) -> None:
        self.reader = ChannelReader(ctx, "sig", transport, ipc_dir=ipc, queue_size=2 * BACKLOG)
        self.writer = ChannelWriter(ctx, "sig", self.reader.endpoints, queue_size=2 * BACKLOG)
        self.loop = asyncio.get_running_loop()
        self.seen: asyncio.Future[float] = self.loop.create_future()
        self.sent = self.consumed = 0
        self.task = asyncio.create_task(self.consume())

    async def consume(self) -> None:
        while True:
            event = await self.reader.recv()
            if isinstance(event, Signal):
                self.seen.set_result(time.perf_counter())
                if event.code == 0:
                    return
            else:
                self.consumed += 1
                await asyncio.sleep(0)  # an AIM that awaits its own work between records

    async def signal(self, code: int = 1) -> float:
        """Seconds from ``send_signal`` to the consumer's ``recv`` returning it."""
        self.seen = self.loop.create_future()
        start = time.perf_counter()
        await self.writer.send_signal(code)
        return await self.seen - start

    async def top_up(self) -> None:
        """Queue records until 10,000 wait for the consumer."""
        while self.sent - self.consumed < BACKLOG:
            await self.writer.send(b"12345678")
            self.sent += 1
        await asyncio.sleep(0.005)  # let the I/O thread move them; the consumer starts on them

    async def close(self) -> int:
        left = self.sent - self.consumed
        await self.signal(0)
        await self.task
        self.writer.close(linger_ms=0)
        self.reader.close()  # drops whatever backlog is left
        return left


async def signal_latency(
    ctx: zmq.asyncio.Context, transport: Transport, ipc: Path, quick: bool
) -> dict[str, float]:
    """Idle and backlog samples in alternating blocks, each block on a fresh channel."""
    idle: list[float] = []
    backlog: list[float] = []
    left = []
    for _ in range(4 if quick else 10):
        probe = SignalProbe(ctx, transport, ipc)
        for _ in range(15 if quick else 30):
            await asyncio.sleep(0.0005)  # the reader is parked in recv()
            idle.append(await probe.signal())
        for _ in range(4 if quick else 6):
            await probe.top_up()
            backlog.append(await probe.signal())
        left.append(await probe.close())
    raw_behind = await raw_signal_behind_backlog(ctx, transport, ipc, 2 if quick else 4)
    return {
        "idle_median_us": statistics.median(idle) * 1e6,
        "idle_p99_us": percentile(idle, 0.99) * 1e6,
        "backlog_median_us": statistics.median(backlog) * 1e6,
        "backlog_p99_us": percentile(backlog, 0.99) * 1e6,
        "backlog_records_left_min": min(left),
        "raw_single_lane_behind_backlog_us": raw_behind * 1e6,
    }


async def raw_signal_behind_backlog(
    ctx: zmq.asyncio.Context, transport: Transport, ipc: Path, reps: int
) -> float:
    """Contrast: one raw socket, the 'signal' is a message queued after 10,000 records."""
    pipe = RawPipe(ctx, transport, ipc, 2 * BACKLOG, 8)
    results = []
    record, stop = msgpack.packb(b"12345678"), msgpack.packb(1)
    for _ in range(reps):
        for _ in range(BACKLOG):
            await pipe.a_out.send(record)
        await asyncio.sleep(0.005)
        start = time.perf_counter()
        await pipe.a_out.send(stop)
        while True:
            value = msgpack.unpackb(await pipe.to_b.recv())
            if value == 1:
                break
            await asyncio.sleep(0)
        results.append(time.perf_counter() - start)
    pipe.close()
    return statistics.median(results)


# --------------------------------------------------------------------------- two processes

TWO_PROCESS_SIZES: list[tuple[str, int]] = [
    ("8 B", 8),
    ("1 KiB", 1024),
    ("1 MiB", MiB),
    ("16 MiB", 16 * MiB),
]
TWO_PROCESS_TARGETS = {
    "two_process_ratio_8B": ("<=", 1.5),
    "two_process_ratio_16MiB": ("<=", 0.6),
}
#: Sizes from which the payload is a uint8 ndarray (below: bytes).
ARRAY_FROM = MiB
ECHO_TIMEOUT = 60.0


def two_process_count(size: int, quick: bool) -> int:
    full = {8: 5000, 1024: 5000, MiB: 400, 16 * MiB: 60}[size]
    return max(20, full // 4) if quick else full


def two_process_payload(size: int) -> Any:
    data = os.urandom(size)
    return np.frombuffer(data, dtype=np.uint8).copy() if size >= ARRAY_FROM else data


class EchoProcess:
    """A child ``python -m benchmarks.channels --echo KIND ...`` and its stdout handshake."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.channels", "--echo", *args],
            stdout=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> dict[str, Any]:
        """The child's one JSON line saying it listens (its endpoints, for aif)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"echo process exited with {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        try:
            self.proc.wait(ECHO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class TwoProcessAif:
    """aif channels to an echo process and back, over ipc."""

    def __init__(self, ctx: zmq.asyncio.Context, ipc: Path, hwm: int) -> None:
        self.reader = ChannelReader(ctx, "back", "ipc", ipc_dir=ipc, queue_size=hwm)
        self.echo = EchoProcess(
            "aif", json.dumps(self.reader.endpoints.to_dict()), str(ipc), str(hwm)
        )
        endpoints = ChannelEndpoints.from_dict(self.echo.ready())
        self.writer = ChannelWriter(ctx, "out", endpoints, queue_size=hwm)

    async def round_trips(self, payload: Any, n: int, out: list[float]) -> None:
        send, recv, clock = self.writer.send, self.reader.recv, time.perf_counter
        for _ in range(n):
            start = clock()
            await send(payload)
            await recv()
            out.append(clock() - start)

    async def close(self) -> None:
        await self.writer.send_eos()
        await asyncio.to_thread(self.echo.stop)
        self.writer.close()
        self.reader.close()


class TwoProcessZmq:
    """The floor: a blocking pyzmq PAIR pair to an echo process that sends each frame back."""

    def __init__(self, ctx: zmq.Context[Any], ipc: Path) -> None:
        address = f"ipc://{ipc}/pair-{os.urandom(4).hex()}"
        self.echo = EchoProcess("zmq", address)
        self.echo.ready()
        self.sock = ctx.socket(zmq.PAIR)
        self.sock.linger = 0
        self.sock.connect(address)

    async def round_trips(self, payload: Any, n: int, out: list[float]) -> None:
        sock, clock = self.sock, time.perf_counter
        for _ in range(n):
            start = clock()
            sock.send(payload, copy=False)
            sock.recv(copy=False)
            out.append(clock() - start)

    async def close(self) -> None:
        self.sock.send(b"")
        await asyncio.to_thread(self.echo.stop)
        self.sock.close(linger=0)


async def two_process(ctx: zmq.asyncio.Context, ipc: Path, quick: bool) -> dict[str, Any]:
    """Median round trips to a second process, aif and the PAIR floor alternating."""
    results: dict[str, Any] = {}
    plain = zmq.Context()
    for label, size in TWO_PROCESS_SIZES:
        print(f"  measuring two processes, {label} ...", file=sys.stderr, flush=True)
        hwm = queue_for(size)
        pipes: dict[str, Any] = {
            "aif": TwoProcessAif(ctx, ipc, hwm),
            "zmq": TwoProcessZmq(plain, ipc),
        }
        payload = two_process_payload(size)
        for pipe in pipes.values():  # warm up connections, allocators, segments
            await pipe.round_trips(payload, 5, [])

        runs = {name: functools.partial(pipe.round_trips, payload) for name, pipe in pipes.items()}
        samples = await interleaved(runs, two_process_count(size, quick), 6 if quick else 10)
        for pipe in pipes.values():
            await pipe.close()
        results[label] = {
            name: {"median_us": statistics.median(s) * 1e6, "p99_us": percentile(s, 0.99) * 1e6}
            for name, s in samples.items()
        }
        gc.collect()
    plain.term()
    return results


def echo_main(kind: str, args: list[str]) -> int:
    """The echo side of the two-process mode (run as ``--echo KIND ARGS...``)."""
    if kind == "zmq":
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PAIR)
        sock.linger = 0
        sock.bind(args[0])
        print(json.dumps({}), flush=True)
        while True:
            frame = sock.recv(copy=False)
            if len(frame) == 0:
                break
            sock.send(frame, copy=False)
        sock.close()
        ctx.term()
        return 0
    asyncio.run(
        _echo_aif(ChannelEndpoints.from_dict(json.loads(args[0])), Path(args[1]), int(args[2]))
    )
    return 0


async def _echo_aif(back: ChannelEndpoints, ipc: Path, hwm: int) -> None:
    ctx = zmq.asyncio.Context()
    reader = ChannelReader(ctx, "in", "ipc", ipc_dir=ipc, queue_size=hwm)
    writer = ChannelWriter(ctx, "back", back, queue_size=hwm)
    print(json.dumps(reader.endpoints.to_dict()), flush=True)
    while True:
        event = await reader.recv()
        if not isinstance(event, Record):
            break
        await writer.send(event.value)
    writer.close()
    reader.close()
    ctx.term()


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    return describe(
        pyzmq=zmq.__version__,
        libzmq=zmq.zmq_version(),
        msgpack=".".join(map(str, msgpack.version)),
        numpy=np.__version__,
    )


def met(name: str, value: float) -> bool:
    op, bound = {**TARGETS, **TWO_PROCESS_TARGETS}[name]
    return value <= bound if op == "<=" else value >= bound


def report_two_process(two: dict[str, Any]) -> dict[str, float]:
    """Print the two-process table; the ratios (aif over the PAIR floor) by key."""
    print("\ntwo processes over ipc, round trip (us)   median                 p99")
    print(f"{'size':>8} {'aif':>9} {'pyzmq':>9} {'ratio':>6}   {'aif':>9} {'pyzmq':>9}")
    for label, _ in TWO_PROCESS_SIZES:
        a, z = two[label]["aif"], two[label]["zmq"]
        print(
            f"{label:>8} {a['median_us']:9.1f} {z['median_us']:9.1f} "
            f"{a['median_us'] / z['median_us']:6.2f}   {a['p99_us']:9.1f} {z['p99_us']:9.1f}"
        )
    return {
        f"two_process_ratio_{label.replace(' ', '')}": two[label]["aif"]["median_us"]
        / two[label]["zmq"]["median_us"]
        for label, _ in TWO_PROCESS_SIZES
    }


def report_one_process(
    results: dict[str, Any], transport: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Print the one-process tables; the target ratios and the extra ones."""
    lat, thr, sig = results["latency"], results["throughput"], results["signals"]
    print(
        f"\naif channels vs raw pyzmq+msgpack over {transport} ({results['machine']['cpu']}, "
        f"{results['machine']['nproc']} cores)\n"
    )
    print("round-trip latency (us)        median                    p99           ndarray")
    print(
        f"{'size':>8} {'aif':>9} {'raw':>9} {'ratio':>6}   {'aif':>9} {'raw':>9} "
        f"{'ratio':>6}   {'aif median':>10}"
    )
    for label, _ in SIZES:
        r = lat[label]
        a, w, n = r["aif"], r["raw"], r["aif_ndarray"]
        print(
            f"{label:>8} {a['median_us']:9.1f} {w['median_us']:9.1f} "
            f"{a['median_us'] / w['median_us']:6.2f}   {a['p99_us']:9.1f} {w['p99_us']:9.1f} "
            f"{a['p99_us'] / w['p99_us']:6.2f}   {n['median_us']:10.1f}"
        )
    print("\none-way throughput (MiB/s)")
    print(f"{'size':>8} {'aif':>9} {'raw':>9} {'ratio':>6}   {'ndarray':>9}   {'aif msg/s':>10}")
    for label, size in SIZES:
        t = thr[label]
        print(
            f"{label:>8} {t['aif']:9.1f} {t['raw']:9.1f} {t['aif'] / t['raw']:6.2f}   "
            f"{t['aif_ndarray']:9.1f}   {t['aif'] * MiB / size:10.0f}"
        )
    print("\nsignal latency (us)            median       p99")
    print(f"{'idle reader':>28} {sig['idle_median_us']:9.1f} {sig['idle_p99_us']:9.1f}")
    print(
        f"{'10,000-record backlog':>28} {sig['backlog_median_us']:9.1f} "
        f"{sig['backlog_p99_us']:9.1f}"
    )
    print(f"{'raw, one lane, behind it':>28} {sig['raw_single_lane_behind_backlog_us']:9.1f}")
    summary = {
        "latency_ratio_small": lat["8 B"]["aif"]["median_us"] / lat["8 B"]["raw"]["median_us"],
        "throughput_ratio_16MiB": thr["16 MiB"]["aif"] / thr["16 MiB"]["raw"],
        "signal_backlog_ratio": sig["backlog_median_us"] / sig["idle_median_us"],
    }
    extra = {
        "latency_ratio_16MiB": lat["16 MiB"]["aif"]["median_us"]
        / lat["16 MiB"]["raw"]["median_us"],
        "throughput_ratio_16MiB_ndarray": thr["16 MiB"]["aif_ndarray"] / thr["16 MiB"]["raw"],
    }
    return summary, extra


def report(results: dict[str, Any], transport: str) -> dict[str, Any]:
    summary: dict[str, float] = {}
    extra: dict[str, float] = {}
    if "latency" in results:
        summary, extra = report_one_process(results, transport)
    if "two_process" in results:
        two = report_two_process(results["two_process"])
        for name in TWO_PROCESS_TARGETS:
            summary[name] = two.pop(name)
        extra.update(two)
    bounds = {**TARGETS, **TWO_PROCESS_TARGETS}
    targets = {
        f"{name} {bounds[name][0]} {bounds[name][1]}": met(name, value)
        for name, value in summary.items()
    }
    print("\ntargets:", ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    return {
        **{k: round(v, 3) for k, v in summary.items()},
        **{k: round(v, 3) for k, v in extra.items()},
        "targets": targets,
        "all_targets_met": all(targets.values()),
        "transport": transport,
        **results,
    }


async def main(quick: bool, transport: Transport, only: str) -> dict[str, Any]:
    ctx = zmq.asyncio.Context()
    results: dict[str, Any] = {"machine": machine(), "quick": quick}
    with tempfile.TemporaryDirectory(prefix="aifb-") as tmp:
        ipc = Path(tmp)
        if only != "one-process":
            results["two_process"] = await two_process(ctx, ipc, quick)
        if only == "two-process":
            ctx.term()
            return results
        results["latency"] = {}
        results["throughput"] = {}
        for label, size in SIZES:
            print(f"  measuring {label} ...", file=sys.stderr, flush=True)
            results["latency"][label] = await latency(ctx, transport, ipc, size, quick)
            gc.collect()
            results["throughput"][label] = await throughput(ctx, transport, ipc, size, quick)
            gc.collect()
        print("  measuring signals ...", file=sys.stderr, flush=True)
        results["signals"] = await signal_latency(ctx, transport, ipc, quick)
    ctx.term()
    return results


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.channels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (under a minute)")
    parser.add_argument("--transport", choices=["ipc", "tcp", "inproc"], default="ipc")
    parser.add_argument(
        "--only",
        choices=["one-process", "two-process"],
        help="measure one part (the two-process part is always over ipc)",
    )
    parser.add_argument("--echo", nargs="+", help=argparse.SUPPRESS)  # the two-process child
    args = parser.parse_args(argv)
    if args.echo:
        return echo_main(args.echo[0], args.echo[1:])
    started = time.perf_counter()
    results = asyncio.run(main(args.quick, args.transport, args.only or "all"))
    summary = report(results, args.transport)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(rounded(summary), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
