"""ZeroMQ addresses for aif's sockets: making fresh ones and binding them.

A channel reader and the event publisher both bind to an address they make
up on the spot, on one of three transports. The rules for that (safe names, the unix
limit on ipc socket paths, ephemeral tcp ports read back after binding) live here, so
that every socket that binds follows the same ones and reports the same errors. So do
the rules for tcp across machines: bind on the interface that faces the peer
(``facing_interface``), and dial a socket bound on every interface at the host one
already reaches its machine by (``dialable``).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

import zmq

from aif.errors import ChannelError

__all__ = [
    "MAX_IPC_PATH",
    "SCHEMES",
    "WILDCARD_HOSTS",
    "Transport",
    "bind",
    "dialable",
    "facing_interface",
    "new_address",
    "tcp_host",
]

Transport = Literal["inproc", "ipc", "tcp"]
#: Longest path a unix socket address may have (sun_path is 108 bytes with the NUL).
MAX_IPC_PATH = 107
#: The address prefixes of the transports.
SCHEMES = ("inproc://", "ipc://", "tcp://")

#: Hosts a tcp socket binds to mean "every interface": not an address a peer can dial.
WILDCARD_HOSTS = ("0.0.0.0", "*")
#: Where a controller's AIM API listens for remote hosts unless told: loopback, a free port.
DEFAULT_LISTEN = "tcp://127.0.0.1:*"

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def new_address(
    transport: Transport, name: str, ipc_dir: Path | None, tcp_host: str = "127.0.0.1"
) -> str:
    """A fresh, unbound address: ``inproc://aif-<name>``, ``ipc://<dir>/<name>`` or tcp.

    ``name`` should carry a uuid; unsafe characters are replaced. tcp addresses are
    ``tcp://<tcp_host>:*`` (an ephemeral port, read back by ``bind``): loopback unless
    a peer on another machine must reach the socket, then the interface facing it.
    """
    safe = _NAME_UNSAFE.sub("_", name)
    if transport == "inproc":
        return f"inproc://aif-{safe}"
    if transport == "ipc":
        if ipc_dir is None:
            raise ChannelError("an ipc address needs a directory (ipc_dir)")
        path = os.path.join(ipc_dir, safe)
        if len(path.encode()) > MAX_IPC_PATH:
            raise ChannelError(
                f"ipc socket path {path!r} is {len(path.encode())} bytes, over the unix limit "
                f"of {MAX_IPC_PATH}; use a shorter ipc_dir (e.g. under /tmp)"
            )
        return f"ipc://{path}"
    if transport == "tcp":
        return f"tcp://{tcp_host}:*"
    raise ChannelError(f"transport must be 'inproc', 'ipc' or 'tcp', got {transport!r}")


def bind(sock: zmq.Socket[Any], address: str) -> str:
    """Bind ``sock`` and return the address bound (the real port for ``tcp://...:*``)."""
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        raise ChannelError(f"cannot bind {address}: {exc}") from exc
    if address.endswith(":*"):
        last = sock.getsockopt(zmq.LAST_ENDPOINT)
        address = last.decode() if isinstance(last, bytes) else str(last)
    return address


def tcp_host(address: str) -> str:
    """The host part of ``tcp://HOST:PORT`` (raises ``ChannelError`` for another form)."""
    host, sep, port = address.removeprefix("tcp://").rpartition(":")
    if not address.startswith("tcp://") or not sep or not host or not port:
        raise ChannelError(f"{address!r} is not a tcp address; write it as tcp://HOST:PORT")
    return host


def dialable(address: str, via: str) -> str:
    """``address`` as a machine that reached its owner at tcp address ``via`` can dial it.

    A socket bound on every interface reports ``tcp://0.0.0.0:PORT``; from another
    machine its host is the one that machine already dials its owner at (``via``).
    Any other address, or any address when ``via`` is not tcp, is returned as it is.
    """
    tcp = address.startswith("tcp://") and via.startswith("tcp://")
    if tcp and tcp_host(address) in WILDCARD_HOSTS:
        return f"tcp://{tcp_host(via)}:{address.rpartition(':')[2]}"
    return address


def facing_interface(peer: str) -> str:
    """The local IPv4 address this machine reaches ``peer`` (tcp://HOST:PORT) from.

    Sockets that a peer on another machine must dial bind there. A connected UDP
    socket asks the kernel for the route; no packet is sent.
    """
    host = tcp_host(peer).strip("[]")
    port = int(peer.rpartition(":")[2])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, port))
        except (OSError, OverflowError) as exc:
            raise ChannelError(f"no route from this machine to {peer}: {exc}") from exc
        address: str = probe.getsockname()[0]
    return address
