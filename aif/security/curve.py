"""CURVE for ZeroMQ sockets: encrypted tcp, and clients let in by public key only.

The secure profile puts every tcp socket of aif behind CURVE (CurveZMQ: Curve25519
keys, every frame encrypted and authenticated): the User API, the Controller-to-
Controller API, the AIM API and a secure run's tcp channels. inproc and ipc sockets
stay plain: they never leave the host, and the state directory that holds ipc sockets
is the owner's alone (MPAI-AIF allows plain channels inside one trusted AIW host)::

    client (curve_client)                      server (curve_server, zap_domain=D)
      own key pair + the server's public ──►    decrypts HELLO with its secret key
                                                asks the context's ZAP handler (the
                                                Gatekeeper): is this client key in D?
      ◄── 400 "Unknown key": refused, logged    no  ──► Gatekeeper.refused, WARNING
      ◄── handshake done: messages flow         yes

Who is let in is decided per ZAP *domain*, one per kind of server: ``aif-user-api``
(clients and peer controllers), ``aif-aim-api`` (remote AIM hosts), and
``aif-run-<id>`` (only the run's own key, which every AIM of the run holds).

Two facts of libzmq this module is built around, each pinned by a test:

* A CURVE server socket in a context with **no** ZAP handler accepts **any** client.
  So ``curve_server`` refuses to configure a socket unless the context's
  ``Gatekeeper`` is running and its domain is open, and it also sets
  ``ZAP_ENFORCE_DOMAIN`` so that libzmq itself refuses when the handler is missing.
* A client with the **wrong server key** never connects and nobody says why: the
  server cannot decrypt its HELLO and drops it; the client retries forever. Clients
  therefore wait with a deadline and name the likely causes
  (``handshake_failure``, ``NO_HANDSHAKE``).

This module sets sockets up; the key material and its ``curve:`` text are in
``curve_keys``, the ZAP handler in ``gatekeeper`` (both re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from aif.errors import SecurityError
from aif.security.curve_keys import (
    AIM_API_DOMAIN,
    OWN_KEY_NAME,
    USER_API_DOMAIN,
    CurveKeys,
    CurvePair,
    key_text,
    parse_curve_key,
    require_curve,
    run_domain,
    trust_command,
)
from aif.security.gatekeeper import Gatekeeper

if TYPE_CHECKING:
    from aif.security.keys import Identity

__all__ = [
    "AIM_API_DOMAIN",
    "OWN_KEY_NAME",
    "USER_API_DOMAIN",
    "ClientKeys",
    "ControllerCurve",
    "CurveKeys",
    "CurvePair",
    "Gatekeeper",
    "curve_client",
    "curve_server",
    "handshake_failure",
    "key_text",
    "load_controller_curve",
    "no_handshake",
    "parse_curve_key",
    "plain",
    "require_curve",
    "run_domain",
    "serve_trusted",
    "trust_command",
    "trusted_server_key",
]


@dataclass(frozen=True)
class ClientKeys:
    """How a client dials a CURVE server: its own pair and the server's public key."""

    pair: CurvePair
    server_key: bytes

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Configure ``sock`` (before ``connect``)."""
        curve_client(sock, self.pair.public, self.pair.secret, self.server_key)


@dataclass(frozen=True)
class ControllerCurve:
    """A controller's secure profile: its pair, whom it lets in, where peers' keys are.

    ``clients`` maps a name to a trusted client's Z85 public key (the controller's own
    key included, so its local CLI and hosts may use tcp too); ``server_key_for`` finds
    the key of a peer controller by the endpoint it serves at (``KeyRing.server_key_for``).
    """

    pair: CurvePair
    clients: Mapping[str, bytes]
    server_key_for: Callable[[str], bytes | None] = field(default=lambda endpoint: None)


def load_controller_curve(state_dir: Path, identity: Identity) -> ControllerCurve:
    """A controller's CURVE side from its key ring: its identity, the clients it trusts
    (and itself, so its own CLI and hosts may use tcp), and its trusted peers' keys."""
    from aif.security.keys import KeyRing  # here: clients need not import cryptography

    ring = KeyRing(state_dir)
    clients = {**ring.clients(), OWN_KEY_NAME: identity.curve_public}
    return ControllerCurve(
        CurvePair(identity.curve_public, identity.curve_secret),
        clients,
        lambda endpoint: trusted_server_key(state_dir, endpoint),
    )


def trusted_server_key(state_dir: Path, endpoint: str) -> bytes | None:
    """The CURVE key trusted for a server at ``endpoint`` (``aif keys trust --endpoint``)."""
    from aif.security.keys import KeyRing

    return KeyRing(state_dir).server_key_for(endpoint)


def serve_trusted(
    ctx: zmq.asyncio.Context, sock: zmq.Socket[Any], curve: ControllerCurve, domain: str
) -> Gatekeeper:
    """Make ``sock`` a CURVE server with the controller's pair, letting in its clients.

    Holds ``domain`` open in the context's Gatekeeper (``forget`` it when the socket
    closes). Call before binding the tcp endpoints that must be CURVE.
    """
    keeper = Gatekeeper.of(ctx)
    keeper.allow(domain, curve.clients)
    curve_server(sock, curve.pair.secret, curve.pair.public, domain)
    return keeper


def curve_server(sock: zmq.Socket[Any], secret_z85: bytes, public_z85: bytes, domain: str) -> None:
    """Make ``sock`` a CURVE server whose clients the Gatekeeper checks in ``domain``.

    Call before ``bind``: libzmq takes a listener's security options when it binds, so
    endpoints bound earlier stay as they were (``plain``). Refuses (``SecurityError``)
    unless the socket's context has a running Gatekeeper with ``domain`` open, which
    is what keeps a CURVE server from accepting any client at all.
    """
    require_curve()
    keeper = Gatekeeper.running(sock.context)
    if keeper is None or domain not in keeper.domains:
        raise SecurityError(
            f"refusing to serve CURVE in ZAP domain {domain!r}: no Gatekeeper checks it in "
            "this ZeroMQ context, so any client would be let in; call "
            "Gatekeeper.of(ctx).allow(domain, keys) first"
        )
    sock.curve_secretkey = secret_z85
    sock.curve_publickey = public_z85
    sock.curve_server = True
    sock.zap_domain = domain.encode()
    # libzmq's own guard: with no ZAP handler, refuse rather than let everyone in.
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def plain(sock: zmq.Socket[Any]) -> None:
    """Back to the NULL mechanism for endpoints bound from now on (ipc next to tcp)."""
    if sock.getsockopt(zmq.MECHANISM) != zmq.NULL:
        sock.curve_server = False
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 0)


def curve_client(
    sock: zmq.Socket[Any], public_z85: bytes, secret_z85: bytes, server_public_z85: bytes
) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is given (before connect).

    With the wrong server key the connection never comes up and nothing says so: wait
    with a deadline and report ``no_handshake``.
    """
    require_curve()
    sock.curve_publickey = public_z85
    sock.curve_secretkey = secret_z85
    sock.curve_serverkey = server_public_z85


def no_handshake(address: str, seconds: float) -> str:
    """What to say when a CURVE client got no answer from ``address`` in time."""
    return (
        f"no CURVE handshake with {address} within {seconds:g} s: wrong server key, "
        "or this client is not trusted there (or nothing serves there); check the server's "
        "key (`aif controller status` or `aif keys show` there), and on the server trust "
        "this client's key (`aif keys show` here, then `aif keys trust NAME curve:KEY` there)"
    )


def handshake_failure(event: int, value: int, address: str, curve: bool) -> str | None:
    """Why a handshake with ``address`` failed, from a socket monitor event; None if not.

    ``curve``: this client used CURVE. libzmq reports a ZAP refusal as
    ``HANDSHAKE_FAILED_AUTH`` with status 400, a client/server mechanism mismatch as
    ``HANDSHAKE_FAILED_PROTOCOL``, and a wrong server key only as ``NO_DETAIL`` (the
    server cannot read the client's HELLO).
    """
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (
            f"{address} refused this client's key (status {value}): it is not trusted there; "
            "run `aif keys show` here and `aif keys trust NAME curve:KEY` on that machine "
            "(then restart its daemon, or send it SIGHUP)"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if curve:
            return (
                f"{address} does not speak CURVE (a basic-profile controller?); connect "
                "without a server key, or start it with --profile secure"
            )
        return (
            f"{address} requires CURVE (secure profile): give its key with --server-key "
            "curve:KEY (`aif controller status` there shows it), or trust it for that "
            "endpoint (`aif keys trust NAME curve:KEY --endpoint ADDRESS`)"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and curve:
        return (
            f"no CURVE handshake with {address}: the server key is wrong (it is not the key "
            "of the controller serving there; `aif controller status` there shows it)"
        )
    return None
