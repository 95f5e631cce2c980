"""The IMC chip wire protocol, version 1: the only module that knows the byte layout.

A plain TCP byte stream (an FPGA or a lab board can speak it without ZeroMQ). Each
message is a 16-byte header followed by ``length`` bytes of payload, everything
little-endian::

    offset size  field
    0      4     magic       b"AIMC"
    4      2     u16 version 1
    6      2     u16 opcode  request 0x01..0x06, its reply = request | 0x80, ERROR = 0xFF
    8      4     u32 request id (chosen by the client; the reply echoes it)
    12     4     u32 length  payload bytes that follow (at most MAX_PAYLOAD = 64 MiB)

Payload rule (MPAI-AIF 3.3): the fixed-size fields first, in order, with no padding;
then each vector as a u32 element count followed by its elements (``f32`` = IEEE-754
float32 LE, ``u8`` = bytes of UTF-8 text). Offsets below are within the payload::

    0x01 INFO request      (empty)
    0x81 INFO reply        0  u16 version    2  u16 tiles      4  u16 rows     6  u16 cols
                           8  u8  dac_bits   9  u8  adc_bits  10  u16 reserved (0)
                           12 f64 g_max (uS) 20 f64 out_bound 28  f64 clock (s)
                           36 u32 n, 40 n x u8 name (UTF-8)
    0x02 PROGRAM request   0  u16 tile       2  u8 kind (0 WEIGHTS, 1 CONDUCTANCES)
                           3  u8 reserved    4  u32 rows_used  8  u32 cols_used
                           12 u32 n, 16 n x f32 data: WEIGHTS n = rows*cols, row-major;
                              CONDUCTANCES n = 2*rows*cols, the G+ block then the G- block
    0x82 PROGRAM reply     0  u16 tile  2 u16 reserved  4 u32 rows_used  8 u32 cols_used
                           12 f64 clock (programming time on the chip clock)
    0x03 READ request      0  u16 tile
    0x83 READ reply        0  u16 tile  2 u16 reserved  4 u32 rows_used  8 u32 cols_used
                           12 f64 clock; 20 u32 n, 24 n x f32 g_plus (uS, row-major);
                           then u32 n, n x f32 g_minus      (n = rows_used*cols_used)
    0x04 MVM request       0  u16 tile  2 u16 reserved  4 u32 batch  8 u32 n_in
                           12 u32 n, 16 n x f32 inputs  (n = batch*n_in, row-major)
    0x84 MVM reply         0  u16 tile  2 u16 reserved  4 u32 batch  8 u32 n_out
                           12 u32 n, 16 n x f32 outputs (n = batch*n_out, row-major)
    0x05 WAIT request      0  f64 seconds
    0x85 WAIT reply        0  f64 clock (after the wait)
    0x06 RESET request     0  u16 tile (ALL_TILES = 0xFFFF: every tile)
    0x86 RESET reply       0  u16 tiles_reset
    0xFF ERROR reply       0  u16 status  2 u16 reserved  4 u32 n, 8 n x u8 message (UTF-8)

Every f32 vector starts at a payload offset that is a multiple of 4, so ``decode``
returns read-only ``numpy.frombuffer`` views of the payload (no copy). Reserved fields
are written as 0 and ignored when read. A tile is rows x cols with rows = outputs and
cols = inputs (aihwkit's out x in).

Errors: everything that does not decode raises ``ProtocolViolation`` (a
``ProtocolError``) whose message names the message and the field, with ``status`` (the
``Status`` an ERROR reply carries) and ``fatal``: True when the stream can no longer be
trusted (bad magic, a length over MAX_PAYLOAD), so the receiver must close the
connection; False when the payload was consumed whole and the next message can be read.
A chip reads with ``read_request`` (``decode_request``), which also refuses a reply or
ERROR opcode as UNKNOWN_OPCODE; a host reads replies with ``read_message``.
``docs/imc-protocol.md`` is the same layout written for the chip's implementer.
The messages themselves, and what each one means, are in ``messages.py``.
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from aif.aims.analog.imc_chip.messages import (
    PROTOCOL_VERSION,
    REPLY_FLAG,
    ErrorReply,
    Floats,
    InfoReply,
    InfoRequest,
    Kind,
    Message,
    MvmReply,
    MvmRequest,
    Opcode,
    ProgramReply,
    ProgramRequest,
    ReadReply,
    ReadRequest,
    Reply,
    Request,
    ResetReply,
    ResetRequest,
    Status,
    WaitReply,
    WaitRequest,
)
from aif.errors import ProtocolError

__all__ = [
    "HEADER",
    "MAGIC",
    "MAX_PAYLOAD",
    "Header",
    "ProtocolViolation",
    "decode",
    "decode_request",
    "encode",
    "parse_header",
    "read_message",
    "read_request",
    "split_address",
]

_ADDRESS = re.compile(
    r"tcp://(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:/\[\]]+)):(?P<port>\d{1,5})"
)


def split_address(text: str) -> tuple[str, int] | None:
    """``tcp://HOST:PORT`` (``tcp://[::1]:PORT`` for IPv6) as ``(HOST, PORT)``; None if not.

    The port is not range-checked: a client needs 1..65535, a server may ask for 0.
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None:
        return None
    return match["v6"] or match["host"], int(match["port"])


MAGIC: Final = b"AIMC"
HEADER: Final = struct.Struct("<4sHHII")
#: Largest payload either side accepts; a longer length field desynchronises the stream.
MAX_PAYLOAD: Final = 64 * 1024 * 1024


class ProtocolViolation(ProtocolError):
    """Bytes that break the protocol: ``status`` for the ERROR reply, ``fatal`` if desynced.

    ``request_id`` is the id of the offending message, which the ERROR reply echoes; it
    is 0 for a fatal violation, whose header cannot be trusted.
    """

    def __init__(
        self, message: str, status: Status, *, fatal: bool = False, request_id: int = 0
    ) -> None:
        self.status = status
        self.fatal = fatal
        self.request_id = request_id
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded header; ``opcode`` and ``version`` are raw, checked by ``decode``."""

    version: int
    opcode: int
    request_id: int
    length: int


_INFO = struct.Struct("<HHHHBBHddd")
_PROGRAM = struct.Struct("<HBBII")
_SHAPED = struct.Struct("<HHII")  # tile, reserved, and two u32 sizes: MVM both ways
_PROGRAMMED = struct.Struct("<HHIId")  # PROGRAM and READ replies
_TILE = struct.Struct("<H")
_F64 = struct.Struct("<d")
_ERROR = struct.Struct("<HH")
_COUNT = struct.Struct("<I")


# --- encoding -------------------------------------------------------------------------


def encode(message: Message, request_id: int) -> bytes:
    """Header + payload of ``message``; ``ProtocolError`` names a field that cannot be sent."""
    what = message.label
    _check_uint(what, "request id", request_id, 32)
    parts = _payload(message, what)
    length = sum(len(memoryview(p).cast("B")) for p in parts)
    if length > MAX_PAYLOAD:
        raise ProtocolError(
            f"{what}: payload of {length} bytes is over MAX_PAYLOAD ({MAX_PAYLOAD}); "
            "send fewer vectors per request"
        )
    header = HEADER.pack(MAGIC, PROTOCOL_VERSION, message.opcode, request_id, length)
    return b"".join([header, *parts])


def _payload(message: Message, what: str) -> list[bytes | memoryview]:
    if isinstance(message, InfoRequest):
        return []
    if isinstance(message, InfoReply):
        for field, bits in (
            ("version", 16),
            ("tiles", 16),
            ("rows", 16),
            ("cols", 16),
            ("dac_bits", 8),
            ("adc_bits", 8),
        ):
            _check_uint(what, field, getattr(message, field), bits)
        fixed = _INFO.pack(
            message.version,
            message.tiles,
            message.rows,
            message.cols,
            message.dac_bits,
            message.adc_bits,
            0,
            _float(what, "g_max", message.g_max),
            _float(what, "out_bound", message.out_bound),
            _float(what, "clock", message.clock),
        )
        return [fixed, *_text(what, "name", message.name)]
    if isinstance(message, ProgramRequest):
        _check_uint(what, "tile", message.tile, 16)
        kind = _kind(what, message.kind)
        data = _floats(what, "data", message.data, 2 if kind is Kind.WEIGHTS else 3)
        if kind is Kind.CONDUCTANCES and data.shape[0] != 2:
            raise ProtocolError(
                f"{what}: data for CONDUCTANCES has shape {data.shape}; "
                "it must be (2, rows, cols): G+ then G-"
            )
        rows, cols = data.shape[-2:]
        _check_uint(what, "rows_used", rows, 32)
        _check_uint(what, "cols_used", cols, 32)
        return [_PROGRAM.pack(message.tile, kind, 0, rows, cols), *_vector(data)]
    if isinstance(message, ProgramReply):
        _check_uint(what, "tile", message.tile, 16)
        _check_uint(what, "rows_used", message.rows_used, 32)
        _check_uint(what, "cols_used", message.cols_used, 32)
        clock = _float(what, "clock", message.clock)
        return [_PROGRAMMED.pack(message.tile, 0, message.rows_used, message.cols_used, clock)]
    if isinstance(message, ReadRequest | ResetRequest):
        _check_uint(what, "tile", message.tile, 16)
        return [_TILE.pack(message.tile)]
    if isinstance(message, ReadReply):
        _check_uint(what, "tile", message.tile, 16)
        g_plus = _floats(what, "g_plus", message.g_plus, 2)
        g_minus = _floats(what, "g_minus", message.g_minus, 2)
        if g_plus.shape != g_minus.shape:
            raise ProtocolError(
                f"{what}: g_plus has shape {g_plus.shape} but g_minus {g_minus.shape}; "
                "both must be (rows_used, cols_used)"
            )
        rows, cols = g_plus.shape
        _check_uint(what, "rows_used", rows, 32)
        _check_uint(what, "cols_used", cols, 32)
        fixed = _PROGRAMMED.pack(message.tile, 0, rows, cols, _float(what, "clock", message.clock))
        return [fixed, *_vector(g_plus), *_vector(g_minus)]
    if isinstance(message, MvmRequest | MvmReply):
        field = "inputs" if isinstance(message, MvmRequest) else "outputs"
        _check_uint(what, "tile", message.tile, 16)
        values = _floats(what, field, getattr(message, field), 2)
        batch, width = values.shape
        _check_uint(what, "batch", batch, 32)
        _check_uint(what, "n_in" if field == "inputs" else "n_out", width, 32)
        return [_SHAPED.pack(message.tile, 0, batch, width), *_vector(values)]
    if isinstance(message, WaitRequest):
        return [_F64.pack(_float(what, "seconds", message.seconds))]
    if isinstance(message, WaitReply):
        return [_F64.pack(_float(what, "clock", message.clock))]
    if isinstance(message, ResetReply):
        _check_uint(what, "tiles_reset", message.tiles_reset, 16)
        return [_TILE.pack(message.tiles_reset)]
    if isinstance(message, ErrorReply):
        _check_uint(what, "status", message.status, 16)
        return [_ERROR.pack(message.status, 0), *_text(what, "message", message.message)]
    raise ProtocolError(f"cannot encode {type(message).__name__}: it is not a protocol message")


def _check_uint(what: str, field: str, value: object, bits: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ProtocolError(f"{what}: {field} must be an integer, got {type(value).__name__}")
    if not 0 <= int(value) < 1 << bits:
        raise ProtocolError(
            f"{what}: {field} = {value} does not fit an unsigned {bits}-bit field "
            f"(0..{(1 << bits) - 1})"
        )


def _float(what: str, field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ProtocolError(f"{what}: {field} must be a number, got {type(value).__name__}")
    return float(value)


def _kind(what: str, value: object) -> Kind:
    try:
        return Kind(value)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ProtocolError(
            f"{what}: kind {value!r} is not 0 (WEIGHTS) or 1 (CONDUCTANCES)"
        ) from exc


def _floats(what: str, field: str, value: object, ndim: int) -> Floats:
    if not isinstance(value, np.ndarray):
        raise ProtocolError(
            f"{what}: {field} must be a numpy float array, got {type(value).__name__}"
        )
    if value.dtype.kind != "f":
        raise ProtocolError(
            f"{what}: {field} has dtype {value.dtype}; send floats (they travel as float32)"
        )
    if value.ndim != ndim:
        raise ProtocolError(
            f"{what}: {field} has {value.ndim} dimensions (shape {value.shape}); "
            f"it must have {ndim}"
        )
    return np.ascontiguousarray(value, dtype="<f4")


def _vector(values: Floats) -> list[bytes | memoryview]:
    body = values.reshape(-1).data.cast("B") if values.size else b""
    return [_COUNT.pack(values.size), body]


def _text(what: str, field: str, value: object) -> list[bytes | memoryview]:
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: {field} must be a str, got {type(value).__name__}")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError(
            f"{what}: {field} cannot be written as UTF-8 ({exc.reason} at character {exc.start})"
        ) from exc
    return [_COUNT.pack(len(data)), data]


# --- decoding -------------------------------------------------------------------------


def parse_header(data: bytes) -> Header:
    """Decode the 16 header bytes; a bad magic or an over-long length is fatal."""
    if len(data) != HEADER.size:
        raise ProtocolViolation(
            f"header: got {len(data)} bytes, a header is {HEADER.size}",
            Status.MALFORMED,
            fatal=True,
        )
    magic, version, opcode, request_id, length = HEADER.unpack(data)
    if magic != MAGIC:
        raise ProtocolViolation(
            f"header: magic is {magic!r}, expected {MAGIC!r}; the stream is out of step "
            "(not this protocol, or a previous message was sent with a wrong length)",
            Status.MALFORMED,
            fatal=True,
        )
    if length > MAX_PAYLOAD:
        raise ProtocolViolation(
            f"header: payload length {length} is over MAX_PAYLOAD ({MAX_PAYLOAD}); "
            "send fewer vectors per request",
            Status.TOO_LARGE,
            fatal=True,
        )
    return Header(version, opcode, request_id, length)


class _Reader:
    """Walks one payload, naming the message and field in every fault."""

    def __init__(self, what: str, data: bytes, request_id: int) -> None:
        self.what = what
        self.data = data
        self.offset = 0
        self.request_id = request_id

    def fail(self, text: str, status: Status = Status.MALFORMED) -> ProtocolViolation:
        return ProtocolViolation(f"{self.what}: {text}", status, request_id=self.request_id)

    def fixed(self, layout: struct.Struct, names: str) -> tuple[Any, ...]:
        left = len(self.data) - self.offset
        if left < layout.size:
            raise self.fail(
                f"payload is too short: {left} bytes left, the fields {names} need {layout.size}"
            )
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return values

    def count(self, field: str) -> int:
        (n,) = self.fixed(_COUNT, f"{field} (u32 count)")
        return int(n)

    def floats(self, field: str, expected: int, rule: str) -> Floats:
        n = self.count(field)
        if n != expected:
            raise self.fail(f"{field} has {n} values, {rule} = {expected}")
        left = len(self.data) - self.offset
        if left < 4 * n:
            raise self.fail(f"{field} has {n} values ({4 * n} bytes) but {left} bytes follow")
        values = np.frombuffer(self.data, dtype="<f4", count=n, offset=self.offset)
        self.offset += 4 * n
        return values

    def text(self, field: str) -> str:
        n = self.count(field)
        left = len(self.data) - self.offset
        if left < n:
            raise self.fail(f"{field} has {n} bytes but {left} bytes follow")
        raw = self.data[self.offset : self.offset + n]
        self.offset += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(
                f"{field} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
            ) from exc

    def end(self) -> None:
        extra = len(self.data) - self.offset
        if extra:
            raise self.fail(
                f"{extra} trailing bytes after the last field (payload {len(self.data)} bytes, "
                f"the fields take {self.offset})"
            )


_NAMES: Final = {
    op: name
    for op, name in (
        (Opcode.INFO, "INFO"),
        (Opcode.PROGRAM, "PROGRAM"),
        (Opcode.READ, "READ"),
        (Opcode.MVM, "MVM"),
        (Opcode.WAIT, "WAIT"),
        (Opcode.RESET, "RESET"),
    )
}


def decode(header: Header, payload: bytes) -> Message:
    """The message in ``payload``; ``ProtocolViolation`` (never fatal) names the field."""
    rid = header.request_id
    if header.version != PROTOCOL_VERSION:
        raise ProtocolViolation(
            f"header: version {header.version} is not supported; this side speaks version "
            f"{PROTOCOL_VERSION}",
            Status.UNSUPPORTED_VERSION,
            request_id=rid,
        )
    if len(payload) != header.length:
        raise ProtocolViolation(
            f"header: length says {header.length} bytes but the payload has {len(payload)}",
            Status.MALFORMED,
            request_id=rid,
        )
    opcode = header.opcode
    if opcode == Opcode.ERROR:
        r = _Reader("ERROR reply", payload, rid)
        status, _ = r.fixed(_ERROR, "status, reserved")
        text = r.text("message")
        r.end()
        known = status in Status._value2member_map_
        return ErrorReply(Status(status) if known else status, text)
    base = opcode & ~REPLY_FLAG
    if base not in _NAMES:
        raise ProtocolViolation(
            f"header: opcode 0x{opcode:02X} is unknown; requests are 0x01..0x06 "
            "(INFO, PROGRAM, READ, MVM, WAIT, RESET), replies set 0x80, ERROR is 0xFF",
            Status.UNKNOWN_OPCODE,
            request_id=rid,
        )
    is_reply = bool(opcode & REPLY_FLAG)
    r = _Reader(f"{_NAMES[Opcode(base)]} {'reply' if is_reply else 'request'}", payload, rid)
    message = _DECODERS[opcode](r)
    r.end()
    return message


def _info_request(r: _Reader) -> Message:
    return InfoRequest()


def _info_reply(r: _Reader) -> Message:
    version, tiles, rows, cols, dac, adc, _, g_max, out_bound, clock = r.fixed(
        _INFO, "version .. clock"
    )
    return InfoReply(version, tiles, rows, cols, dac, adc, g_max, out_bound, clock, r.text("name"))


def _program_request(r: _Reader) -> Message:
    tile, kind, _, rows, cols = r.fixed(_PROGRAM, "tile, kind, reserved, rows_used, cols_used")
    if kind not in Kind._value2member_map_:
        raise r.fail(f"kind {kind} is not 0 (WEIGHTS) or 1 (CONDUCTANCES)")
    data: Floats
    if kind == Kind.WEIGHTS:
        data = r.floats("data", rows * cols, "rows_used*cols_used").reshape(rows, cols)
    else:
        data = r.floats("data", 2 * rows * cols, "2*rows_used*cols_used").reshape(2, rows, cols)
    return ProgramRequest(tile, Kind(kind), data)


def _program_reply(r: _Reader) -> Message:
    tile, _, rows, cols, clock = r.fixed(_PROGRAMMED, "tile, reserved, rows_used, cols_used, clock")
    return ProgramReply(tile, rows, cols, clock)


def _read_request(r: _Reader) -> Message:
    (tile,) = r.fixed(_TILE, "tile")
    return ReadRequest(tile)


def _read_reply(r: _Reader) -> Message:
    tile, _, rows, cols, clock = r.fixed(_PROGRAMMED, "tile, reserved, rows_used, cols_used, clock")
    g_plus = r.floats("g_plus", rows * cols, "rows_used*cols_used").reshape(rows, cols)
    g_minus = r.floats("g_minus", rows * cols, "rows_used*cols_used").reshape(rows, cols)
    return ReadReply(tile, clock, g_plus, g_minus)


def _mvm_request(r: _Reader) -> Message:
    tile, _, batch, n_in = r.fixed(_SHAPED, "tile, reserved, batch, n_in")
    inputs = r.floats("inputs", batch * n_in, "batch*n_in").reshape(batch, n_in)
    return MvmRequest(tile, inputs)


def _mvm_reply(r: _Reader) -> Message:
    tile, _, batch, n_out = r.fixed(_SHAPED, "tile, reserved, batch, n_out")
    outputs = r.floats("outputs", batch * n_out, "batch*n_out").reshape(batch, n_out)
    return MvmReply(tile, outputs)


def _wait_request(r: _Reader) -> Message:
    (seconds,) = r.fixed(_F64, "seconds")
    return WaitRequest(seconds)


def _wait_reply(r: _Reader) -> Message:
    (clock,) = r.fixed(_F64, "clock")
    return WaitReply(clock)


def _reset_request(r: _Reader) -> Message:
    (tile,) = r.fixed(_TILE, "tile")
    return ResetRequest(tile)


def _reset_reply(r: _Reader) -> Message:
    (count,) = r.fixed(_TILE, "tiles_reset")
    return ResetReply(count)


_DECODERS: Final = {
    Opcode.INFO: _info_request,
    Opcode.INFO | REPLY_FLAG: _info_reply,
    Opcode.PROGRAM: _program_request,
    Opcode.PROGRAM | REPLY_FLAG: _program_reply,
    Opcode.READ: _read_request,
    Opcode.READ | REPLY_FLAG: _read_reply,
    Opcode.MVM: _mvm_request,
    Opcode.MVM | REPLY_FLAG: _mvm_reply,
    Opcode.WAIT: _wait_request,
    Opcode.WAIT | REPLY_FLAG: _wait_reply,
    Opcode.RESET: _reset_request,
    Opcode.RESET | REPLY_FLAG: _reset_reply,
}


_REQUESTS: Final = frozenset(_NAMES)


def decode_request(header: Header, payload: bytes) -> Request:
    """What a chip decodes: like ``decode``, but any opcode that is not a request
    (a reply, ERROR, anything unknown) is UNKNOWN_OPCODE, whatever its payload."""
    opcode = header.opcode
    if header.version == PROTOCOL_VERSION and opcode not in _REQUESTS:
        base = opcode & ~REPLY_FLAG
        if opcode == Opcode.ERROR:
            what = "the ERROR reply"
        elif base in _NAMES:
            what = f"the {_NAMES[Opcode(base)]} reply"
        else:
            what = "unknown"
        raise ProtocolViolation(
            f"header: opcode 0x{opcode:02X} is {what}, not a request; a chip answers "
            "requests 0x01..0x06 (INFO, PROGRAM, READ, MVM, WAIT, RESET)",
            Status.UNKNOWN_OPCODE,
            request_id=header.request_id,
        )
    message = decode(header, payload)
    assert not isinstance(message, Reply), "decode returned a reply for a request opcode"
    return message


async def read_request(reader: asyncio.StreamReader) -> tuple[Header, Request]:
    """``read_message`` for the chip side: the message must be a request."""
    header = parse_header(await reader.readexactly(HEADER.size))
    payload = await reader.readexactly(header.length) if header.length else b""
    return header, decode_request(header, payload)


async def read_message(reader: asyncio.StreamReader) -> tuple[Header, Message]:
    """Read one whole message; ``asyncio.IncompleteReadError`` means the peer closed.

    A non-fatal ``ProtocolViolation`` leaves the stream at the next message (the whole
    payload was consumed); after a fatal one the caller must close the connection.
    """
    header = parse_header(await reader.readexactly(HEADER.size))
    payload = await reader.readexactly(header.length) if header.length else b""
    return header, decode(header, payload)
