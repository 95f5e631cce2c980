"""Waiting on ZeroMQ sockets from asyncio by their file descriptors, without futures.

Channels call ZeroMQ without blocking on plain sockets; only a call that would block
has to wait. pyzmq's asyncio sockets would create a future and an event-loop round trip
for every call, wait or not. ``Waker`` waits only when asked: it registers the sockets'
file descriptors with the loop once per channel, and wakes the waiting tasks when one of
them signals, so the hot path of ``aif.communication.channel`` costs no future at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import zmq

__all__ = ["Waker"]


def _fd(sock: zmq.Socket[Any]) -> int:
    return cast(int, sock.getsockopt(zmq.FD))


class Waker:
    """Wakes tasks waiting on ZeroMQ sockets, without pyzmq's per-call futures.

    A ZeroMQ socket's FD is an edge signal ("its state may have changed"), readable
    until the socket processes its pending commands. The FDs stay registered with the
    loop for the channel's life; on each signal the callback lets the socket process
    its commands (reading ``EVENTS``), so the FD is never left readable to spin the
    loop, then wakes every waiting task, which retries its non-blocking call.
    """

    __slots__ = ("_loop", "_socks", "_waiters")

    def __init__(self, *socks: zmq.Socket[Any]) -> None:
        self._socks = socks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def waiting(self) -> bool:
        return bool(self._waiters)

    async def wait(self) -> None:
        """Until one of the sockets signals (possibly spuriously: callers retry)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._register(loop)
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)

    def _register(self, loop: asyncio.AbstractEventLoop) -> None:
        self.unregister()
        for sock in self._socks:
            loop.add_reader(_fd(sock), self._signalled, sock)
        self._loop = loop

    def _signalled(self, sock: zmq.Socket[Any]) -> None:
        with contextlib.suppress(zmq.ZMQError):  # closed under us: the woken callers see it
            sock.getsockopt(zmq.EVENTS)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def unregister(self) -> None:
        """Forget the loop; must run before the sockets close (their FDs get reused)."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            for sock in self._socks:
                if not sock.closed:
                    loop.remove_reader(_fd(sock))

    def fail(self, error: BaseException) -> None:
        """Wake every waiter with ``error`` (the channel is closing)."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(error)
