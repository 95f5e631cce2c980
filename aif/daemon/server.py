"""The daemon's end of the User API: a ROUTER that turns each request into one call.

It owns the socket and the loop, nothing else: a request that does not parse gets an
error reply naming the wrong field, a handler that raises an ``AIFError`` gets that
error sent back, and an unexpected exception is logged and answered as a controller
error. In every case the loop goes on, so one bad client never takes the daemon down.
Each request is handled in its own task, so a slow one (a C2C host start) does not hold
up ``aif ps``.

Nothing a client sends can hold the loop: a request over ``MAX_REQUEST`` bytes is
refused unread, one larger than :data:`INLINE_DECODE` bytes is decoded and validated in
a worker thread, every error reply is cut to a bounded size, and past
:data:`MAX_INFLIGHT` requests in progress the next ones are told to come back later.
A message over ``MAX_API_MESSAGE`` bytes never reaches the daemon: libzmq drops the
connection that sent it.

Basic profile, ``token``: tcp endpoints are served by a second socket whose requests
must carry the daemon's token (``{"token": ...}`` beside ``op``; compared in constant
time); one without it is answered with a ``SecurityError`` and goes no further. The ipc
endpoint needs no token (only the owner can enter the state directory).

Secure profile (``curve``): tcp endpoints serve CURVE with the controller's key pair and
let in only trusted client keys (ZAP domain ``aif-user-api``); an unknown client is
refused in the handshake, before any request, and logged on ``aif.security``. ipc
endpoints of the same socket stay plain (owner-only state directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq
import zmq.asyncio

from aif.api import user as user_api
from aif.api.wire import MAX_API_MESSAGE
from aif.communication.addresses import bind
from aif.errors import (
    AIFError,
    ChannelError,
    ConfigError,
    ControllerError,
    DaemonError,
    MalformedMessage,
    SecurityError,
)
from aif.security.curve import USER_API_DOMAIN, ControllerCurve, Gatekeeper, curve_server, plain
from aif.security.gatekeeper import HandshakeWatch

log = logging.getLogger("aif.daemon")

#: What answers one valid request: its result (JSON-able) or an ``AIFError`` raised.
Handler = Callable[[user_api.Request], Awaitable[Any]]

#: Requests up to this many bytes are decoded on the loop (microseconds); larger ones in
#: a worker thread.
INLINE_DECODE = 64 * 2**10
#: Requests in progress at once; past this, a request is answered "busy" at once.
MAX_INFLIGHT = 256
#: Seconds between two log lines about refused tokens.
_REFUSAL_LOG_INTERVAL = 60.0


class ApiServer:
    """Serve the User API (and the C2C API) on one or more endpoints."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        handler: Handler,
        curve: ControllerCurve | None = None,
        token: str | None = None,
    ) -> None:
        """``curve``: serve tcp endpoints with CURVE, letting in ``curve.clients`` only.
        ``token`` (basic profile): serve tcp endpoints only to requests that carry it."""
        self._ctx = ctx
        self._curve = curve
        self._token = token if curve is None else None
        self._keeper: Gatekeeper | None = None
        self._watch: HandshakeWatch | None = None
        self._sock = self._router()
        #: The socket of the tcp endpoints that need the token (made on first bind).
        self._guarded: zmq.asyncio.Socket | None = None
        self._handler = handler
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aif-api-decode")
        self._refusal_logged = 0.0
        self.endpoints: list[str] = []
        #: Requests refused as malformed since start (for ``aif controller status``).
        self.malformed = 0
        #: Requests refused for a missing or wrong token since start.
        self.refused = 0

    def _router(self) -> zmq.asyncio.Socket:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # A larger message drops its connection inside libzmq, never buffered here.
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_API_MESSAGE)
        return sock

    def bind(self, address: str) -> str:
        """Listen on ``address`` (``tcp://HOST:*`` picks a port); returns the real one."""
        curve = self._curve
        sock = self._sock
        if curve is not None and address.startswith("tcp://"):
            if self._keeper is None:
                self._keeper = Gatekeeper.of(self._ctx)
                self._keeper.allow(USER_API_DOMAIN, curve.clients)
                self._watch = HandshakeWatch(self._sock, "User API")
            curve_server(self._sock, curve.pair.secret, curve.pair.public, USER_API_DOMAIN)
        elif self._token is not None and address.startswith("tcp://"):
            if self._guarded is None:
                self._guarded = self._router()
            sock = self._guarded
        else:
            plain(self._sock)
        try:
            endpoint = bind(sock, address)
        except ChannelError as exc:
            raise ConfigError(
                f"the User API cannot listen on {address!r}: {exc}; give another address "
                "(tcp://HOST:* picks a free port)"
            ) from exc
        self.endpoints.append(endpoint)
        return endpoint

    def start(self) -> None:
        """Begin answering requests."""
        self._tasks = [asyncio.create_task(self._serve(self._sock, None), name="user-api")]
        if self._guarded is not None:
            self._tasks.append(
                asyncio.create_task(self._serve(self._guarded, self._token), name="user-api-tcp")
            )

    async def close(self) -> None:
        """Stop answering and close the sockets."""
        tasks = [*self._tasks, *self._inflight]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._decoder.shutdown(wait=False, cancel_futures=True)
        if self._watch is not None:
            await self._watch.close()
        self._sock.close(linger=0)
        if self._guarded is not None:
            self._guarded.close(linger=0)
        if self._keeper is not None:
            self._keeper.forget(USER_API_DOMAIN)
            self._keeper = None

    async def _serve(self, sock: zmq.asyncio.Socket, token: str | None) -> None:
        while True:
            frames = await sock.recv_multipart()
            if len(frames) != 2:
                self.malformed += 1
                log.warning("User API: dropped a message of %d frames", len(frames))
                continue
            identity, frame = frames
            if len(self._inflight) >= MAX_INFLIGHT:
                busy = DaemonError(
                    f"the controller is busy ({MAX_INFLIGHT} requests in progress); try again"
                )
                rid = user_api.peek_rid(frame)
                await self._reply(sock, identity, user_api.error_reply(rid, busy))
                continue
            task = asyncio.create_task(self._answer(sock, identity, frame, token))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _answer(
        self, sock: zmq.asyncio.Socket, identity: bytes, frame: bytes, token: str | None
    ) -> None:
        if len(frame) > INLINE_DECODE:
            loop = asyncio.get_running_loop()
            rid, request = await loop.run_in_executor(self._decoder, self._decode, frame, token)
        else:
            rid, request = self._decode(frame, token)
        if isinstance(request, AIFError):
            await self._reply(sock, identity, user_api.error_reply(rid, request))
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
        await self._reply(sock, identity, reply)

    def _decode(self, frame: bytes, token: str | None) -> tuple[int, user_api.Request | AIFError]:
        """The request in ``frame`` and its ``rid``, or the error to answer with (runs on
        the loop for small frames, in a worker thread for large ones)."""
        rid = user_api.peek_rid(frame)
        try:
            data = user_api.unpack_request(frame)
            rid = user_api.rid_of(data)
            given = user_api.take_token(data)
            if token is not None and not _same_token(given, token):
                return rid, self._refuse(given)
            return rid, user_api.validate_request(data)
        except MalformedMessage as exc:
            self.malformed += 1
            log.warning("User API: refused a request: %.500s", exc)
            return rid, exc

    def _refuse(self, given: object) -> SecurityError:
        self.refused += 1
        now = time.monotonic()
        if now - self._refusal_logged > _REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            log.warning(
                "User API: refused a tcp request %s the token (%d so far)",
                "without" if given is None else "with a wrong",
                self.refused,
            )
        return SecurityError(
            "this controller's tcp User API needs its token: "
            + ("the request carried none" if given is None else "the request's token is wrong")
            + "; give --token TOKEN (or $AIF_TOKEN, or aif.Client(token=...)) with the token "
            "the daemon printed at start (in api.token of its state directory)"
        )

    async def _reply(
        self, sock: zmq.asyncio.Socket, identity: bytes, reply: dict[str, Any]
    ) -> None:
        try:
            packed = user_api.pack(reply)
        except (TypeError, ValueError) as exc:
            packed = user_api.pack(
                user_api.error_reply(reply["rid"], ControllerError(f"reply not encodable: {exc}"))
            )
        with contextlib.suppress(zmq.ZMQError):  # the client went away: nothing to tell
            await sock.send_multipart([identity, packed])


def _same_token(given: object, token: str) -> bool:
    """Whether ``given`` is ``token``, compared in constant time."""
    return isinstance(given, str) and hmac.compare_digest(given.encode(), token.encode())
