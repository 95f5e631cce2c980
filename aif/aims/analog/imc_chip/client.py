"""The asyncio client of the IMC chip protocol: one connection, one request at a time.

A chip answers requests in order and has no use for a second one while it computes,
so :class:`ChipClient` holds a lock around each request/reply pair and numbers them
(the reply must echo the id). Nothing waits forever: connecting and every reply have a
timeout. Errors are translated at this boundary (exception tree in ``aif.errors``)::

    HardwareError
    ├── ChipError            the chip answered with an ERROR reply: names the request,
    │                        carries the chip's text and ``status``
    └── ChipConnectionError  cannot connect, connection lost (EOF, reset) or no reply
                             in time: names the address and what to check
    ProtocolError            the chip's reply breaks the protocol (bad bytes, wrong id)

After a timeout, a lost connection or a reply that breaks the protocol the stream can
no longer be trusted (a late reply would answer the next request), so the client
closes it and every later call raises :class:`ChipConnectionError` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from aif.aims.analog.imc_chip.messages import (
    ALL_TILES,
    ErrorReply,
    InfoReply,
    InfoRequest,
    Kind,
    MvmReply,
    MvmRequest,
    ProgramReply,
    ProgramRequest,
    ReadReply,
    ReadRequest,
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
    read_message,
    split_address,
)
from aif.errors import ChipConnectionError, ChipError, ConfigError, ProtocolError

__all__ = ["DEFAULT_TIMEOUT", "ChipClient", "parse_address"]

#: Seconds to wait for a connection and for each reply unless told otherwise.
DEFAULT_TIMEOUT: Final = 30.0
_R = TypeVar("_R", InfoReply, ProgramReply, ReadReply, MvmReply, WaitReply, ResetReply)


def parse_address(address: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` -> ``(HOST, PORT)`` (``[::1]`` for IPv6); raises ``ConfigError``."""
    parts = split_address(address)
    if parts is None or not 0 < parts[1] < 65536:
        raise ConfigError(
            f"chip address {address!r} is not tcp://HOST:PORT with a port in 1..65535, "
            "e.g. tcp://127.0.0.1:5555 or tcp://[::1]:5555"
        )
    return parts


class ChipClient:
    """A connection to one chip. Make it with :meth:`connect`; close it with :meth:`close`.

    Usable as ``async with await ChipClient.connect(...) as chip:``.
    """

    def __init__(
        self,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()
        self._next_id = 1
        #: Why the connection can no longer be used (None while it can).
        self._broken: str | None = None

    @classmethod
    async def connect(
        cls,
        address: str,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
    ) -> ChipClient:
        """Open a connection to the chip at ``tcp://HOST:PORT``.

        ``timeout`` bounds every reply; ``connect_timeout`` the connection (default:
        ``timeout``). Raises :class:`ChipConnectionError` when the chip cannot be reached.
        """
        if not timeout > 0:
            raise ConfigError(f"chip reply timeout must be positive, got {timeout}")
        host, port = parse_address(address)
        limit = timeout if connect_timeout is None else connect_timeout
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
        except TimeoutError as exc:
            raise ChipConnectionError(
                f"cannot connect to the chip at {address}: no answer within {limit:g} s; "
                "check the address, that the chip (or emulator) is running and that no "
                "firewall drops the connection"
            ) from exc
        except OSError as exc:
            raise ChipConnectionError(
                f"cannot connect to the chip at {address}: {exc.strerror or exc}; check the "
                "address and that the chip (or emulator) is running and listening there"
            ) from exc
        return cls(address, reader, writer, timeout)

    async def __aenter__(self) -> ChipClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by :meth:`close` or after a fault)."""
        return self._broken is not None

    async def close(self) -> None:
        """Close the connection (idempotent; waits at most a second for the socket)."""
        if self._broken is None:
            self._broken = "it was closed"
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    # -- the requests ------------------------------------------------------------------

    async def info(self) -> InfoReply:
        """What the chip is: tiles, their size, converters, conductance range, clock."""
        return await self._call(InfoRequest(), InfoReply, "INFO")

    async def program(self, tile: int, weights: npt.NDArray[np.floating]) -> ProgramReply:
        """Program ``weights`` (rows_used, cols_used) in [-1, 1] onto ``tile``."""
        data = np.ascontiguousarray(weights, dtype=np.float32)
        what = f"PROGRAM of tile {tile} ({'x'.join(map(str, data.shape))} weights)"
        reply = await self._call(ProgramRequest(tile, Kind.WEIGHTS, data), ProgramReply, what)
        self._check_tile(reply.tile, tile, what)
        return reply

    async def program_conductances(
        self, tile: int, g_plus: npt.NDArray[np.floating], g_minus: npt.NDArray[np.floating]
    ) -> ProgramReply:
        """Program target conductances (µS, within [0, g_max]) onto ``tile``."""
        data = np.ascontiguousarray(np.stack([g_plus, g_minus]), dtype=np.float32)
        what = f"PROGRAM of tile {tile} ({'x'.join(map(str, data.shape[1:]))} conductances)"
        request = ProgramRequest(tile, Kind.CONDUCTANCES, data)
        reply = await self._call(request, ProgramReply, what)
        self._check_tile(reply.tile, tile, what)
        return reply

    async def read(self, tile: int) -> ReadReply:
        """The conductances of ``tile`` now (noise and drift included)."""
        what = f"READ of tile {tile}"
        reply = await self._call(ReadRequest(tile), ReadReply, what)
        self._check_tile(reply.tile, tile, what)
        return reply

    async def mvm(self, tile: int, inputs: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """``inputs`` (batch, cols_used) in [-1, 1] times ``tile``: outputs (batch, rows_used).

        The outputs are a read-only view of the reply.
        """
        data = np.ascontiguousarray(inputs, dtype=np.float32)
        what = f"MVM on tile {tile} ({len(data)} vectors)"
        reply = await self._call(MvmRequest(tile, data), MvmReply, what)
        self._check_tile(reply.tile, tile, what)
        if reply.outputs.shape[0] != data.shape[0]:
            self._break(f"its {what} reply had {reply.outputs.shape[0]} outputs")
            raise ProtocolError(
                f"the chip at {self.address} answered {what} with {reply.outputs.shape[0]} "
                "output vectors; the protocol needs one per input vector"
            )
        return reply.outputs

    async def wait(self, seconds: float) -> float:
        """Advance the chip clock by ``seconds`` (drift); returns the clock after it."""
        reply = await self._call(WaitRequest(float(seconds)), WaitReply, f"WAIT {seconds:g} s")
        return float(reply.clock)

    async def reset(self, tile: int = ALL_TILES) -> int:
        """Erase ``tile`` (default: every tile); returns how many tiles were erased."""
        what = "RESET of every tile" if tile == ALL_TILES else f"RESET of tile {tile}"
        reply = await self._call(ResetRequest(tile), ResetReply, what)
        return int(reply.tiles_reset)

    # -- one request, one reply ------------------------------------------------------------

    async def _call(self, request: Request, expected: type[_R], what: str) -> _R:
        async with self._lock:
            if self._broken is not None:
                raise ChipConnectionError(
                    f"cannot send {what} to the chip at {self.address}: the connection is "
                    f"closed ({self._broken}); reconnect once the chip is reachable"
                )
            request_id = self._next_id
            self._next_id = self._next_id % 0xFFFF_FFFF + 1
            data = encode(request, request_id)  # ProtocolError: nothing was sent
            try:
                self._writer.write(data)
                await asyncio.wait_for(self._writer.drain(), self.timeout)
                header, reply = await asyncio.wait_for(read_message(self._reader), self.timeout)
            except TimeoutError as exc:
                self._break(f"no reply to {what} within {self.timeout:g} s")
                raise ChipConnectionError(
                    f"the chip at {self.address} did not answer {what} within "
                    f"{self.timeout:g} s; check that it is running and not stalled, or "
                    "allow more time (timeout)"
                ) from exc
            except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                cause = (
                    "it closed the connection"
                    if isinstance(exc, asyncio.IncompleteReadError)
                    else (f"{type(exc).__name__}: {exc}")
                )
                self._break(f"connection lost during {what}")
                raise ChipConnectionError(
                    f"lost the connection to the chip at {self.address} during {what} "
                    f"({cause}); check that the chip (or emulator) is still running"
                ) from exc
            except ProtocolViolation as exc:
                self._break(f"a reply to {what} broke the protocol")
                raise ProtocolError(
                    f"the chip at {self.address} answered {what} with bytes that break the "
                    f"protocol: {exc}"
                ) from exc
            except BaseException:
                # cancelled mid-request: a late reply would answer the next request
                self._break(f"{what} was cancelled before its reply")
                raise
        if isinstance(reply, ErrorReply) and header.request_id in (request_id, 0):
            if header.request_id == 0:
                self._break(f"the chip closed the connection after refusing {what}")
            raise ChipError(
                f"the chip at {self.address} refused {what}: {reply.message} "
                f"(status {_status_name(reply.status)})",
                int(reply.status),
            )
        if header.request_id != request_id:
            self._break(f"a reply to {what} had the wrong request id")
            raise ProtocolError(
                f"the chip at {self.address} answered {what} (request {request_id}) with "
                f"request id {header.request_id}; the replies are out of step"
            )
        if not isinstance(reply, expected):
            self._break(f"{what} got a {type(reply).__name__}")
            raise ProtocolError(
                f"the chip at {self.address} answered {what} with a {type(reply).__name__}, "
                f"not a {expected.__name__}"
            )
        return reply

    def _check_tile(self, got: int, sent: int, what: str) -> None:
        if got != sent:
            self._break(f"its {what} reply named tile {got}")
            raise ProtocolError(
                f"the chip at {self.address} answered {what} for tile {got}; the reply "
                "must name the tile of the request"
            )

    def _break(self, reason: str) -> None:
        """The stream cannot be trusted any more: close it, remember why."""
        if self._broken is None:
            self._broken = reason
        self._writer.close()


def _status_name(status: int) -> str:
    try:
        return f"{int(status)} {Status(status).name}"
    except ValueError:
        return str(int(status))
