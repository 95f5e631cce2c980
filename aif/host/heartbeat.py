"""The thread that owns a host's AIM API socket and sends its heartbeats.

A heartbeat must not wait on the AIM's own work: an AIM that computes in its event
loop for a minute (a training step, a long aihwkit call) is busy, not dead. So the
host's DEALER socket lives in a thread of its own, and the event loop talks to it over
an ``inproc`` pipe::

    event loop (ControllerLink)        relay thread                controller
      send ── [out, frame] ─► pipe ──► DEALER ────────────────────► ROUTER
      expect ◄──── frame ──── pipe ◄── DEALER ◄──────────────────── setup, wire, ...
      heartbeat ─ [beat, s] ─► pipe    every s seconds: heartbeat ─►
      close ───── [stop] ────► pipe    (after the bye, in order)

The loop stamps ``loop_seen`` as it ticks. While the loop is behind by more than two
intervals, each heartbeat says so (``stalled``) and adds the CPU seconds the process
has used (``cpu``), so the controller can tell an AIM that computes (CPU goes up) from
one that is deadlocked (it does not). A C call that holds the GIL stops this thread
too; the controller then reads a local child's CPU time itself
(``aif.controller.liveness``).

One thread per host, ended and joined by ``stop`` before the host's ZeroMQ context
goes, so a warm worker's job leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
import uuid

import zmq
import zmq.asyncio

from aif.api import aim as aim_api

log = logging.getLogger("aif.host")

#: Seconds the thread keeps trying to deliver what is queued (the ``bye``) once stopped.
FLUSH_TIMEOUT = 1.0


class HeartbeatThread:
    """Relays one host's AIM API frames between its event loop and its socket, and beats."""

    def __init__(self, ctx: zmq.asyncio.Context, dealer: zmq.asyncio.Socket, aim: str) -> None:
        """Take over ``dealer`` (connected, not yet used): from ``start`` on only the
        thread touches it, until ``stop`` returned."""
        self.aim = aim
        self._address = f"inproc://aif-heartbeat-{uuid.uuid4().hex[:12]}"
        #: The event loop's end of the pipe.
        self.pipe: zmq.asyncio.Socket = ctx.socket(zmq.PAIR)
        self.pipe.setsockopt(zmq.LINGER, 0)
        self.pipe.bind(self._address)
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(ctx.underlying)
        self._dealer: zmq.Socket[bytes] = zmq.Socket.shadow(dealer.underlying)
        #: When the host's event loop last ran (``time.monotonic``), stamped by ``beat``.
        self.loop_seen = time.monotonic()
        self._plain = aim_api.pack(aim_api.Heartbeat(aim=aim))
        self._thread = threading.Thread(target=self._run, name=f"aif-heartbeat-{aim}", daemon=True)

    def start(self) -> None:
        """Start relaying (no heartbeats until ``beat``)."""
        self._thread.start()

    async def send(self, frame: bytes) -> None:
        """Queue one AIM API message for the controller."""
        await self.pipe.send_multipart([b"out", frame])

    async def recv(self) -> bytes:
        """The next message from the controller."""
        return await self.pipe.recv()

    async def beat(self, interval: float) -> None:
        """Send a heartbeat every ``interval`` seconds from the thread; stamp the loop
        here, until cancelled."""
        await self.pipe.send_multipart([b"beat", repr(interval).encode()])
        while True:
            self.loop_seen = time.monotonic()
            await asyncio.sleep(interval / 2)

    async def stop(self, timeout: float = FLUSH_TIMEOUT + 1.0) -> None:
        """Deliver what is queued (for up to ``FLUSH_TIMEOUT``), end the thread, join it."""
        if self._thread.is_alive():
            with contextlib.suppress(zmq.ZMQError):
                await self.pipe.send_multipart([b"stop"])
            deadline = time.monotonic() + timeout
            # Poll rather than join in an executor: that would leave a thread behind.
            while self._thread.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        if self._thread.is_alive():
            log.warning("AIM %r: the heartbeat thread did not stop", self.aim)
        self.pipe.close(linger=0)

    def _run(self) -> None:
        pipe = self._ctx.socket(zmq.PAIR)
        pipe.setsockopt(zmq.LINGER, 0)
        try:
            pipe.connect(self._address)
            self._relay(pipe)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("AIM %r: the heartbeat thread failed: %s", self.aim, exc)
        finally:
            pipe.close(linger=0)

    def _relay(self, pipe: zmq.Socket[bytes]) -> None:
        dealer = self._dealer
        poller = zmq.Poller()
        poller.register(pipe, zmq.POLLIN)
        pending: collections.deque[bytes] = collections.deque()
        interval: float | None = None
        next_beat = 0.0
        flush_until: float | None = None
        while True:
            poller.register(dealer, zmq.POLLIN | (zmq.POLLOUT if pending else 0))
            due = [t for t in (next_beat if interval else None, flush_until) if t is not None]
            timeout = round(max(0.0, min(due) - time.monotonic()) * 1000) if due else None
            events = dict(poller.poll(timeout))
            if events.get(pipe):
                command = pipe.recv_multipart()
                if command[0] == b"out":
                    pending.append(command[1])
                elif command[0] == b"beat":
                    interval = float(command[1])
                    next_beat = time.monotonic() + interval
                elif command[0] == b"stop":
                    flush_until = time.monotonic() + FLUSH_TIMEOUT
            while events.get(dealer, 0) & zmq.POLLIN:
                try:
                    pipe.send(dealer.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
            while pending:
                try:
                    dealer.send(pending[0], zmq.NOBLOCK)
                except zmq.Again:
                    break
                pending.popleft()
            now = time.monotonic()
            if interval and now >= next_beat:
                with contextlib.suppress(zmq.Again):  # a full queue already says alive
                    dealer.send(self._heartbeat(interval, now), zmq.NOBLOCK)
                next_beat = now + interval
            if flush_until is not None and (not pending or now >= flush_until):
                return

    def _heartbeat(self, interval: float, now: float) -> bytes:
        """A heartbeat; while the loop is behind, with how long and the process's CPU."""
        stalled = now - self.loop_seen
        if stalled <= 2 * interval:
            return self._plain
        return aim_api.pack(
            aim_api.Heartbeat(
                aim=self.aim, stalled=round(stalled, 3), cpu=round(time.process_time(), 3)
            )
        )
