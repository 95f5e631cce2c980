"""The daemon's end of the User API: a ROUTER that turns each request into one call.

It owns the socket and the loop, nothing else: a request that does not parse gets an
error reply naming the wrong field, a handler that raises an ``AIFError`` gets that
error sent back, and an unexpected exception is logged and answered as a controller
error. In every case the loop goes on, so one bad client never takes the daemon down.
Each request is handled in its own task, so a slow one (a C2C host start) does not hold
up ``aif ps``.

Secure profile (``curve``): tcp endpoints serve CURVE with the controller's key pair and
let in only trusted client keys (ZAP domain ``aif-user-api``); an unknown client is
refused in the handshake, before any request, and logged on ``aif.security``. ipc
endpoints of the same socket stay plain (owner-only state directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

from aif.api import user as user_api
from aif.communication.addresses import bind
from aif.errors import AIFError, ChannelError, ConfigError, ControllerError, MalformedMessage
from aif.security.curve import USER_API_DOMAIN, ControllerCurve, Gatekeeper, curve_server, plain
from aif.security.gatekeeper import HandshakeWatch

log = logging.getLogger("aif.daemon")

#: What answers one valid request: its result (JSON-able) or an ``AIFError`` raised.
Handler = Callable[[user_api.Request], Awaitable[Any]]


class ApiServer:
    """Serve the User API (and the C2C API) on one or more endpoints."""

    def __init__(
        self, ctx: zmq.asyncio.Context, handler: Handler, curve: ControllerCurve | None = None
    ) -> None:
        """``curve``: serve tcp endpoints with CURVE, letting in ``curve.clients`` only."""
        self._ctx = ctx
        self._curve = curve
        self._keeper: Gatekeeper | None = None
        self._watch: HandshakeWatch | None = None
        self._sock = ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._handler = handler
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.endpoints: list[str] = []
        #: Requests refused as malformed since start (for ``aif controller status``).
        self.malformed = 0

    def bind(self, address: str) -> str:
        """Listen on ``address`` (``tcp://HOST:*`` picks a port); returns the real one."""
        curve = self._curve
        if curve is not None and address.startswith("tcp://"):
            if self._keeper is None:
                self._keeper = Gatekeeper.of(self._ctx)
                self._keeper.allow(USER_API_DOMAIN, curve.clients)
                self._watch = HandshakeWatch(self._sock, "User API")
            curve_server(self._sock, curve.pair.secret, curve.pair.public, USER_API_DOMAIN)
        else:
            plain(self._sock)
        try:
            endpoint = bind(self._sock, address)
        except ChannelError as exc:
            raise ConfigError(
                f"the User API cannot listen on {address!r}: {exc}; give another address "
                "(tcp://HOST:* picks a free port)"
            ) from exc
        self.endpoints.append(endpoint)
        return endpoint

    def start(self) -> None:
        """Begin answering requests."""
        self._task = asyncio.create_task(self._serve(), name="user-api")

    async def close(self) -> None:
        """Stop answering and close the socket."""
        tasks = [t for t in (self._task, *self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._watch is not None:
            await self._watch.close()
        self._sock.close(linger=0)
        if self._keeper is not None:
            self._keeper.forget(USER_API_DOMAIN)
            self._keeper = None

    async def _serve(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            if len(frames) != 2:
                self.malformed += 1
                log.warning("User API: dropped a message of %d frames", len(frames))
                continue
            task = asyncio.create_task(self._answer(*frames))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _answer(self, identity: bytes, frame: bytes) -> None:
        try:
            request = user_api.parse_request(frame)
        except MalformedMessage as exc:
            self.malformed += 1
            log.warning("User API: refused a request: %s", exc)
            await self._reply(identity, user_api.error_reply(user_api.request_id(frame), exc))
            return
        try:
            reply = user_api.ok_reply(request.rid, await self._handler(request))
        except AIFError as exc:
            reply = user_api.error_reply(request.rid, exc)
        except Exception as exc:
            log.exception("User API: %s failed", request.op)
            reply = user_api.error_reply(
                request.rid, ControllerError(f"{request.op} failed inside the controller: {exc}")
            )
        await self._reply(identity, reply)

    async def _reply(self, identity: bytes, reply: dict[str, Any]) -> None:
        try:
            packed = user_api.pack(reply)
        except (TypeError, ValueError) as exc:
            packed = user_api.pack(
                user_api.error_reply(reply["rid"], ControllerError(f"reply not encodable: {exc}"))
            )
        with contextlib.suppress(zmq.ZMQError):  # the client went away: nothing to tell
            await self._sock.send_multipart([identity, packed])
