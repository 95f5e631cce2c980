"""The simulator's side of a data-parallel job: start the ranks, relay signals, watch.

:class:`RankGroup` hosts the job's rendezvous (a torch ``TCPStore`` every rank joins as
a client, as under ``torchrun``) and a ZeroMQ ROUTER the ranks report to, starts one
``python -m aif.aims.analog.ddp`` per rank with torch's environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), hands each
the job, and then yields what rank 0 reports (one ``epoch`` per epoch, ``done`` at the
end). ``control`` sends ``pause``, ``resume`` or ``stop`` to every rank.

It watches every rank's process all the while: one that exits before the job is done,
or says it failed, ends the group at once (``RankFailed`` naming the rank, its pid and
how it ended) and the others are terminated, then killed. Nothing is left running:
:meth:`RankGroup.close` ends every rank, and a rank whose simulator dies is killed by
the kernel (see :func:`aif.aims.analog.ddp.rank.die_with_parent`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import zmq
import zmq.asyncio

from aif.aims.analog.ddp.link import CONTROL_ENV, RankPlace, encode, read, torch_environment
from aif.errors import MalformedMessage, RankFailed, describe_exit

#: How often the group looks at its ranks' processes while it waits for a report.
POLL_S = 0.1
#: How long ranks may take to start (import torch and aihwkit) on a busy machine.
START_TIMEOUT_S = 600.0
#: How long a rank has to end on its own after ``done`` or SIGTERM, before SIGKILL.
GRACE_S = 5.0
#: How long a failure waits for the other ranks' ends, to name the first cause.
SETTLE_S = 2.0


def threads_per_rank(ranks: int, wanted: int | None) -> int:
    """torch threads for each rank: ``wanted``, else this machine's cores shared out."""
    if wanted:
        return wanted
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // ranks)


@dataclass
class _Rank:
    """One rank's process and what it said of itself."""

    place: RankPlace
    process: subprocess.Popen[bytes]
    host: str = ""
    said_hello: bool = False
    #: What the rank said when it failed, and when.
    error: str = ""
    errored_at: float | None = None
    exited_at: float | None = None

    def describe(self) -> str:
        return f"rank {self.place.rank} of {self.place.world} (pid {self.process.pid})"


@dataclass
class RankGroup:
    """The ranks of one data-parallel job, started and watched by the simulator."""

    ranks: int
    backend: str
    log: logging.Logger
    #: Epoch being trained, for messages ("... in epoch 2").
    epoch: int = 0
    _members: list[_Rank] = field(default_factory=list)
    _gen: int = 0
    _done: bool = False

    async def start(self, job: dict[str, Any], threads: int, first_epoch: int = 1) -> None:
        """Rendezvous, ROUTER, one process per rank; returns once each has the job
        (which trains from ``first_epoch``)."""
        from torch._C._distributed_c10d import TCPStore

        self._dir = Path(tempfile.mkdtemp(prefix="aif-ddp-"))
        self._store = TCPStore(
            "127.0.0.1",
            0,
            None,
            True,
            timeout=timedelta(seconds=START_TIMEOUT_S),
            wait_for_workers=False,
        )
        self._ctx = zmq.asyncio.Context()
        self._socket = self._ctx.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        endpoint = f"ipc://{self._dir}/control"
        self._socket.bind(endpoint)
        base_env = dict(os.environ)
        base_env[CONTROL_ENV] = endpoint
        base_env["OMP_NUM_THREADS"] = str(threads)
        base_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        for rank in range(self.ranks):
            place = RankPlace(rank, self.ranks, rank, self.ranks)
            env = {**base_env, **torch_environment(place, "127.0.0.1", self._store.port)}
            process = subprocess.Popen(
                [sys.executable, "-m", "aif.aims.analog.ddp"],
                env=env,
                stdin=subprocess.DEVNULL,
            )
            self._members.append(_Rank(place, process))
        self.log.info(
            "started %d ranks (%s, %d threads each): pids %s",
            self.ranks,
            self.backend,
            threads,
            ", ".join(str(m.process.pid) for m in self._members),
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(m.said_hello for m in self._members):
            if time.monotonic() > deadline:
                late = [m.describe() for m in self._members if not m.said_hello]
                raise RankFailed(f"{', '.join(late)} did not start within {START_TIMEOUT_S:.0f} s")
            message = await self._next()
            if message is not None:
                raise RankFailed(f"{message[0].describe()} sent {message[1]['kind']!r} early")
        job = {**job, "backend": self.backend, "threads": threads}
        for member in self._members:
            await self._send(member, "job", **job)
        self.epoch = first_epoch

    async def reports(self, should_stop: Callable[[], bool]) -> AsyncIterator[dict[str, Any]]:
        """Rank 0's ``epoch``, ``early_stop`` and ``done`` messages, as they come.

        ``should_stop`` is asked between messages; once it says so, every rank is told
        to stop at its next batch. Ends after ``done`` once every rank has exited.
        """
        stop_sent = False
        while not self._done:
            if not stop_sent and should_stop():
                await self.control("stop")
                stop_sent = True
            message = await self._next()
            if message is None:
                continue
            _, report = message
            if report["kind"] == "epoch" and isinstance(report.get("epoch"), int):
                self.epoch = report["epoch"] + 1
            if report["kind"] == "done":
                self._done = True
            yield report
        await self._reap()

    async def control(self, word: str) -> None:
        """Tell every rank ``pause``, ``resume`` or ``stop`` (acted on between batches)."""
        self._gen += 1
        for member in self._members:
            if member.process.poll() is None:
                await self._send(member, "control", word=word, gen=self._gen)

    async def close(self) -> None:
        """End every rank still running (SIGTERM, then SIGKILL), free the rendezvous."""
        alive = [m for m in self._members if m.process.poll() is None]
        for member in alive:
            member.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while any(m.process.poll() is None for m in alive) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        for member in alive:
            if member.process.poll() is None:
                member.process.kill()
                await asyncio.to_thread(member.process.wait)
        if hasattr(self, "_socket"):
            self._socket.close()
            self._ctx.term()
            del self._store
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- internals ----------------------------------------------------------------------

    async def _send(self, member: _Rank, kind: str, **fields: Any) -> None:
        identity = f"rank-{member.place.rank}".encode()
        await self._socket.send_multipart([identity, encode(kind, **fields)])

    async def _next(self) -> tuple[_Rank, dict[str, Any]] | None:
        """The next report (after ``hello``s, which are taken here), or None after a poll
        interval; raises ``RankFailed`` for a rank that ended early or said it failed."""
        if self._failing():
            await self._fail()
        if not await self._socket.poll(int(POLL_S * 1000)):
            return None
        taken = await self._take()
        if taken is None:
            return None
        member, message = taken
        if message["kind"] == "hello":
            member.said_hello = True
            member.host = str(message.get("host", ""))
            return None
        if message["kind"] == "error":
            await self._fail()
        return member, message

    async def _take(self) -> tuple[_Rank, dict[str, Any]] | None:
        """One waiting message and its rank (an ``error`` is noted on the rank)."""
        frames = await self._socket.recv_multipart()
        member = self._member(frames[0])
        if member is None or len(frames) != 2:
            self.log.warning("ignored a message from an unknown peer of the rank group")
            return None
        try:
            message = read(frames[1], member.describe())
        except MalformedMessage as exc:
            raise RankFailed(f"{member.describe()} sent a malformed message: {exc}") from None
        if message["kind"] == "error":
            member.error = str(message.get("message", ""))
            member.errored_at = time.monotonic()
        return member, message

    def _member(self, identity: bytes) -> _Rank | None:
        for member in self._members:
            if identity == f"rank-{member.place.rank}".encode():
                return member
        return None

    def _failing(self) -> bool:
        """Whether a rank ended before the job did, or failed (exit status 0 after
        ``done`` is every rank's normal end; before it, a short grace for the message)."""
        now = time.monotonic()
        for member in self._members:
            status = member.process.poll()
            if status is None:
                continue
            if member.exited_at is None:
                member.exited_at = now
            if status != 0 or (not self._done and now - member.exited_at > GRACE_S):
                return True
        return False

    async def _fail(self) -> NoReturn:
        """Raise ``RankFailed`` for the rank that failed first, as best seen.

        A rank killed or crashed makes the others fail in their next collective; so
        for up to ``SETTLE_S`` the group gathers every rank's end and last words, then
        names first a rank that ended without a word (killed, crashed), else the first
        that said why it failed, and mentions what became of the others.
        """
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            if await self._socket.poll(int(POLL_S * 1000)):
                await self._take()
            if all(m.process.poll() is not None or m.error for m in self._members):
                break
        ended = [(m, m.process.poll()) for m in self._members]
        silent = [(m, s) for m, s in ended if s is not None and s != 0 and not m.error]
        said = sorted((m for m in self._members if m.error), key=lambda m: m.errored_at or 0.0)
        if silent:
            member, status = silent[0]
            cause = f"{member.describe()} {describe_exit(status or 0)}{self._when()}"
        elif said:
            member = said[0]
            cause = f"{member.describe()} failed{self._when()}: {member.error}"
        else:
            member = next(m for m, s in ended if s is not None)
            cause = f"{member.describe()} exited{self._when()} before the job was done"
        others = [m for m in self._members if m is not member]
        followed = "; ".join(
            f"rank {m.place.rank} then failed"
            + (" the same way" if m.error == member.error else f": {_first_line(m.error)}")
            for m in others
            if m.error
        )
        raise RankFailed(
            f"{cause}{'; ' + followed if followed else ''}; the job's other ranks were stopped"
        )

    def _when(self) -> str:
        return f" in epoch {self.epoch}" if self.epoch else " before training"

    async def _reap(self) -> None:
        """After ``done``: every rank exits on its own (a failing one still fails the job)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while any(m.process.poll() is None for m in self._members):
            if time.monotonic() > deadline:
                return  # close() ends them
            if self._failing():
                await self._fail()
            await asyncio.sleep(POLL_S)
        if self._failing():
            await self._fail()


def _first_line(text: str, limit: int = 200) -> str:
    """A follower's error, short: its first line, at most ``limit`` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
