"""The Gatekeeper: one ZAP authenticator per ZeroMQ context, allow-lists per domain.

A CURVE server asks its context's ZAP handler whether a client key may in. The
Gatekeeper is that handler: pyzmq's ``AsyncioAuthenticator`` with one credentials
callback, allow-lists per ZAP domain (counted, so AIMs of one run sharing a context do
not close each other's domain), and every refusal recorded and logged at WARNING on
``aif.security`` with the command that would let the client in (at most once a
minute per client and domain: a refused client keeps reconnecting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from aif.errors import LifecycleError, SecurityError
from aif.security.curve_keys import key_text, parse_curve_key, require_curve, trust_command

log = logging.getLogger("aif.security")

#: Refusals of one client in one domain are logged at most this often (seconds): a
#: refused client reconnects, and must not flood the log.
REFUSAL_LOG_INTERVAL = 60.0
#: Refusals kept in ``Gatekeeper.refused`` (the oldest go first).
REFUSALS_KEPT = 200


class Gatekeeper:
    """The ZAP handler of one ZeroMQ context: CURVE clients let in by key, per domain.

    ``Gatekeeper.of(ctx)`` starts it (in the running loop) on first use; libzmq allows
    one ZAP handler per context, so every CURVE server of the context shares it. Each
    domain has an allow-list (name -> Z85 public key) and a count of holders: ``allow``
    replaces the list and adds a holder, ``forget`` drops one, and the domain closes
    (refusing everyone) when the last holder is gone, so the AIMs of one run that share
    a context (inproc hosts) keep their channels open until the last of them closes.
    Every refusal is kept in ``refused`` as ``(domain, "curve:KEY")`` and logged at
    WARNING on ``aif.security``.
    """

    _running: ClassVar[dict[int, Gatekeeper]] = {}

    def __init__(self, ctx: zmq.asyncio.Context) -> None:
        self.ctx = ctx
        self.refused: list[tuple[str, str]] = []
        self._lists: dict[str, dict[bytes, str]] = {}
        self._holders: dict[str, int] = {}
        self._logged: dict[tuple[str, bytes], float] = {}
        self._auth = AsyncioAuthenticator(ctx, log=logging.getLogger("aif.security.zap"))
        try:
            self._auth.start()
        except zmq.ZMQError as exc:
            raise SecurityError(
                f"cannot start the ZAP handler of this ZeroMQ context ({exc}); another "
                "authenticator already runs in it"
            ) from exc
        self.loop = asyncio.get_running_loop()

    @classmethod
    def of(cls, ctx: zmq.asyncio.Context) -> Gatekeeper:
        """The context's Gatekeeper, started now if it is not running (needs a loop)."""
        require_curve()
        keeper = cls.running(ctx)
        if keeper is not None and not keeper.loop.is_closed():
            return keeper
        if keeper is not None:  # its loop ended (a test's): start afresh in this one
            keeper.stop()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise LifecycleError(
                "the CURVE Gatekeeper runs in an event loop: create CURVE servers from "
                "inside the loop that serves them"
            ) from None
        if not isinstance(ctx, zmq.asyncio.Context):
            raise SecurityError("the CURVE Gatekeeper serves asyncio ZeroMQ contexts only")
        keeper = cls(ctx)
        cls._running[ctx.underlying] = keeper
        return keeper

    @classmethod
    def running(cls, ctx: zmq.Context[Any]) -> Gatekeeper | None:
        """The context's Gatekeeper if one runs (never starts one)."""
        keeper = cls._running.get(ctx.underlying)
        if keeper is None or keeper.ctx is not ctx or ctx.closed:
            return None
        return keeper

    @classmethod
    def stop_for(cls, ctx: zmq.Context[Any]) -> None:
        """Stop the context's Gatekeeper, if any: before ``ctx.destroy``, so its task ends."""
        keeper = cls._running.get(ctx.underlying)
        if keeper is not None and keeper.ctx is ctx:
            keeper.stop()

    @property
    def domains(self) -> frozenset[str]:
        """The open domains."""
        return frozenset(self._lists)

    def allowed(self, domain: str) -> dict[str, bytes]:
        """The allow-list of ``domain`` (name -> Z85 key); empty when it is closed."""
        return {name: key for key, name in self._lists.get(domain, {}).items()}

    def allow(self, domain: str, keys: Mapping[str, bytes]) -> None:
        """Let in exactly the clients ``keys`` (name -> Z85 public) in ``domain``; one holder."""
        self.reload(domain, keys, opening=True)
        self._holders[domain] = self._holders.get(domain, 0) + 1

    def reload(self, domain: str, keys: Mapping[str, bytes], *, opening: bool = False) -> None:
        """Replace the allow-list of an open ``domain`` (a trust list read again)."""
        if not opening and domain not in self._lists:
            raise SecurityError(f"ZAP domain {domain!r} is not open; allow() it first")
        lists = {parse_curve_key(key, f"trusted key {name!r}"): name for name, key in keys.items()}
        if domain not in self._auth.credentials_providers:
            self._auth.configure_curve_callback(domain, self)
        self._lists[domain] = lists

    def forget(self, domain: str) -> None:
        """Drop one holder of ``domain``; the last one closes it (everyone is refused)."""
        left = self._holders.get(domain, 0) - 1
        if left > 0:
            self._holders[domain] = left
            return
        self._holders.pop(domain, None)
        self._lists.pop(domain, None)
        # Its provider stays registered: clients of a closed domain are refused by
        # ``callback`` too, so they are recorded and logged like any other refusal.

    def callback(self, domain: str, key: bytes) -> bool:
        """The ZAP decision (pyzmq calls it with the client's Z85 key): known, or refused."""
        if key in self._lists.get(domain, {}):
            return True
        text = key_text(key)
        self.refused.append((domain, text))
        del self.refused[:-REFUSALS_KEPT]
        now = time.monotonic()
        if now - self._logged.get((domain, key), -REFUSAL_LOG_INTERVAL) >= REFUSAL_LOG_INTERVAL:
            if len(self._logged) >= REFUSALS_KEPT:  # a flood of fresh keys: forget the old
                self._logged.clear()
            self._logged[(domain, key)] = now
            if domain.startswith("aif-run-"):
                fix = "only the run's own AIMs hold its channel key; this is not one of them"
            else:
                fix = f"if it should be let in, run `{trust_command(key)}` on this machine"
            log.warning(
                "refused a CURVE client in domain %s: key %s is not trusted; %s", domain, text, fix
            )
        return False

    def stop(self) -> None:
        """Stop handling ZAP requests (every CURVE handshake of the context then fails)."""
        if Gatekeeper._running.get(self.ctx.underlying) is self:
            del Gatekeeper._running[self.ctx.underlying]
        self._lists.clear()
        self._holders.clear()
        if not self.loop.is_closed():
            self._auth.stop()
        elif self._auth.zap_socket is not None:  # its task ended with its loop
            self._auth.zap_socket.close(linger=0)
            self._auth.zap_socket = None  # type: ignore[assignment]


class HandshakeWatch:
    """Logs the clients a CURVE server refuses before ZAP is asked.

    A client that does not speak CURVE (a basic-profile client), or that dialled with
    another server key, fails the handshake inside libzmq: the Gatekeeper never hears
    of it. A socket monitor does; each such failure is kept in ``failed`` and logged at
    WARNING on ``aif.security`` (at most once a minute per endpoint and cause), so every
    refused client leaves a trace on the server, as the trusted-key refusals do.
    """

    _EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL

    def __init__(self, sock: zmq.asyncio.Socket, what: str) -> None:
        self.what = what
        self.failed: list[tuple[str, int]] = []
        self._sock = sock
        self._monitor: zmq.asyncio.Socket = sock.get_monitor_socket(self._EVENTS)
        self._logged: dict[tuple[str, int], float] = {}
        self._task = asyncio.create_task(self._watch(), name=f"handshakes-{what}")

    async def _watch(self) -> None:
        while True:
            try:
                frames = await self._monitor.recv_multipart()
                event = parse_monitor_message(frames)
            except (zmq.ZMQError, ValueError):  # closed, or a frame that is not an event
                return
            endpoint = event["endpoint"].decode(errors="replace")
            cause = int(event["event"])
            self.failed.append((endpoint, cause))
            del self.failed[:-REFUSALS_KEPT]
            now = time.monotonic()
            if now - self._logged.get((endpoint, cause), -REFUSAL_LOG_INTERVAL) >= (
                REFUSAL_LOG_INTERVAL
            ):
                self._logged[(endpoint, cause)] = now
                log.warning(
                    "refused a client of the %s on %s: it failed the CURVE handshake (it "
                    "does not speak CURVE, or dialled with another server key); it must "
                    "dial with this server's key (`aif controller status` shows it) and "
                    "its own key trusted here",
                    self.what,
                    endpoint,
                )

    async def close(self) -> None:
        """Stop watching (before the socket closes)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._monitor.close(linger=0)
