"""The IMC chip wire protocol: every message round-trips, bad bytes are refused by field,
and hand-written golden bytes pin the layout that docs/imc-protocol.md draws."""

from __future__ import annotations

import asyncio
import struct

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aif.aims.analog.imc_chip import messages as m
from aif.aims.analog.imc_chip import protocol as p
from aif.errors import ProtocolError
from tests.helpers.chip_bytes import frame

# --- strategies -----------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
f64 = st.floats(allow_nan=True, allow_infinity=True)
side = st.integers(0, 5)


def floats(*shape: int) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, shape, elements=st.floats(width=32, allow_nan=True))


def matrices(lead: tuple[int, ...] = ()) -> st.SearchStrategy[np.ndarray]:
    return st.tuples(side, side).flatmap(lambda rc: floats(*lead, *rc))


def pair() -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    return st.tuples(side, side).flatmap(lambda rc: st.tuples(floats(*rc), floats(*rc)))


messages = st.one_of(
    st.just(m.InfoRequest()),
    st.builds(m.InfoReply, u16, u16, u16, u16, u8, u8, f64, f64, f64, st.text(max_size=40)),
    st.builds(m.ProgramRequest, u16, st.just(m.Kind.WEIGHTS), matrices()),
    st.builds(m.ProgramRequest, u16, st.just(m.Kind.CONDUCTANCES), matrices((2,))),
    st.builds(m.ProgramReply, u16, u32, u32, f64),
    st.builds(m.ReadRequest, u16),
    pair().flatmap(lambda gg: st.builds(m.ReadReply, u16, f64, st.just(gg[0]), st.just(gg[1]))),
    st.builds(m.MvmRequest, u16, matrices()),
    st.builds(m.MvmReply, u16, matrices()),
    st.builds(m.WaitRequest, f64),
    st.builds(m.WaitReply, f64),
    st.builds(m.ResetRequest, u16),
    st.builds(m.ResetReply, u16),
    st.builds(m.ErrorReply, st.sampled_from(list(m.Status)), st.text(max_size=40)),
)


def split(data: bytes) -> tuple[p.Header, bytes]:
    return p.parse_header(data[: p.HEADER.size]), data[p.HEADER.size :]


# --- round trip -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(messages, u32)
def test_every_message_round_trips_with_its_request_id(message: m.Message, rid: int) -> None:
    data = p.encode(message, rid)
    header, payload = split(data)
    assert header.request_id == rid
    assert header.version == m.PROTOCOL_VERSION
    assert header.opcode == message.opcode
    assert header.length == len(payload)
    decoded = p.decode(header, payload)
    assert decoded == message
    for value in vars_of(decoded):
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(messages, u32), min_size=1, max_size=4))
def test_read_message_takes_one_message_at_a_time_from_a_stream(
    sent: list[tuple[m.Message, int]],
) -> None:
    async def scenario() -> list[tuple[int, m.Message]]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"".join(p.encode(msg, rid) for msg, rid in sent))
        reader.feed_eof()
        got = []
        for _ in sent:
            header, message = await p.read_message(reader)
            got.append((header.request_id, message))
        with pytest.raises(asyncio.IncompleteReadError):
            await p.read_message(reader)
        return got

    got = asyncio.run(scenario())
    assert [(rid, msg) for msg, rid in sent] == got


def vars_of(message: m.Message) -> list[object]:
    return [getattr(message, name) for name in message.__dataclass_fields__]


def test_vectors_decode_as_read_only_views_of_the_payload() -> None:
    inputs = np.arange(12, dtype=np.float32).reshape(3, 4)
    header, payload = split(p.encode(m.MvmRequest(1, inputs), 9))
    message = p.decode(header, payload)
    assert isinstance(message, m.MvmRequest)
    assert message.inputs.base is not None  # a view, not a copy
    assert not message.inputs.flags.writeable
    assert message.inputs.shape == (3, 4)


def test_equality_compares_arrays_by_shape_and_value() -> None:
    a = m.MvmReply(0, np.zeros((2, 3), np.float32))
    assert a == m.MvmReply(0, np.zeros((2, 3), np.float32))
    assert a != m.MvmReply(0, np.zeros((3, 2), np.float32))
    assert a != m.MvmReply(1, np.zeros((2, 3), np.float32))
    assert a != m.MvmRequest(0, np.zeros((2, 3), np.float32))


def test_float64_arrays_are_sent_as_float32() -> None:
    message = m.MvmRequest(0, np.array([[0.1, 0.2]], dtype=np.float64))
    decoded = p.decode(*split(p.encode(message, 1)))
    assert isinstance(decoded, m.MvmRequest)
    assert decoded.inputs.tolist() == np.array([[0.1, 0.2]], np.float32).tolist()


# --- golden bytes: the layout of docs/imc-protocol.md, written out by hand -------------

GOLDEN = [
    pytest.param(
        m.InfoRequest(),
        7,
        "41494d43 0100 0100 07000000 00000000",
        id="info-request",
    ),
    pytest.param(
        m.InfoReply(1, 64, 256, 128, 8, 9, 25.0, 12.0, 0.5, "chip"),
        42,
        "41494d43 0100 8100 2a000000 2c000000"  # header: opcode 0x81, payload 44 bytes
        " 0100 4000 0001 8000 08 09 0000"  # version 1, 64 tiles, 256 rows, 128 cols, 8/9 bits
        " 0000000000003940"  # g_max 25.0
        " 0000000000002840"  # out_bound 12.0
        " 000000000000e03f"  # clock 0.5
        " 04000000 63686970",  # name: 4 bytes "chip"
        id="info-reply",
    ),
    pytest.param(
        m.MvmRequest(3, np.array([[1.0, -0.5, 0.25], [0.0, 2.0, -1.0]], np.float32)),
        1,
        "41494d43 0100 0400 01000000 28000000"  # opcode 0x04, payload 40 bytes
        " 0300 0000 02000000 03000000"  # tile 3, reserved, batch 2, n_in 3
        " 06000000"  # 6 values
        " 0000803f 000000bf 0000803e 00000000 00000040 000080bf",
        id="mvm-request",
    ),
    pytest.param(
        m.MvmReply(3, np.array([[0.5], [-2.0]], np.float32)),
        1,
        "41494d43 0100 8400 01000000 18000000"
        " 0300 0000 02000000 01000000 02000000 0000003f 000000c0",
        id="mvm-reply",
    ),
    pytest.param(
        m.ProgramRequest(2, m.Kind.CONDUCTANCES, np.array([[[25.0]], [[0.0]]], np.float32)),
        0xDEADBEEF,
        "41494d43 0100 0200 efbeadde 18000000"
        " 0200 01 00 01000000 01000000"  # tile 2, kind 1, reserved, 1 row, 1 col
        " 02000000 0000c841 00000000",  # 2 values: G+ 25.0, G- 0.0
        id="program-request-conductances",
    ),
    pytest.param(
        m.ReadReply(0, 2.0, np.array([[1.0, 2.0]], np.float32), np.array([[0.0, 4.0]], np.float32)),
        5,
        "41494d43 0100 8300 05000000 2c000000"
        " 0000 0000 01000000 02000000 0000000000000040"  # tile 0, 1x2, clock 2.0
        " 02000000 0000803f 00000040 02000000 00000000 00008040",
        id="read-reply",
    ),
    pytest.param(
        m.WaitRequest(1.5), 3, "41494d43 0100 0500 03000000 08000000 000000000000f83f", id="wait"
    ),
    pytest.param(
        m.ResetRequest(m.ALL_TILES), 4, "41494d43 0100 0600 04000000 02000000 ffff", id="reset"
    ),
    pytest.param(
        m.ErrorReply(m.Status.NOT_PROGRAMMED, "no"),
        8,
        "41494d43 0100 ff00 08000000 0a000000 0500 0000 02000000 6e6f",
        id="error-reply",
    ),
]


@pytest.mark.parametrize(("message", "rid", "hex_bytes"), GOLDEN)
def test_golden_bytes(message: m.Message, rid: int, hex_bytes: str) -> None:
    golden = bytes.fromhex(hex_bytes)
    assert p.encode(message, rid).hex(" ", 4) == golden.hex(" ", 4)
    header, payload = split(golden)
    assert header.request_id == rid
    assert p.decode(header, payload) == message


# --- malformed bytes ------------------------------------------------------------------


def mvm_payload(batch: int, n_in: int, count: int, values: int) -> bytes:
    return struct.pack("<HHIII", 0, 0, batch, n_in, count) + bytes(4 * values)


def violation(data: bytes) -> p.ProtocolViolation:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        await p.read_message(reader)

    with pytest.raises(p.ProtocolViolation) as info:
        asyncio.run(scenario())
    assert isinstance(info.value, ProtocolError)
    return info.value


MALFORMED = [
    pytest.param(
        frame(1, b"", magic=b"AIMX"), m.Status.MALFORMED, "header: magic is b'AIMX'", id="magic"
    ),
    pytest.param(
        frame(4, b"", length=p.MAX_PAYLOAD + 1),
        m.Status.TOO_LARGE,
        f"payload length {p.MAX_PAYLOAD + 1} is over MAX_PAYLOAD",
        id="over-long",
    ),
    pytest.param(
        frame(1, b"", version=2),
        m.Status.UNSUPPORTED_VERSION,
        "header: version 2 is not supported",
        id="version",
    ),
    pytest.param(
        frame(7, b""), m.Status.UNKNOWN_OPCODE, "header: opcode 0x07 is unknown", id="opcode"
    ),
    pytest.param(
        frame(0x80, b""), m.Status.UNKNOWN_OPCODE, "opcode 0x80 is unknown", id="opcode-0x80"
    ),
    pytest.param(
        frame(4, b"\x00" * 6),
        m.Status.MALFORMED,
        "MVM request: payload is too short: 6 bytes left, the fields tile, reserved, batch, n_in"
        " need 12",
        id="mvm-fixed-truncated",
    ),
    pytest.param(
        frame(4, mvm_payload(32, 3, 100, 100)),
        m.Status.MALFORMED,
        "MVM request: inputs has 100 values, batch*n_in = 96",
        id="mvm-count",
    ),
    pytest.param(
        frame(4, mvm_payload(2, 3, 6, 5)),
        m.Status.MALFORMED,
        "MVM request: inputs has 6 values (24 bytes) but 20 bytes follow",
        id="mvm-vector-truncated",
    ),
    pytest.param(
        frame(4, mvm_payload(1, 1, 1, 1) + b"\x00"),
        m.Status.MALFORMED,
        "MVM request: 1 trailing bytes after the last field",
        id="trailing",
    ),
    pytest.param(
        frame(4, struct.pack("<HHII", 0, 0, 1, 1)),
        m.Status.MALFORMED,
        "MVM request: payload is too short: 0 bytes left, the fields inputs (u32 count) need 4",
        id="mvm-count-missing",
    ),
    pytest.param(
        frame(2, struct.pack("<HBBIII", 0, 2, 0, 1, 1, 1) + bytes(4)),
        m.Status.MALFORMED,
        "PROGRAM request: kind 2 is not 0 (WEIGHTS) or 1 (CONDUCTANCES)",
        id="program-kind",
    ),
    pytest.param(
        frame(2, struct.pack("<HBBIII", 0, 1, 0, 2, 2, 4) + bytes(16)),
        m.Status.MALFORMED,
        "PROGRAM request: data has 4 values, 2*rows_used*cols_used = 8",
        id="program-conductance-count",
    ),
    pytest.param(
        frame(3, b"\x00"),
        m.Status.MALFORMED,
        "READ request: payload is too short: 1 bytes left, the fields tile need 2",
        id="read-truncated",
    ),
    pytest.param(
        frame(5, b"\x00" * 4),
        m.Status.MALFORMED,
        "WAIT request: payload is too short: 4 bytes left, the fields seconds need 8",
        id="wait-truncated",
    ),
    pytest.param(
        frame(1, b"\x00"),
        m.Status.MALFORMED,
        "INFO request: 1 trailing bytes",
        id="info-with-payload",
    ),
    pytest.param(
        frame(0xFF, struct.pack("<HHI", 1, 0, 2) + b"\xff\xfe"),
        m.Status.MALFORMED,
        "ERROR reply: message is not valid UTF-8",
        id="error-utf8",
    ),
    pytest.param(
        frame(
            0x81, struct.pack("<HHHHBBHddd", 1, 1, 1, 1, 8, 8, 0, 1, 1, 0) + struct.pack("<I", 9)
        ),
        m.Status.MALFORMED,
        "INFO reply: name has 9 bytes but 0 bytes follow",
        id="info-name-truncated",
    ),
    pytest.param(
        frame(0x83, struct.pack("<HHIId", 0, 0, 1, 2, 0) + struct.pack("<I", 2) + bytes(8)),
        m.Status.MALFORMED,
        "READ reply: payload is too short: 0 bytes left, the fields g_minus (u32 count) need 4",
        id="read-reply-g-minus-missing",
    ),
]


@pytest.mark.parametrize(("data", "status", "text"), MALFORMED)
def test_malformed_bytes_name_the_field(data: bytes, status: m.Status, text: str) -> None:
    exc = violation(data)
    assert exc.status is status
    assert text in str(exc)
    fatal = status is m.Status.TOO_LARGE or "magic" in text
    assert exc.fatal is fatal
    assert exc.request_id == (0 if fatal else 11)


@pytest.mark.parametrize("opcode", [0x81, 0x84, 0xFF, 0x07])
def test_a_chip_refuses_every_opcode_that_is_not_a_request(opcode: int) -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(frame(opcode, b"\x00" * 3))
        reader.feed_eof()
        await p.read_request(reader)

    with pytest.raises(
        p.ProtocolViolation, match=f"opcode 0x{opcode:02X} is .*, not a request"
    ) as info:
        asyncio.run(scenario())
    assert info.value.status is m.Status.UNKNOWN_OPCODE
    assert not info.value.fatal and info.value.request_id == 11


def test_decode_request_checks_the_version_before_the_opcode() -> None:
    with pytest.raises(p.ProtocolViolation, match="version 3") as info:
        p.decode_request(p.Header(3, 0x81, 1, 0), b"")
    assert info.value.status is m.Status.UNSUPPORTED_VERSION


def test_decode_request_decodes_requests() -> None:
    data = p.encode(m.ResetRequest(4), 9)
    assert p.decode_request(*split(data)) == m.ResetRequest(4)


def test_a_length_that_disagrees_with_the_payload_is_refused() -> None:
    header = p.Header(1, m.Opcode.WAIT, 3, 8)
    with pytest.raises(p.ProtocolViolation, match="length says 8 bytes but the payload has 4"):
        p.decode(header, bytes(4))


def test_a_short_header_is_fatal() -> None:
    with pytest.raises(p.ProtocolViolation, match="got 3 bytes, a header is 16") as info:
        p.parse_header(b"AIM")
    assert info.value.fatal


def test_an_unknown_error_status_is_kept_as_a_number() -> None:
    data = frame(0xFF, struct.pack("<HHI", 99, 0, 1) + b"x")
    message = p.decode(*split(data))
    assert message == m.ErrorReply(99, "x")


def test_a_stream_that_ends_inside_a_message_passes_incomplete_read_through() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(p.encode(m.WaitRequest(1.0), 1)[:20])
        reader.feed_eof()
        await p.read_message(reader)

    with pytest.raises(asyncio.IncompleteReadError):
        asyncio.run(scenario())


# --- messages that cannot be encoded --------------------------------------------------

UNENCODABLE = [
    pytest.param(
        m.MvmRequest(0, np.zeros(3, np.float32)), "MVM request: inputs has 1 dim", id="1d"
    ),
    pytest.param(
        m.MvmRequest(0, np.zeros((1, 3), np.int32)),
        "MVM request: inputs has dtype int32",
        id="int-dtype",
    ),
    pytest.param(
        m.MvmRequest(0, [[1.0]]),  # type: ignore[arg-type]
        "MVM request: inputs must be a numpy float array, got list",
        id="list",
    ),
    pytest.param(
        m.ReadRequest(0x10000),
        "READ request: tile = 65536 does not fit an unsigned 16-bit field",
        id="tile",
    ),
    pytest.param(
        m.ProgramRequest(0, m.Kind.CONDUCTANCES, np.zeros((3, 2, 2), np.float32)),
        "PROGRAM request: data for CONDUCTANCES has shape (3, 2, 2)",
        id="conductance-shape",
    ),
    pytest.param(
        m.ProgramRequest(0, 5, np.zeros((2, 2), np.float32)),  # type: ignore[arg-type]
        "PROGRAM request: kind 5 is not 0 (WEIGHTS) or 1 (CONDUCTANCES)",
        id="kind",
    ),
    pytest.param(
        m.ReadReply(0, 0.0, np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32)),
        "READ reply: g_plus has shape (2, 2) but g_minus (2, 3)",
        id="read-shapes",
    ),
    pytest.param(
        m.WaitRequest("1"),  # type: ignore[arg-type]
        "WAIT request: seconds must be a number, got str",
        id="seconds",
    ),
    pytest.param(
        m.InfoReply(1, 1, 1, 1, 256, 8, 1.0, 1.0, 0.0, "x"),
        "INFO reply: dac_bits = 256 does not fit an unsigned 8-bit field",
        id="bits",
    ),
    pytest.param(
        m.ErrorReply(1, "\ud800"), "ERROR reply: message cannot be written as UTF-8", id="utf8"
    ),
]


@pytest.mark.parametrize(("message", "text"), UNENCODABLE)
def test_encode_names_the_field_it_cannot_send(message: m.Message, text: str) -> None:
    with pytest.raises(ProtocolError, match=None) as info:
        p.encode(message, 1)
    assert text in str(info.value)


def test_encode_refuses_a_request_id_over_32_bits() -> None:
    with pytest.raises(ProtocolError, match="request id = 4294967296 does not fit"):
        p.encode(m.InfoRequest(), 2**32)


def test_encode_refuses_a_payload_over_max_payload() -> None:
    big = np.zeros((p.MAX_PAYLOAD // 4 // 1024 + 1, 1024), np.float32)
    with pytest.raises(ProtocolError, match="over MAX_PAYLOAD"):
        p.encode(m.MvmRequest(0, big), 1)
