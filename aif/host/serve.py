"""Serving one AIM host on its own: a child process, or a host started by hand.

``AIMHost`` (``host``) runs inside whatever event loop and ZeroMQ context it is given;
the ``inproc`` placement shares the controller's. The other two placements start a
host on its own, and this module is what they share: ``serve_host`` runs one host in
a fresh ZeroMQ context; ``main`` is ``python -m aif.host``, the child the ``process``
placement spawns (it watches its parent, so it never outlives the controller);
``remote_curve`` finds the CURVE identity and server key with which ``aif aim serve``
(the ``remote`` placement, started by hand, maybe on another machine) dials a secure
controller. Kept apart from the host so the host holds only the AIM API lifecycle,
and so that command-line and key-ring concerns stay out of it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import zmq
import zmq.asyncio

from aif.errors import ConfigError
from aif.host.host import CONTROLLER_TIMEOUT, AIMHost
from aif.security.curve import CurvePair, Gatekeeper


async def serve_host(
    controller: str,
    aim: str,
    workflow: str | None,
    type_text: str | None,
    *,
    watch_parent: bool = False,
    connect_timeout: float = CONTROLLER_TIMEOUT,
    handle_signals: bool = False,
    state_dir: Path | None = None,
    identity: CurvePair | None = None,
    server_key: bytes | None = None,
) -> int:
    """Run one host in a fresh ZeroMQ context (child and remote placements)."""
    ctx = zmq.asyncio.Context()
    try:
        host = AIMHost(
            ctx,
            controller,
            aim,
            workflow=workflow,
            type_text=type_text,
            watch_parent=watch_parent,
            connect_timeout=connect_timeout,
            handle_signals=handle_signals,
            state_dir=state_dir,
            identity=identity,
            server_key=server_key,
        )
        return await host.serve()
    finally:
        Gatekeeper.stop_for(ctx)
        ctx.destroy(linger=0)


def remote_curve(
    controller: str,
    server_key: str | None,
    state_dir: Path | None,
    identity_stdin: bool = False,
) -> tuple[CurvePair | None, bytes | None]:
    """The CURVE identity and server key of a remote host (``aif aim serve``), or Nones.

    CURVE when the controller's key is known: ``--server-key``, else the key trusted
    for that endpoint in this machine's key ring. The host's own pair is read from
    stdin (``identity_stdin``: a peer controller that started it hands on its own),
    else it is this state directory's identity (a passphrase may be asked).
    """
    if not controller.startswith("tcp://"):
        return None, None
    from aif.security.curve import parse_curve_key, trusted_server_key
    from aif.storage.paths import default_state_dir

    state = state_dir or default_state_dir()
    key = (
        parse_curve_key(server_key, "--server-key")
        if server_key
        else trusted_server_key(state, controller)
    )
    if key is None:
        return None, None
    if identity_stdin:
        secret = sys.stdin.readline().strip().encode("ascii", "replace")
        try:
            return CurvePair(zmq.curve_public(secret), secret), key
        except (zmq.ZMQError, ValueError) as exc:
            raise ConfigError(f"--identity-stdin: no CURVE secret key on stdin ({exc})") from exc
    from aif.security.keys import KeyRing

    own = KeyRing(state).identity()
    return CurvePair(own.curve_public, own.curve_secret), key


#: Set by whoever starts hosts, read by each host: the lowest level its log shows
#: (``aif run -q`` sets WARNING) and whether its lines carry the time (the daemon sets 1,
#: so its log, which the hosts share, says when each line was written).
LOG_LEVEL_ENV = "AIF_LOG_LEVEL"
LOG_TIMES_ENV = "AIF_LOG_TIMES"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging(label: str, *, force: bool = False) -> None:
    """A host process's log lines: ``[label]`` after the level, as its parent asked
    (``force``: replace the handler already there: a fork of a warm worker)."""
    level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    stamp = "%(asctime)s " if os.environ.get(LOG_TIMES_ENV) == "1" else ""
    logging.basicConfig(
        level=level if level in _LEVELS else "INFO",
        format=f"{stamp}%(levelname)s [{label}] %(message)s",
        force=force,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m aif.host`` (the ``process`` placement).

    ``python -m aif.host warm ...`` is a warm worker instead (:mod:`aif.host.warm`).
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["warm"]:
        from aif.host.warm import main as warm_main

        return warm_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m aif.host")
    parser.add_argument("--controller", required=True, help="AIM API endpoint of the controller")
    parser.add_argument("--aim", required=True, help="name of the AIM in its workflow")
    parser.add_argument("--workflow", default=None, help="workflow instance id")
    parser.add_argument("--type", default=None, help="AIM type this host brings (remote hosts)")
    args = parser.parse_args(argv)
    configure_logging(args.aim)
    return asyncio.run(
        serve_host(args.controller, args.aim, args.workflow, args.type, watch_parent=True)
    )
