"""Properties of the IMC chip protocol and the emulated chip: any bytes after a header,
any header, are decoded or refused with ``ProtocolError``, never another exception; and
no WAIT, whatever its seconds, leaves the chip clock anything but finite, within
``MAX_CLOCK`` and never behind: a WAIT that would is refused with an ERROR reply that
names the field and the range allowed."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aif.aims.analog.imc_chip import protocol
from aif.aims.analog.imc_chip.config import MAX_CLOCK, ChipConfig
from aif.aims.analog.imc_chip.emulator import answer
from aif.aims.analog.imc_chip.messages import (
    PROTOCOL_VERSION,
    ErrorReply,
    Status,
    WaitReply,
    WaitRequest,
)
from aif.errors import ProtocolError

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
OPCODES = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0xFF]
U32 = st.integers(0, 2**32 - 1)
#: A payload: random bytes, or fixed fields and u32 counts at the edges, then some bytes.
payloads = st.one_of(
    st.binary(max_size=64),
    st.tuples(
        st.lists(st.one_of(U32, st.sampled_from([0, 1, 2, 2**16, 2**31, 2**32 - 1])), max_size=6),
        st.binary(max_size=32),
    ).map(lambda t: struct.pack(f"<{len(t[0])}I", *t[0]) + t[1]),
)


@FUZZ
@given(
    magic=st.sampled_from([protocol.MAGIC, b"AIMD"]),
    version=st.sampled_from([PROTOCOL_VERSION, 0, 2, 0xFFFF]),
    opcode=st.one_of(st.sampled_from(OPCODES), st.integers(0, 0xFFFF)),
    rid=U32,
    payload=payloads,
    lie=st.sampled_from([0, 0, 0, 1, -1, 2**31]),
    request=st.booleans(),
)
def test_any_frame_is_a_message_or_a_protocol_error(
    magic: bytes, version: int, opcode: int, rid: int, payload: bytes, lie: int, request: bool
) -> None:
    length = min(max(len(payload) + lie, 0), 2**32 - 1)
    head = protocol.HEADER.pack(magic, version, opcode, rid, length)
    try:
        header = protocol.parse_header(head)
        message = (protocol.decode_request if request else protocol.decode)(header, payload)
    except protocol.ProtocolViolation as exc:
        assert isinstance(exc, ProtocolError) and isinstance(exc.status, Status)
        assert exc.request_id == (0 if exc.fatal else rid)
        return
    assert magic == protocol.MAGIC and version == PROTOCOL_VERSION
    assert length == len(payload)
    assert protocol.decode(header, protocol.encode(message, rid)[protocol.HEADER.size :]) == message


@FUZZ
@given(data=st.binary(max_size=40))
def test_any_header_bytes_parse_or_are_a_protocol_error(data: bytes) -> None:
    try:
        protocol.parse_header(data)
    except protocol.ProtocolViolation as exc:
        assert exc.fatal


@pytest.fixture(scope="module")
def chip() -> Iterator[object]:
    from aif.aims.analog.imc_chip.tiles import Chip  # torch and aihwkit: only here

    yield Chip(ChipConfig(tiles=1, rows=2, cols=2, noise=False, seed=0))


seconds = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e308, MAX_CLOCK, MAX_CLOCK / 2, math.nextafter(0, -1)]),
)


@FUZZ
@given(waits=st.lists(seconds, min_size=1, max_size=4))
def test_no_wait_takes_the_clock_past_max_clock_or_makes_it_not_finite(
    chip: object, waits: list[float]
) -> None:
    chip.clock = 0.0  # type: ignore[attr-defined]  # each example from a fresh clock
    for value in waits:
        # through the wire, as the emulator sees it
        frame = protocol.encode(WaitRequest(value), 1)
        head, payload = frame[: protocol.HEADER.size], frame[protocol.HEADER.size :]
        message = protocol.decode(protocol.parse_header(head), payload)
        assert isinstance(message, WaitRequest)
        before = chip.clock  # type: ignore[attr-defined]
        reply = answer(chip, message)  # type: ignore[arg-type]
        after = chip.clock  # type: ignore[attr-defined]
        assert math.isfinite(after) and before <= after <= MAX_CLOCK
        if isinstance(reply, ErrorReply):
            assert reply.status == Status.OUT_OF_RANGE and after == before
            assert "WAIT request: seconds = " in reply.message and "MAX_CLOCK" in reply.message
        else:
            assert isinstance(reply, WaitReply) and reply.clock == after
            assert after == min(before + value, MAX_CLOCK)


def test_a_wait_of_1e308_twice_is_refused_and_the_clock_stays_finite() -> None:
    """Regression: two WAITs of 1e308 took the clock to inf, after which every drift was
    computed at an infinite time and every WAIT left it there."""
    from aif.aims.analog.imc_chip.tiles import Chip

    chip = Chip(ChipConfig(tiles=1, rows=2, cols=2, noise=True, seed=0))
    reply = answer(chip, WaitRequest(1e308))
    assert isinstance(reply, ErrorReply) and reply.status == Status.OUT_OF_RANGE
    assert "seconds = 1e+308 must be a finite number >= 0 and <= 1e+13" in reply.message
    assert chip.clock == 0.0
    reply = answer(chip, WaitRequest(MAX_CLOCK))
    assert isinstance(reply, WaitReply) and reply.clock == MAX_CLOCK
    reply = answer(chip, WaitRequest(1.0))
    assert isinstance(reply, ErrorReply) and "<= 0 (the chip clock is at 1e+13 s" in reply.message
    assert answer(chip, WaitRequest(0.0)) == WaitReply(MAX_CLOCK)
