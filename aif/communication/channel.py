"""Unicast channels: an output port's writer to an input port's reader, over ZeroMQ.

A channel has two lanes, and each lane is its own pair of sockets, so that a signal
never queues behind data::

    ChannelWriter                                   ChannelReader
      normal lane  PUSH (connect) ──records, EOS──►  PULL (bind)  ┐ recv(): the high lane
      high lane    PUSH (connect) ──uint16 codes──►  PULL (bind)  ┘ is always served first

The reader binds (one reader per input port; any number of writers may connect) to
fresh addresses from ``aif.communication.addresses``, the writers connect. Frames are
laid out by ``aif.communication.codec``. Each writer ends its stream with one
``EndOfStream``, so a reader fed by three writers sees three.

Flow control: both ends of the normal lane hold at most ``queue_size`` messages
(ZeroMQ high-water marks). When they are full, ``send`` waits; nothing is ever dropped
by a writer. The reader drops only what it cannot decode or what is over its size
limit, counting it in ``dropped`` and logging it on ``aif.channel``; it never raises
for a peer's bad frames.

Secure runs (``curve``): a ``tcp`` reader serves both lanes as a CURVE server with the
run's key pair, and its context's ``Gatekeeper`` lets in only that pair's public key
in the run's ZAP domain; a writer to a ``tcp`` reader connects as a CURVE client with
the same pair. So only the run's own AIMs reach its channels, and records cross the
network encrypted. inproc and ipc channels never leave the host and stay plain.

Hot path: both ends call ZeroMQ without blocking, on plain sockets that shadow the
asyncio ones, so a message costs no future and no event-loop round trip. Only a call
that would block waits, on the sockets' file descriptors (registered with the loop once
per channel, by ``aif.communication.socket_wait``). A reader tries the high lane, then
the normal lane, on every call. Both ends yield to the loop every ``YIELD_EVERY``
messages so a steady stream cannot starve other tasks. Array buffers are sent
zero-copy: a value that was sent is handed over, do not modify it afterwards. Readers
and writers belong to one event loop (not threads).

Large arrays on ``ipc``: an array of ``SHM_MIN_BYTES`` or more is copied once into a
shared-memory segment and the message carries its handle; the reader's array is a view
of that segment (no copy). ``aif.communication.shm`` says who removes segments when, a
reader, a writer or both die. ``tcp`` and ``inproc`` never use it (``inproc`` already
hands over the very memory).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import zmq
import zmq.asyncio

from aif.communication import codec
from aif.communication.addresses import MAX_IPC_PATH as MAX_IPC_PATH
from aif.communication.addresses import SCHEMES, Transport, bind, new_address
from aif.communication.limits import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_QUEUE_SIZE, HIGH_LANE_QUEUE
from aif.communication.ports import EndOfStream, Record, Signal
from aif.communication.shm import ReaderSegments, WriterSegments
from aif.communication.socket_wait import Waker
from aif.errors import ChannelClosed, ChannelError, MalformedMessage, MessageTooLarge
from aif.security.curve import CurveKeys, Gatekeeper, curve_client, curve_server

if TYPE_CHECKING:
    from aif.communication.types import RecordType

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_QUEUE_SIZE",
    "ChannelEndpoints",
    "ChannelReader",
    "ChannelWriter",
    "Transport",
    "bind",
    "new_address",
]

#: A reader or writer that never has to wait still yields to the event loop this often,
#: so that a steady stream cannot starve the loop's other tasks (heartbeats, signals).
YIELD_EVERY = 64
#: Frames from this size on are sent zero-copy; smaller ones are cheaper to copy than to
#: track until ZeroMQ releases them (measured: docs/benchmarks.md).
ZERO_COPY_FROM = 64 * 1024

log = logging.getLogger("aif.channel")


@dataclass(frozen=True, slots=True)
class ChannelEndpoints:
    """Where a reader listens: one ZeroMQ address per lane."""

    normal: str
    high: str

    def to_dict(self) -> dict[str, str]:
        """A msgpack-friendly map (the controller sends it to the writer's side)."""
        return {"normal": self.normal, "high": self.high}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelEndpoints:
        """The inverse of ``to_dict``; raises ``ChannelError`` naming the bad field."""
        if not isinstance(data, Mapping):
            raise ChannelError(f"channel endpoints must be a map, got {type(data).__name__}")
        values = []
        for lane in ("normal", "high"):
            address = data.get(lane)
            if not isinstance(address, str) or not address.startswith(SCHEMES):
                raise ChannelError(
                    f"channel endpoints field {lane!r} must be an inproc://, ipc:// or tcp:// "
                    f"address, got {address!r}"
                )
            values.append(address)
        return cls(normal=values[0], high=values[1])


class ChannelReader:
    """The receiving end of every channel into one input port."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        port: str,
        transport: Transport,
        *,
        ipc_dir: Path | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        tcp_host: str = "127.0.0.1",
        curve: CurveKeys | None = None,
    ) -> None:
        """``tcp_host``: the interface a ``tcp`` reader binds (a remote writer must reach it).

        ``curve``: a secure run's channel keys; a ``tcp`` reader then serves CURVE.
        """
        if queue_size < 1:
            raise ChannelError(f"port {port!r}: queue_size must be at least 1, got {queue_size}")
        self.port = port
        self.queue_size = queue_size
        self.max_message_size = max_message_size
        #: Messages received but not delivered: malformed, oversized, or of unknown kind.
        self.dropped = 0
        self._closed = False
        self._streak = 0
        self._own_dir: Path | None = None
        self._sockets: list[zmq.asyncio.Socket] = []
        #: The CURVE domain this reader holds open in its context's Gatekeeper.
        self._domain: tuple[Gatekeeper, str] | None = None
        self._curve = curve if transport == "tcp" else None
        if self._curve is not None:
            keeper = Gatekeeper.of(ctx)
            keeper.allow(self._curve.domain, {"run": self._curve.pair.public})
            self._domain = (keeper, self._curve.domain)
        if transport == "ipc" and ipc_dir is None:
            self._own_dir = ipc_dir = Path(tempfile.mkdtemp(prefix="aif-"))
        uid = uuid.uuid4().hex
        # inproc names carry the port for debugging; ipc paths stay short (107-byte limit).
        base = f"{uid}-{port}" if transport == "inproc" else uid[:12]
        try:
            high = self._socket(ctx, HIGH_LANE_QUEUE)
            normal = self._socket(ctx, queue_size)
            self.endpoints = ChannelEndpoints(
                normal=bind(normal, new_address(transport, f"{base}-n", ipc_dir, tcp_host)),
                high=bind(high, new_address(transport, f"{base}-h", ipc_dir, tcp_host)),
            )
        except BaseException:
            self.close()
            raise
        # Plain sockets over the same ZeroMQ handles: non-blocking calls without futures.
        self._high: zmq.Socket[Any] = zmq.Socket.shadow(high.underlying)
        self._normal: zmq.Socket[Any] = zmq.Socket.shadow(normal.underlying)
        self._waker = Waker(self._high, self._normal)
        #: Large arrays from writers on this host arrive in shared memory (ipc only).
        self._segments = (
            ReaderSegments.for_address(self.endpoints.normal) if transport == "ipc" else None
        )

    def _socket(self, ctx: zmq.asyncio.Context, hwm: int) -> zmq.asyncio.Socket:
        sock = ctx.socket(zmq.PULL)
        self._sockets.append(sock)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        if self._curve is not None:
            pair = self._curve.pair
            curve_server(sock, pair.secret, pair.public, self._curve.domain)
        # No ZMQ_MAXMSGSIZE: ZeroMQ would disconnect the writer on an oversized frame, the
        # writer would reconnect and resend it, and the channel would stall without a word.
        # Oversized messages are counted and logged after they arrive instead.
        return sock

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ChannelReader port={self.port!r} {self.endpoints.normal} {state}>"

    async def recv(self) -> Record | Signal | EndOfStream:
        """The next event: a waiting signal first, else the next record or end of stream.

        Raises ``ChannelClosed`` when the reader is closed before or while waiting.
        """
        high, normal = self._high, self._normal
        self._streak += 1
        if self._streak >= YIELD_EVERY:  # before receiving: a cancel here loses nothing
            self._streak = 0
            await asyncio.sleep(0)
        while True:
            if self._closed:
                raise ChannelClosed(f"port {self.port!r}: the channel reader is closed")
            try:
                # Asking for EVENTS costs half a recv that raises Again, and a signal is rare.
                frames: list[Any] | None = (
                    high.recv_multipart(zmq.NOBLOCK)
                    if cast(int, high.get(zmq.EVENTS)) & zmq.POLLIN
                    else None
                )
            except zmq.Again:
                frames = None
            except zmq.ZMQError as exc:
                raise ChannelClosed(f"port {self.port!r}: high lane failed: {exc}") from exc
            if frames is not None:
                signal = self._signal(frames)
                if signal is not None:
                    return signal
                continue
            try:
                # The header is small: as bytes. The rest may be big: as zero-copy frames.
                frames = [normal.recv(zmq.NOBLOCK)]
                while normal.getsockopt(zmq.RCVMORE):
                    frames.append(normal.recv(copy=False))
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:
                raise ChannelClosed(f"port {self.port!r}: normal lane failed: {exc}") from exc
            else:
                event = self._event(frames)
                if event is not None:
                    return event
                continue
            self._streak = 0
            await self._waker.wait()

    def _signal(self, frames: list[Any]) -> Signal | None:
        if len(frames) != 1:
            self._drop("high", f"a signal is 1 frame, got {len(frames)}")
            return None
        try:
            return Signal(codec.decode_signal(frames[0]), self.port)
        except MalformedMessage as exc:
            self._drop("high", str(exc))
            return None

    def _event(self, frames: list[Any]) -> Record | EndOfStream | None:
        size = codec.message_size(frames)
        if size > self.max_message_size:
            self._drop(
                "normal", f"message of {size} bytes is over the limit of {self.max_message_size}"
            )
            return None
        try:
            message = codec.decode(frames, self._segments, self.max_message_size - size)
        except MalformedMessage as exc:
            self._drop("normal", str(exc))
            return None
        if message.kind == codec.KIND_RECORD:
            return Record(self.port, message.value)
        if message.kind == codec.KIND_EOS:
            return EndOfStream(self.port)
        self._drop("normal", f"unknown message kind {message.kind!r}")
        return None

    def _drop(self, lane: str, reason: str) -> None:
        self.dropped += 1
        log.warning("port %r: dropped a message on the %s lane: %s", self.port, lane, reason)

    def close(self) -> None:
        """Close both lanes (queued messages are discarded) and remove an own ipc dir.

        A ``recv`` waiting at that moment raises ``ChannelClosed``.
        """
        if self._closed:
            return
        self._closed = True
        waker: Waker | None = getattr(self, "_waker", None)
        if waker is not None:
            waker.unregister()
            waker.fail(ChannelClosed(f"port {self.port!r}: the channel reader was closed"))
        for sock in self._sockets:
            sock.close(linger=0)
        if self._domain is not None:
            keeper, domain = self._domain
            keeper.forget(domain)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
        segments: ReaderSegments | None = getattr(self, "_segments", None)
        if segments is not None:
            segments.close()


class ChannelWriter:
    """The sending end of one connection: an output port to one input port's reader."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        port: str,
        endpoints: ChannelEndpoints,
        *,
        record_type: RecordType | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        curve: CurveKeys | None = None,
    ) -> None:
        """``curve``: a secure run's channel keys; a ``tcp`` reader is dialled with CURVE."""
        if queue_size < 1:
            raise ChannelError(f"port {port!r}: queue_size must be at least 1, got {queue_size}")
        self.port = port
        self.endpoints = endpoints
        self._curve = curve
        self.record_type = record_type
        self.max_message_size = max_message_size
        self._path = f"port '{port}'"
        self._closed = False
        self._ended = False
        self._streak = 0
        self._sockets: list[zmq.asyncio.Socket] = []
        try:
            normal = self._socket(ctx, endpoints.normal, queue_size)
            high = self._socket(ctx, endpoints.high, HIGH_LANE_QUEUE)
        except BaseException:
            self.close(linger_ms=0)
            raise
        self._normal: zmq.Socket[Any] = zmq.Socket.shadow(normal.underlying)
        self._high: zmq.Socket[Any] = zmq.Socket.shadow(high.underlying)
        self._normal_waker = Waker(self._normal)
        self._high_waker = Waker(self._high)
        #: Shared memory for large arrays when the reader is on this host (ipc).
        self._segments = WriterSegments.for_address(endpoints.normal)

    def _socket(self, ctx: zmq.asyncio.Context, address: str, hwm: int) -> zmq.asyncio.Socket:
        sock = ctx.socket(zmq.PUSH)
        self._sockets.append(sock)
        sock.setsockopt(zmq.SNDHWM, hwm)
        if self._curve is not None and address.startswith("tcp://"):
            pair = self._curve.pair
            curve_client(sock, pair.public, pair.secret, pair.public)
        try:
            sock.connect(address)
        except zmq.ZMQError as exc:
            raise ChannelError(f"{self._path}: cannot connect to {address}: {exc}") from exc
        return sock

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ChannelWriter port={self.port!r} -> {self.endpoints.normal} {state}>"

    async def send(self, value: Any) -> None:
        """Send one record; waits while the channel is full (backpressure, never drops).

        Raises ``PortTypeError`` when the value does not fit the port's type,
        ``WireError`` when it cannot be encoded, ``MessageTooLarge`` when it is over the
        size limit; nothing is sent in those cases.
        """
        if self._closed or self._ended:
            self._refuse("send")
        if self.record_type is not None:
            self.record_type.check(value, path=self._path)
        if self._segments is None:
            frames = codec.encode(value)
            self._check_size(codec.message_size(frames))
            await self._send(self._normal, self._normal_waker, frames)
            return
        batch = self._segments.batch()
        try:
            frames = codec.encode(value, segments=batch)
            self._check_size(codec.message_size(frames) + batch.nbytes)
            await self._send(self._normal, self._normal_waker, frames)
        except BaseException:
            batch.discard()  # not sent: its segments are free again
            raise

    def _check_size(self, size: int) -> None:
        if size > self.max_message_size:
            raise MessageTooLarge(
                f"{self._path}: a message of {size} bytes is over the channel's limit of "
                f"{self.max_message_size} bytes; raise max_message_size on the connection "
                "or split the data into smaller records"
            )

    async def send_signal(self, code: int) -> None:
        """Send a uint16 code on the high lane; it overtakes any queued records."""
        if self._closed:
            self._refuse("send_signal")
        await self._send(self._high, self._high_waker, [codec.encode_signal(code)])

    async def send_eos(self) -> None:
        """Tell the reader that no more records come from this writer."""
        if self._closed or self._ended:
            self._refuse("send_eos")
        self._ended = True
        await self._send(self._normal, self._normal_waker, codec.encode(None, codec.KIND_EOS))

    async def _send(self, sock: zmq.Socket[Any], waker: Waker, frames: list[Any]) -> None:
        """Send a whole message; waits (never drops) while the queue is full.

        Only the first frame can meet a full queue: ZeroMQ admits a multipart message
        whole once its first frame is in, so the rest go out without waiting. Small
        frames are copied (cheaper than tracking them); large ones go zero-copy.
        """
        last = len(frames) - 1
        flags = zmq.NOBLOCK | zmq.SNDMORE if last else zmq.NOBLOCK
        self._streak += 1
        if self._streak >= YIELD_EVERY:  # before sending: a cancel here loses nothing
            self._streak = 0
            await asyncio.sleep(0)
        if waker.waiting:  # earlier senders are waiting for room: queue up behind them
            await waker.wait()
        try:
            while True:
                if self._closed:
                    self._refuse("send")
                try:
                    sock.send(frames[0], flags)
                    break
                except zmq.Again:
                    self._streak = 0
                    await waker.wait()
            for index in range(1, last + 1):
                frame = frames[index]
                more = zmq.SNDMORE if index < last else 0
                sock.send(frame, more, copy=len(frame) < ZERO_COPY_FROM)
        except zmq.ZMQError as exc:
            raise ChannelClosed(f"{self._path}: sending failed: {exc}") from exc

    def _refuse(self, what: str) -> None:
        if self._closed:
            raise ChannelClosed(f"{self._path}: {what}() on a closed channel writer")
        raise ChannelError(f"{self._path}: {what}() after send_eos(); open a new writer")

    def close(self, linger_ms: int = 1000) -> None:
        """Close both lanes, giving queued messages up to ``linger_ms`` to leave.

        A ``send`` waiting for room at that moment raises ``ChannelClosed``.
        """
        if self._closed:
            return
        self._closed = True
        for name in ("_normal_waker", "_high_waker"):
            waker: Waker | None = getattr(self, name, None)
            if waker is not None:
                waker.unregister()
                waker.fail(ChannelClosed(f"{self._path}: the channel writer was closed"))
        for sock in self._sockets:
            sock.close(linger=linger_ms)
        segments: WriterSegments | None = getattr(self, "_segments", None)
        if segments is not None:
            segments.close()
