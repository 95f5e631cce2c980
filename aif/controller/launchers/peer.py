"""The peer launcher: an AIM hosted by a peer controller over the Controller-to-Controller API.

MPAI-AIF's remote ports across machines. Controller A runs an AIW with an AIM declared
``placement: remote, peers: [tcp://B:7001, ...]``; controller B serves its User API
on tcp and hosts AIMs for others::

    controller A (runs the AIW)                          controller B (hosts)
      PeerLauncher ── peer.offer (is B there?) ─────────►  ApiServer ─► PeerHosts
                   ── peer.host {type, name, run, A} ───►    starts `aif aim serve TYPE
                   ◄─ {pid, machine} once it runs ───────      --controller A ...` (a child
      AIM API ◄──── hello, ready, heartbeats, bye ─────────── that dies with B)
      its AIMs ◄═══════ records, AIM to AIM over tcp ═══════► the hosted AIM
                   ── peer.offer every second (watchdog) ─►
                   ── peer.release {run} when it ended ───►  ends that run's hosts

The host B starts is the very ``aif aim serve`` a person would start by hand: it
registers at A over the AIM API and is wired and supervised like any remote host, so
neither controller is on the data path and nothing of the AIM API is duplicated here.
What C2C adds is who starts the host (B, on request) and how A notices that it lost B:
a watchdog that fails the run, naming B, when B stops answering for
:data:`PEER_TIMEOUT` seconds, rather than waiting for heartbeats to run out.

* A (``PeerLauncher``) asks the peers in the order the AIW lists them and takes the
  first that hosts the AIM; when none does, the run fails naming every peer and why.
  Moving to another peer after a loss mid-run is the daemon's job retry: the next
  attempt asks the peers in order again, and a dead one does not answer.
* B (``PeerHosts``) hosts only the types it offers (``--offer``; default any it can
  load), gives each host a parent-death signal so no host outlives B (even ``kill -9``),
  reaps them, and keeps the last ones that ended for ``aif aims``. B's side is the
  daemon's: it lives in :mod:`aif.daemon.peer_hosting`.

The basic profile has no authentication here: any client that reaches B's tcp User API
can ask it to host the AIM types it offers. Serve it on a trusted network only.

In the secure profile every hop is CURVE, and each controller lets in only keys it
trusts: A dials B's User API with A's identity and the key A trusts for B's endpoint
(``aif keys trust B curve:KEY --endpoint tcp://B:7001``), so B must trust A; the host B
starts dials A's AIM API with B's identity and A's key (sent in ``peer.host``), so A
must trust B. A peer that does not trust A refuses the handshake, and A says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any, Final

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from aif.api import user as user_api
from aif.communication.addresses import WILDCARD_HOSTS, facing_interface, tcp_host
from aif.controller.launchers.hand_started import RemoteLauncher
from aif.controller.launchers.protocol import describe_exit
from aif.controller.plan import PlannedAIM
from aif.errors import AIFError, ConfigError, DaemonError
from aif.security.curve import (
    ClientKeys,
    ControllerCurve,
    handshake_failure,
    key_text,
    trust_command,
)

__all__ = ["PEER_PING_INTERVAL", "PEER_TIMEOUT", "PeerLauncher", "ask"]

log = logging.getLogger("aif.c2c")

#: Seconds between the pings of A's watchdog to the peer that hosts its AIM.
PEER_PING_INTERVAL: Final = 1.0
#: Seconds without an answer after which A counts the peer (and the AIM it hosts) lost;
#: also how long A waits for a peer to answer at all before it tries the next one.
PEER_TIMEOUT: Final = 3.0
#: Seconds A waits for ``peer.host``: B loads the AIM's class and starts a process.
PEER_HOST_TIMEOUT: Final = 60.0
#: Seconds A waits for ``peer.release`` (best effort: B may be gone).
PEER_RELEASE_TIMEOUT: Final = 2.0


async def ask(
    ctx: zmq.asyncio.Context,
    address: str,
    op: str,
    timeout: float,
    keys: ClientKeys | None = None,
    **params: Any,
) -> Any:
    """One C2C request to the controller at ``address``; its result, or the error it names.

    Unlike a plain request it watches the connection too: when nothing listens
    at ``address`` (refused, no route), the handshake fails (``keys``: dial with CURVE;
    a server that does not trust the key, a wrong server key, a CURVE/plain mismatch)
    or the connection drops before the answer, it raises at once instead of after
    ``timeout``, so an unreachable peer costs milliseconds, not seconds. Messages are
    relative to ``address`` (callers name it).
    """
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        keys.apply(sock)
    events = (
        zmq.EVENT_CONNECTED
        | zmq.EVENT_CONNECT_RETRIED
        | zmq.EVENT_DISCONNECTED
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )
    monitor = sock.get_monitor_socket(events)
    poller = zmq.asyncio.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    deadline = time.monotonic() + timeout
    connected = False
    try:
        try:
            sock.connect(address)
        except zmq.ZMQError as exc:
            raise DaemonError(f"not an address to dial ({exc}); write tcp://HOST:PORT") from exc
        # a basic-profile peer serves tcp only to requests that carry its token
        token = user_api.peer_token(address) if keys is None else None
        extra = {user_api.TOKEN_KEY: token} if token else {}
        await sock.send(user_api.pack({"op": op, "rid": 1, **params, **extra}))
        while True:
            left = deadline - time.monotonic()
            ready = dict(await poller.poll(int(left * 1000) + 1)) if left > 0 else {}
            if not ready:
                raise DaemonError(f"no answer to {op!r} within {timeout:g} s")
            if sock in ready:
                return user_api.reply_result(user_api.unpack(await sock.recv()), address)
            message = parse_monitor_message(await monitor.recv_multipart())
            event = message["event"]
            failed = handshake_failure(event, message["value"], address, keys is not None)
            if failed is not None:
                raise DaemonError(failed)
            if event == zmq.EVENT_CONNECTED:
                connected = True
            elif event == zmq.EVENT_CONNECT_RETRIED and not connected:
                raise DaemonError(
                    "nothing answers there (the connection was refused or has no route); "
                    "is a controller serving its API on that address (--api)?"
                )
            elif event == zmq.EVENT_DISCONNECTED:
                raise DaemonError(f"the connection dropped before the answer to {op!r}")
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


class PeerLauncher(RemoteLauncher):
    """A ``placement: remote`` AIM with ``peers``: a peer controller starts its host.

    To supervision it is a remote host like any other (registration, heartbeats, its
    ``bye``); it adds asking the peers in order, a watchdog that ends it when its peer
    stops answering, and releasing the host on the peer when the run ends. One per run
    attempt: nothing carries over, so a retry asks every peer again.
    """

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        aim: PlannedAIM,
        aim_api_tcp: str | None,
        workflow: str,
        curve: ControllerCurve | None = None,
    ) -> None:
        """``curve``: this controller's secure profile (peers are asked over CURVE)."""
        super().__init__()
        self._ctx = ctx
        self._curve = curve
        #: How to dial the peer that agreed to host the AIM (CURVE keys, or plain).
        self._keys: ClientKeys | None = None
        self._aim = aim
        self._tcp = aim_api_tcp
        self._workflow = workflow
        #: The peer that hosts the AIM, its host's pid and its machine, once one agreed.
        self.peer: str | None = None
        self.host_pid: int | None = None
        self.machine = ""
        self._registered = False
        self._watchdog: asyncio.Task[None] | None = None
        self.description = "host on a peer controller"

    async def launch(self) -> None:
        """Ask each peer in turn to host the AIM; never raises (``ended`` says why)."""
        if self._tcp is None:
            self.ended(
                1,
                f"AIM {self._aim.name!r} is hosted by a peer controller, whose host dials this "
                "controller back, but this controller does not listen on tcp; the controller "
                "must listen on tcp for peers' hosts: `aif run --listen tcp://HOST:*` or "
                "`aif controller start --listen ...`",
            )
            return
        reasons = []
        for peer in self._aim.peers:
            try:
                await self._ask_to_host(peer)
            except Exception as exc:  # each peer's reason goes into the run's failure
                log.warning("peer %s cannot host AIM %r: %s", peer, self._aim.name, exc)
                reasons.append(f"{peer}: {exc}")
                continue
            self._watchdog = asyncio.create_task(
                self._watch(peer), name=f"peer-watchdog-{self._aim.name}"
            )
            return
        self.ended(1, "no peer controller could host it: " + "; ".join(reasons))

    def registered(self, machine: str | None, pid: int) -> None:
        self._registered = True
        self.description = (
            f"host on controller {self.peer} (pid {pid} on {machine or self.machine})"
        )

    def ended(self, status: int, reason: str = "") -> None:
        super().ended(status, reason)
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()

    async def terminate(self, grace: float) -> None:
        """Release the host on its peer (best effort: the peer may be gone), then wait."""
        if self.peer is not None:
            with contextlib.suppress(AIFError, zmq.ZMQError):
                await ask(
                    self._ctx,
                    self.peer,
                    "peer.release",
                    PEER_RELEASE_TIMEOUT,
                    self._keys,
                    workflow=self._workflow,
                )
        await super().terminate(grace)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog

    def _keys_for(self, peer: str) -> ClientKeys | None:
        """CURVE keys to dial ``peer`` with (secure profile), or None (basic: plain)."""
        if self._curve is None:
            return None
        server_key = self._curve.server_key_for(peer)
        if server_key is None:
            mine = self._curve.pair.public
            raise DaemonError(
                f"no CURVE key is trusted for the controller at {peer}, and the secure profile "
                "asks peers over CURVE only; on that machine run `aif keys show`, here run "
                f"`aif keys trust NAME curve:KEY --endpoint {peer}`; it must also trust this "
                f"controller's key {key_text(mine)} (`{trust_command(mine)}` there)"
            )
        return ClientKeys(self._curve.pair, server_key)

    async def _ask_to_host(self, peer: str) -> None:
        controller = self._dialable_from(peer)
        keys = self._keys_for(peer)
        await ask(self._ctx, peer, "peer.offer", PEER_TIMEOUT, keys)  # there at all? (fast)
        secure = {} if self._curve is None else {"server_key": key_text(self._curve.pair.public)}
        reply = await ask(
            self._ctx,
            peer,
            "peer.host",
            PEER_HOST_TIMEOUT,
            keys,
            type=self._aim.type,
            name=self._aim.name,
            workflow=self._workflow,
            controller=controller,
            origin=f"{socket.gethostname()} (controller pid {os.getpid()}, AIM API {controller})",
            **secure,
        )
        pid = reply.get("pid") if isinstance(reply, dict) else None
        if not isinstance(pid, int):
            raise DaemonError(f"its answer to 'peer.host' names no host pid: {reply!r:.200}")
        self.peer, self.host_pid, self.machine = peer, pid, str(reply.get("machine", "?"))
        self._keys = keys
        self.description = f"host on controller {peer} (pid {pid} on {self.machine})"
        log.info("AIM %r of run %s: %s", self._aim.name, self._workflow, self.description)

    def _dialable_from(self, peer: str) -> str:
        """This controller's AIM API address as the peer's machine can dial it."""
        assert self._tcp is not None
        host, port = tcp_host(self._tcp), self._tcp.rpartition(":")[2]
        if host in WILDCARD_HOSTS:
            return f"tcp://{facing_interface(peer)}:{port}"
        if _loopback(host) and not _loopback(facing_interface(peer)):
            raise ConfigError(
                f"this controller listens for hosts on {self._tcp}, a loopback address a host "
                "on another machine cannot dial; listen on this machine's address or on "
                "tcp://0.0.0.0:* (--listen)"
            )
        return self._tcp

    async def _watch(self, peer: str) -> None:
        """End the launcher when the peer stops answering, or its host ends unregistered."""
        answered = time.monotonic()
        while not self._ended.done():
            asked = time.monotonic()
            try:
                offer = await ask(self._ctx, peer, "peer.offer", PEER_PING_INTERVAL, self._keys)
            except Exception as exc:  # whatever the failure, the peer did not answer
                if time.monotonic() - answered >= PEER_TIMEOUT:
                    log.error("AIM %r: peer %s is lost: %s", self._aim.name, peer, exc)
                    self.ended(
                        1,
                        f"controller {peer} stopped answering for {PEER_TIMEOUT:g} s "
                        "(it was killed, hung or lost its network)",
                    )
                    return
            else:
                answered = asked  # alive at some time after this: count from here, not later
                exit_text = None if self._registered else self._host_exit(offer)
                if exit_text is not None:
                    self.ended(1, exit_text)
                    return
            await asyncio.sleep(max(0.0, PEER_PING_INTERVAL - (time.monotonic() - asked)))

    def _host_exit(self, offer: Any) -> str | None:
        """How the host ended on the peer before it registered here, if the peer says so."""
        records = offer.get("exited") if isinstance(offer, dict) else None
        for record in records if isinstance(records, list) else []:
            if (
                isinstance(record, dict)
                and record.get("pid") == self.host_pid
                and record.get("workflow") == self._workflow
            ):
                status = record.get("status")
                how = describe_exit(status) if isinstance(status, int) else "ended"
                last = str(record.get("output") or "")
                return f"it ended on {self.machine} ({how}) before it registered here" + (
                    f": {last}" if last else ""
                )
        return None


def _loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("localhost", "::1", "[::1]")
