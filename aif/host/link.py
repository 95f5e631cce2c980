"""The host's end of the AIM API: one DEALER socket to the controller, and its words.

An ``AIMHost`` talks to its controller over one socket (``aif.api.aim`` draws the
conversation). ``ControllerLink`` owns that socket: it dials the controller (as a
CURVE client in the secure profile, watched by a monitor socket over tcp), sends
messages and heartbeats, waits for the next controller message of a kind (a
``terminate`` instead: ``None``; no answer in time: a ``LifecycleError`` that says
what to check), and says ``bye`` as it closes. Once dialled, the socket belongs to a
thread (``heartbeat``) that relays its frames and sends the heartbeats, so a busy
event loop does not stop them. Kept apart from the host, which decides when to say
what; here is only how it is said, and what a host that hears nothing should tell the
person who started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TypeVar

import pydantic
import zmq
import zmq.asyncio

from aif.api import aim as aim_api
from aif.errors import AIFError, ConfigError, LifecycleError
from aif.host import lifelines
from aif.host.heartbeat import HeartbeatThread
from aif.security.curve import CurvePair, curve_client, key_text, trust_command

log = logging.getLogger("aif.host")

_M = TypeVar("_M", aim_api.Setup, aim_api.Wire, aim_api.Start)


class ControllerLink:
    """One AIM host's AIM API connection to its controller."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        controller: str,
        aim: str,
        curve: tuple[CurvePair, bytes] | None,
        *,
        remote: bool,
    ) -> None:
        """``curve``: dial with this identity and server key; ``remote``: a hand-started
        host, whose refusal is an error for the person who started it."""
        self.ctx = ctx
        self.endpoint = controller
        self.name = aim
        self.over_tcp = controller.startswith("tcp://")
        self.curve = curve
        self._remote = remote
        self.dealer: zmq.asyncio.Socket | None = None
        #: Over tcp: reports the socket's disconnections and failed handshakes.
        self.monitor: zmq.asyncio.Socket | None = None
        #: Owns ``dealer`` once it is dialled: relays its frames, sends the heartbeats.
        self._relay: HeartbeatThread | None = None

    def open(self) -> None:
        """Open the socket and dial the controller; over tcp, with a monitor."""
        dealer = self.ctx.socket(zmq.DEALER)
        self.dealer = dealer
        dealer.setsockopt(zmq.LINGER, 2000)
        if self.over_tcp:
            self.monitor = lifelines.monitor_connection(dealer)
        if self.curve is not None:
            identity, server_key = self.curve
            curve_client(dealer, identity.public, identity.secret, server_key)
        try:
            dealer.connect(self.endpoint)
        except zmq.ZMQError as exc:
            raise ConfigError(
                f"AIM {self.name!r}: cannot connect to the controller at "
                f"{self.endpoint!r} ({exc}); give its address as tcp://HOST:PORT"
            ) from exc
        self._relay = HeartbeatThread(self.ctx, dealer, self.name)
        self._relay.start()

    async def send(self, message: pydantic.BaseModel) -> None:
        """Send one AIM API message."""
        assert self._relay is not None
        await self._relay.send(aim_api.pack(message))

    async def heartbeat(self, interval: float) -> None:
        """Say ``heartbeat`` every ``interval`` seconds (from the relay thread), until
        cancelled; while the event loop is blocked, the beats say for how long."""
        assert self._relay is not None
        await self._relay.beat(interval)

    async def expect(self, kind: type[_M], timeout: float) -> _M | None:
        """Wait for the next controller message; None when told to terminate."""
        assert self._relay is not None
        while True:
            try:
                frame = await asyncio.wait_for(self._relay.recv(), timeout)
            except TimeoutError as exc:
                what = "answer" if kind is aim_api.Setup else kind.__name__.lower()
                raise LifecycleError(
                    f"AIM {self.name!r}: no {what} from the controller at "
                    f"{self.endpoint} within {timeout:g} s; is the controller "
                    "running and listening there (aif run --listen), and is the address right?"
                    + self._curve_hint()
                ) from exc
            try:
                message = aim_api.parse_controller_message(frame)
            except AIFError as exc:
                log.warning("AIM %r: ignoring a malformed controller message: %s", self.name, exc)
                continue
            if isinstance(message, aim_api.Terminate):
                refused = kind is aim_api.Setup
                level = logging.ERROR if refused and self._remote else logging.INFO
                verb = "refused" if refused else "terminated"
                log.log(level, "AIM %r: %s by the controller: %s", self.name, verb, message.reason)
                return None
            if isinstance(message, kind):
                return message
            log.warning(
                "AIM %r: expected %s, got %s; ignored", self.name, kind.__name__, message.op
            )

    async def close(self, reason: str) -> bool:
        """Say ``bye`` with ``reason``, end the relay thread, stop monitoring and close;
        False if never opened."""
        if self._relay is not None:
            bye = aim_api.pack(aim_api.Bye(aim=self.name, reason=reason))
            with contextlib.suppress(zmq.ZMQError, TimeoutError):
                await asyncio.wait_for(self._relay.send(bye), 1.0)
            await self._relay.stop()  # delivers the bye first
        if self.monitor is not None and self.dealer is not None:
            self.dealer.disable_monitor()
            self.monitor.close(linger=0)
        if self.dealer is None:
            return False
        self.dealer.close(linger=1000)
        return True

    def _curve_hint(self) -> str:
        """What else may keep a secure host from its controller."""
        if self.curve is None:
            if not self.over_tcp:
                return ""
            return (
                " A controller in the secure profile answers only CURVE clients: give its key "
                "with --server-key curve:KEY"
            )
        mine = self.curve[0].public
        return (
            f" Over CURVE: is --server-key the controller's key (`aif controller status` "
            f"there), and does the controller trust this host's key {key_text(mine)} "
            f"(`{trust_command(mine)}` there, then restart it or send it SIGHUP)?"
        )
