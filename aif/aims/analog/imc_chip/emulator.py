"""The chip emulator process: a ``Chip`` served over the IMC chip protocol on TCP.

Run it as ``aif chip emulate --listen tcp://127.0.0.1:0`` or
``python -m aif.aims.analog.imc_chip.emulator --listen tcp://127.0.0.1:0``; the first
line on stdout is ``aif chip emulator listening on tcp://HOST:PORT`` (port 0 picks a free
port, and this line says which), so a parent process learns where to connect.

Serving rules, the same a real chip's firmware follows (``docs/imc-protocol.md``):

* Each connection's requests are answered in order, one reply per request, the reply
  echoing the request id. Many connections may be open; they share the one chip and the
  event loop serialises their requests, so each request sees the chip as the previous
  one left it.
* A request that decodes but cannot be served (tile out of range, NaN, erased tile,
  wrong sizes...) gets an ERROR reply with its ``Status`` and a message naming the field;
  the connection stays open. So does one whose payload does not decode, since its
  length was still honoured.
* A bad magic or a length over ``MAX_PAYLOAD`` means the stream is out of step: the
  emulator sends an ERROR (request id 0) and closes that connection only.
* Every ERROR reply is logged at WARNING on stderr; SIGTERM and SIGINT stop accepting,
  close the open connections and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, assert_never

from aif.aims.analog.imc_chip.config import DEFAULT_MAX_BATCH, ChipConfig
from aif.aims.analog.imc_chip.messages import (
    ErrorReply,
    InfoRequest,
    MvmReply,
    MvmRequest,
    ProgramRequest,
    ReadRequest,
    Reply,
    Request,
    ResetReply,
    ResetRequest,
    Status,
    WaitReply,
    WaitRequest,
)
from aif.aims.analog.imc_chip.protocol import (
    ProtocolViolation,
    encode,
    read_request,
    split_address,
)
from aif.errors import ChipError, ConfigError

if TYPE_CHECKING:  # the physics imports torch and aihwkit: only when a chip is made
    from aif.aims.analog.imc_chip.tiles import Chip

__all__ = [
    "EmulatorServer",
    "add_arguments",
    "answer",
    "chip_config",
    "main",
    "parse_listen",
    "run",
    "serve",
]

log = logging.getLogger(__name__)

BANNER = "aif chip emulator listening on"


def answer(chip: Chip, request: Request) -> Reply:
    """The chip's reply to one decoded request; refusals become ERROR replies."""
    try:
        if isinstance(request, InfoRequest):
            return chip.info()
        if isinstance(request, ProgramRequest):
            return chip.program(request.tile, request.data, request.kind)
        if isinstance(request, ReadRequest):
            return chip.read(request.tile)
        if isinstance(request, MvmRequest):
            return MvmReply(request.tile, chip.mvm(request.tile, request.inputs))
        if isinstance(request, WaitRequest):
            return WaitReply(chip.wait(request.seconds))
        if isinstance(request, ResetRequest):
            return ResetReply(chip.reset(request.tile))
    except ChipError as exc:
        return ErrorReply(Status(exc.status), str(exc))
    assert_never(request)


@dataclass
class EmulatorServer:
    """A listening emulator: its address, and ``close()`` that also ends open connections."""

    server: asyncio.Server
    connections: set[asyncio.StreamWriter]

    @property
    def address(self) -> str:
        """``tcp://HOST:PORT`` of the first listening socket."""
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"

    async def close(self) -> None:
        self.server.close()
        for writer in list(self.connections):
            writer.close()
        await self.server.wait_closed()


async def serve(chip: Chip, host: str, port: int) -> EmulatorServer:
    """Listen on ``host:port`` (0 = a free port) and serve ``chip`` to every connection."""
    connections: set[asyncio.StreamWriter] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        try:
            await _serve_connection(chip, reader, writer)
        finally:
            connections.discard(writer)

    server = await asyncio.start_server(connected, host, port)
    return EmulatorServer(server, connections)


async def _serve_connection(
    chip: Chip, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    peer = writer.get_extra_info("peername")
    log.info("connection from %s", peer)
    try:
        while True:
            try:
                header, request = await read_request(reader)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    log.warning("%s closed the connection inside a message", peer)
                break
            except ProtocolViolation as exc:
                log.warning("ERROR %s to %s: %s", exc.status.name, peer, exc)
                rid = 0 if exc.fatal else exc.request_id
                writer.write(encode(ErrorReply(exc.status, str(exc)), rid))
                await writer.drain()
                if exc.fatal:
                    log.warning("closing the connection from %s: the stream is out of step", peer)
                    break
                continue
            try:
                reply = answer(chip, request)
                data = encode(reply, header.request_id)
            except Exception as exc:  # a bug in the emulator: tell the client, keep serving
                log.exception("internal error answering a %s", request.label)
                reply = ErrorReply(Status.INTERNAL, f"emulator internal error: {exc!r}")
                data = encode(reply, header.request_id)
            if isinstance(reply, ErrorReply):
                log.warning("ERROR %s to %s: %s", Status(reply.status).name, peer, reply.message)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError) as exc:
        log.info("connection from %s lost: %s", peer, exc)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        log.info("connection from %s closed", peer)


def parse_listen(text: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` -> (host, port); ``argparse.ArgumentTypeError`` says the form."""
    parts = split_address(text)
    if parts is None or not 0 <= parts[1] <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not tcp://HOST:PORT with a port in 0..65535 "
            "(e.g. tcp://127.0.0.1:0; port 0 picks a free port)"
        )
    return parts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's options, shared by ``aif chip emulate`` and ``python -m``."""
    d = ChipConfig()
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 0),
        metavar="tcp://HOST:PORT",
        help="address to listen on (default tcp://127.0.0.1:0: a free port, printed on stdout)",
    )
    parser.add_argument("--tiles", type=int, default=d.tiles, help=f"tiles (default {d.tiles})")
    parser.add_argument(
        "--rows", type=int, default=d.rows, help=f"rows = outputs per tile (default {d.rows})"
    )
    parser.add_argument(
        "--cols", type=int, default=d.cols, help=f"cols = inputs per tile (default {d.cols})"
    )
    parser.add_argument(
        "--dac-bits", type=int, default=d.dac_bits, help=f"input DAC bits, 0 = exact ({d.dac_bits})"
    )
    parser.add_argument(
        "--adc-bits",
        type=int,
        default=d.adc_bits,
        help=f"output ADC bits, 0 = exact ({d.adc_bits})",
    )
    parser.add_argument(
        "--out-bound",
        type=float,
        default=d.out_bound,
        help=f"ADC range +-out_bound in weight units (default {d.out_bound})",
    )
    parser.add_argument(
        "--g-max", type=float, default=d.g_max, help=f"largest conductance, uS (default {d.g_max})"
    )
    parser.add_argument(
        "--read-noise",
        type=float,
        default=d.read_noise,
        help="std of the output noise per MVM in weight units, as aihwkit's forward.out_noise "
        f"(default {d.read_noise})",
    )
    parser.add_argument(
        "--no-noise",
        action="store_true",
        help="an ideal chip: no programming noise, drift, 1/f or output noise (for tests)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of every noise draw (default: a fresh one)"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help=f"largest MVM batch accepted (default {DEFAULT_MAX_BATCH})",
    )


def chip_config(args: argparse.Namespace) -> ChipConfig:
    """The ``ChipConfig`` the parsed options describe (``ConfigError`` names bad ones)."""
    return ChipConfig(
        tiles=args.tiles,
        rows=args.rows,
        cols=args.cols,
        dac_bits=args.dac_bits,
        adc_bits=args.adc_bits,
        out_bound=args.out_bound,
        g_max=args.g_max,
        read_noise=args.read_noise,
        noise=not args.no_noise,
        seed=args.seed,
        max_batch=args.max_batch,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT (exit 0); a bad option or a busy address exits 2 / 1."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s emulator %(message)s"
        )
    try:
        from aif.aims.analog.imc_chip.tiles import Chip

        chip = Chip(chip_config(args))
    except ConfigError as exc:
        print(f"aif chip emulate: {exc}", file=sys.stderr)
        return 2
    host, port = args.listen
    return asyncio.run(_serve_until_signalled(chip, host, port))


async def _serve_until_signalled(chip: Chip, host: str, port: int) -> int:
    try:
        emulator = await serve(chip, host, port)
    except OSError as exc:
        print(
            f"aif chip emulate: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(is the port in use? port 0 picks a free one)",
            file=sys.stderr,
        )
        return 1
    print(f"{BANNER} {emulator.address}", flush=True)
    log.info("%s; noise seed %d (pass --seed %d to repeat)", chip.name, chip.seed, chip.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await emulator.close()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aif.aims.analog.imc_chip.emulator",
        description="Emulate an IMC chip behind the aif chip protocol (docs/imc-protocol.md).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
