"""A peer controller for the C2C tests: the daemon's C2C side and nothing else.

A real ``ApiServer`` on ``tcp://127.0.0.1:*`` whose ``peer.*`` requests go to a real
``PeerHosts`` (and ``aims`` to its listing), in its own process, so a test can kill it
outright. Prints ``serving on tcp://...`` once it answers; serves until SIGTERM/SIGINT::

    python -m tests.helpers.peer_controller --state-dir DIR [--offer TYPE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import zmq.asyncio

from aif.api import user as user_api
from aif.daemon.peer_hosting import PeerHosts
from aif.daemon.server import ApiServer
from aif.errors import ControllerError


async def serve(state_dir: Path, offered: list[str] | None, address: str) -> None:
    ctx = zmq.asyncio.Context()
    hosts = PeerHosts(state_dir, offered)

    async def handle(request: user_api.Request) -> Any:
        if isinstance(request, user_api.PeerOffer | user_api.PeerHost | user_api.PeerRelease):
            return await hosts.handle(request)
        if isinstance(request, user_api.AIMs):
            return {"peer_hosts": hosts.listing()}
        if isinstance(request, user_api.Ping):
            return {"pid": os.getpid()}
        raise ControllerError(f"{request.op!r} is not served by this test peer")

    server = ApiServer(ctx, handle)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        endpoint = server.bind(address)
        server.start()
        print(f"serving on {endpoint}", flush=True)
        await stop.wait()
    finally:
        await server.close()
        await hosts.close()
        ctx.destroy(linger=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.peer_controller")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--offer", action="append", default=None)
    parser.add_argument("--api", default="tcp://127.0.0.1:*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="peer %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(Path(args.state_dir), args.offer, args.api))
    return 0


if __name__ == "__main__":
    sys.exit(main())
