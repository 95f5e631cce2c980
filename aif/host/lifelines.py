"""Why an AIM host must go before its AIM is done: the ways it notices it is on its own.

A child host watches the process that spawned it (its controller). A remote host
watches its tcp connection to the controller, and the signals of the person who
started it (SIGINT, SIGTERM). Each watcher calls ``leave(reason, status)`` when it
fires; what leaving means (abort the AIM, tear it down, say ``bye`` with the reason)
is the host's business. Kept apart from the host, which registers, wires and runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from aif.security.curve import handshake_failure, trust_command

#: ``leave(reason, exit_status)``: the host's way out.
Leave = Callable[[str, int], None]

#: Over tcp, ZeroMQ pings the controller this often (ms) and drops the connection after
#: this long without an answer (ms): how a remote host notices a controller machine that
#: vanished without closing its sockets. A dead controller process is noticed at once.
PING_INTERVAL_MS, PING_TIMEOUT_MS = 1000, 10_000


async def watch_parent(parent: int, leave: Leave) -> None:
    """Leave when the controller process that spawned this host is gone (no orphans)."""
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    leave(f"the controller (process {parent}) is gone", 1)


def monitor_connection(dealer: zmq.asyncio.Socket) -> zmq.asyncio.Socket:
    """Ping the peer of ``dealer`` and report its disconnections on the returned socket.

    Call before ``connect``; close the returned socket (after
    ``dealer.disable_monitor()``) before the context ends.
    """
    dealer.setsockopt(zmq.HEARTBEAT_IVL, PING_INTERVAL_MS)
    dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, PING_TIMEOUT_MS)
    return dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED)


#: Handshake failures: the controller refused this host's CURVE key, or one side
#: speaks CURVE and the other does not, or the server key is not the controller's.
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


async def watch_controller(
    monitor: zmq.asyncio.Socket,
    controller: str,
    registered: Callable[[], bool],
    finished: Callable[[], bool],
    leave: Leave,
    own_key: bytes | None = None,
) -> None:
    """Leave when the connection to the controller drops once the host is registered.

    Before registration a refused or dropped connection is retried by ZeroMQ and the
    host's ``connect_timeout`` bounds the wait, but a failed CURVE handshake (this
    host's key, ``own_key`` when it dials CURVE, is not trusted there, or one side
    does not speak CURVE) makes it leave at once, saying why; after it, the controller that set the
    AIM up is gone (it exited, was killed, or its machine left the network) and nobody
    would wire, start, stop or reap it. An AIM that already finished just tears down.
    """
    while True:
        event = parse_monitor_message(await monitor.recv_multipart())
        if event["event"] & _HANDSHAKE_FAILED:
            # Refused at the door (secure profile): say why now, rather than wait out
            # the connect timeout for an answer that cannot come.
            code, value = int(event["event"]), int(event["value"])
            why = handshake_failure(code, value, controller, own_key is not None)
            if why is not None and not registered():
                if own_key is not None:  # the key to trust there, ready to paste
                    why += f"; this host's key: `{trust_command(own_key)}`"
                leave(why, 1)
                return
            continue
        if event["event"] != zmq.EVENT_DISCONNECTED or not registered():
            continue
        if not finished():
            leave(f"lost the controller at {controller}", 1)
        return


@contextlib.contextmanager
def leave_on_signals(leave: Leave) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM make the host leave (exit status 128 + signal)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, leave, f"interrupted by {sig.name}", 128 + sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
