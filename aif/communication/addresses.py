"""ZeroMQ addresses for aif's sockets: making fresh ones and binding them.

A channel reader and the event publisher both bind to an address they make
up on the spot, on one of three transports. The rules for that (safe names, the unix
limit on ipc socket paths, ephemeral tcp ports read back after binding) live here, so
that every socket that binds follows the same ones and reports the same errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import zmq

from aif.errors import ChannelError

__all__ = ["MAX_IPC_PATH", "SCHEMES", "Transport", "bind", "new_address"]

Transport = Literal["inproc", "ipc", "tcp"]
#: Longest path a unix socket address may have (sun_path is 108 bytes with the NUL).
MAX_IPC_PATH = 107
#: The address prefixes of the transports.
SCHEMES = ("inproc://", "ipc://", "tcp://")

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def new_address(transport: Transport, name: str, ipc_dir: Path | None) -> str:
    """A fresh, unbound address: ``inproc://aif-<name>``, ``ipc://<dir>/<name>`` or tcp.

    ``name`` should carry a uuid; unsafe characters are replaced. tcp addresses are
    ``tcp://127.0.0.1:*`` (an ephemeral port, read back by ``bind``).
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
        return "tcp://127.0.0.1:*"
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
