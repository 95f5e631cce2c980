"""The chip emulator: a real process on a real TCP socket, fed malformed bytes and valid
requests, and the in-process ``Chip`` whose physics it serves."""

from __future__ import annotations

import argparse
import math
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from aif.aims.analog.imc_chip import messages as m
from aif.aims.analog.imc_chip import protocol as p
from aif.aims.analog.imc_chip.config import ChipConfig
from aif.aims.analog.imc_chip.emulator import parse_listen
from aif.aims.analog.imc_chip.tiles import Chip
from aif.errors import ChipError, ConfigError
from tests.helpers.chip_bytes import frame

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = [sys.executable, "-m", "aif.aims.analog.imc_chip.emulator"]
BANNER = "aif chip emulator listening on tcp://127.0.0.1:"


# --- the emulator process and a raw client ---------------------------------------------


@dataclass
class Emulator:
    process: subprocess.Popen[str]
    port: int
    log: Path


def start(*args: str, log: Path) -> Emulator:
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*EMULATOR, "--listen", "tcp://127.0.0.1:0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith(BANNER), f"{line!r}; stderr:\n{log.read_text()}"
    return Emulator(process, int(line.rsplit(":", 1)[1]), log)


def stop(emulator: Emulator) -> int:
    emulator.process.send_signal(signal.SIGTERM)
    code = emulator.process.wait(timeout=30)
    assert emulator.process.stdout is not None
    emulator.process.stdout.close()
    return code


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    running = start("--seed", "0", log=tmp_path_factory.mktemp("emulator") / "stderr.txt")
    yield running
    assert stop(running) == 0, running.log.read_text()


class Raw:
    """A blocking TCP client that sends bytes and reads whole messages."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def receive(self) -> tuple[int, m.Message]:
        header = p.parse_header(self.exactly(p.HEADER.size))
        return header.request_id, p.decode(header, self.exactly(header.length))

    def ask(self, message: m.Message | bytes, rid: int = 1) -> m.Message:
        self.sock.sendall(message if isinstance(message, bytes) else p.encode(message, rid))
        got_rid, reply = self.receive()
        if isinstance(message, m.Message):
            assert got_rid == rid
        return reply

    def closed_by_peer(self) -> bool:
        return self.sock.recv(1) == b""


def mvm(tile: int, inputs: np.ndarray) -> bytes:
    batch, n_in = inputs.shape
    values = inputs.astype("<f4").tobytes()
    return frame(4, struct.pack("<HHIII", tile, 0, batch, n_in, inputs.size) + values)


def program(tile: int, data: np.ndarray, kind: int = 0, rows: int = 0, cols: int = 0) -> bytes:
    rows, cols = (rows or data.shape[-2]), (cols or data.shape[-1])
    fixed = struct.pack("<HBBIII", tile, kind, 0, rows, cols, data.size)
    return frame(2, fixed + data.astype("<f4").tobytes())


def wait(seconds: float) -> bytes:
    return frame(5, struct.pack("<d", seconds))


W = np.array([[0.5, -0.25, 1.0], [0.0, 0.75, -1.0]], np.float32)  # 2 outputs x 3 inputs


def programmed(raw: Raw, tile: int = 0) -> None:
    assert isinstance(raw.ask(m.ProgramRequest(tile, m.Kind.WEIGHTS, W)), m.ProgramReply)


def erased(raw: Raw, tile: int = 5) -> None:
    assert raw.ask(m.ResetRequest(tile)) == m.ResetReply(1)


def still_serves(raw: Raw) -> None:
    info = raw.ask(m.InfoRequest(), rid=77)
    assert isinstance(info, m.InfoReply)
    assert (info.tiles, info.rows, info.cols) == (64, 256, 256)


# --- the malformed corpus: each gets its ERROR reply, and the emulator keeps serving ---------

NAN = np.array([[0.1, math.nan, 0.2]], np.float32)
INF = np.array([[0.1, 0.2, math.inf]], np.float32)
OK = np.array([[0.1, 0.2, 0.3]], np.float32)
BIG = 2**16 + 1

# fmt: off
CORPUS = [  # (bytes, prepare, status, text, fatal)
    pytest.param(frame(1, b"", magic=b"HTTP"), None, m.Status.MALFORMED, "magic is b'HTTP'", True,
                 id="bad-magic"),
    pytest.param(frame(4, b"", length=p.MAX_PAYLOAD + 1), None, m.Status.TOO_LARGE,
                 "is over MAX_PAYLOAD", True, id="length-over-max"),
    pytest.param(frame(1, b"", version=9), None, m.Status.UNSUPPORTED_VERSION,
                 "version 9 is not supported", False, id="wrong-version"),
    pytest.param(frame(0x2A, b""), None, m.Status.UNKNOWN_OPCODE,
                 "opcode 0x2A is unknown, not a request", False, id="unknown-opcode"),
    pytest.param(frame(0x81, b""), None, m.Status.UNKNOWN_OPCODE,
                 "header: opcode 0x81 is the INFO reply, not a request", False,
                 id="reply-opcode-empty"),
    pytest.param(frame(0x85, struct.pack("<d", 1.0)), None, m.Status.UNKNOWN_OPCODE,
                 "opcode 0x85 is the WAIT reply, not a request; a chip answers", False,
                 id="reply-opcode"),
    pytest.param(frame(0xFF, b""), None, m.Status.UNKNOWN_OPCODE,
                 "opcode 0xFF is the ERROR reply, not a request", False, id="error-opcode"),
    pytest.param(frame(4, b"\x00\x00\x00"), None, m.Status.MALFORMED,
                 "MVM request: payload is too short: 3 bytes left", False, id="truncated-payload"),
    pytest.param(frame(4, struct.pack("<HHIII", 0, 0, 32, 3, 100) + bytes(400)), None,
                 m.Status.MALFORMED, "MVM request: inputs has 100 values, batch*n_in = 96", False,
                 id="wrong-vector-size"),
    pytest.param(frame(2, struct.pack("<HBBIII", 0, 0, 0, 2, 3, 6) + bytes(20)), None,
                 m.Status.MALFORMED, "PROGRAM request: data has 6 values (24 bytes) but 20 bytes",
                 False, id="vector-shorter-than-count"),
    pytest.param(mvm(64, OK), None, m.Status.OUT_OF_RANGE,
                 "MVM request: tile 64 is out of range; this chip has tiles 0..63", False,
                 id="mvm-tile-out-of-range"),
    pytest.param(frame(3, struct.pack("<H", 999)), None, m.Status.OUT_OF_RANGE,
                 "READ request: tile 999 is out of range", False, id="read-tile-out-of-range"),
    pytest.param(program(64, W), None, m.Status.OUT_OF_RANGE,
                 "PROGRAM request: tile 64 is out of range", False, id="program-tile-out-of-range"),
    pytest.param(frame(6, struct.pack("<H", 64)), None, m.Status.OUT_OF_RANGE,
                 "RESET request: tile 64 is out of range", False, id="reset-tile-out-of-range"),
    pytest.param(program(0, np.zeros((257, 2), np.float32)), None, m.Status.OUT_OF_RANGE,
                 "PROGRAM request: a 257x2 block does not fit tile 0: tiles are 256x256", False,
                 id="shape-bigger-than-tile"),
    pytest.param(program(0, np.zeros((0, 3), np.float32)), None, m.Status.OUT_OF_RANGE,
                 "a 0x3 block does not fit", False, id="empty-block"),
    pytest.param(mvm(0, NAN), programmed, m.Status.OUT_OF_RANGE,
                 "MVM request: inputs[0, 1] is nan; every value must be finite", False,
                 id="nan-input"),
    pytest.param(mvm(0, INF), programmed, m.Status.OUT_OF_RANGE, "inputs[0, 2] is inf", False,
                 id="inf-input"),
    pytest.param(mvm(0, np.zeros((1, 4), np.float32)), programmed, m.Status.MALFORMED,
                 "MVM request: n_in = 4 but tile 0 is programmed with cols_used = 3 inputs", False,
                 id="n-in-not-cols-used"),
    pytest.param(mvm(0, np.zeros((16385, 3), np.float32)), programmed, m.Status.TOO_LARGE,
                 "batch 16385 is over this chip's limit of 16384", False, id="batch-over-limit"),
    pytest.param(mvm(5, OK), erased, m.Status.NOT_PROGRAMMED,
                 "MVM request: tile 5 is not programmed", False, id="mvm-erased-tile"),
    pytest.param(frame(3, struct.pack("<H", 5)), erased, m.Status.NOT_PROGRAMMED,
                 "READ request: tile 5 is not programmed", False, id="read-erased-tile"),
    pytest.param(wait(-1.0), None, m.Status.OUT_OF_RANGE,
                 "WAIT request: seconds = -1.0 must be a finite number >= 0", False,
                 id="negative-wait"),
    pytest.param(wait(math.inf), None, m.Status.OUT_OF_RANGE, "seconds = inf", False,
                 id="inf-wait"),
    pytest.param(wait(math.nan), None, m.Status.OUT_OF_RANGE, "seconds = nan", False,
                 id="nan-wait"),
    pytest.param(program(1, np.array([[0.5, 1.5]], np.float32)), None, m.Status.OUT_OF_RANGE,
                 "PROGRAM request: data[0, 1] = 1.5 is outside [-1, 1] (weights; scale", False,
                 id="weights-outside-unit-range"),
    pytest.param(program(1, np.array([[[30.0]], [[0.0]]], np.float32), kind=1), None,
                 m.Status.OUT_OF_RANGE, "data[0, 0, 0] = 30 is outside [0, 25] (uS", False,
                 id="conductance-over-g-max"),
    pytest.param(program(1, np.array([[[1.0]], [[-0.5]]], np.float32), kind=1), None,
                 m.Status.OUT_OF_RANGE, "data[1, 0, 0] = -0.5 is outside [0, 25]", False,
                 id="negative-conductance"),
    pytest.param(program(1, np.array([[math.nan]], np.float32)), None, m.Status.OUT_OF_RANGE,
                 "data[0, 0] is nan", False, id="nan-weight"),
    pytest.param(frame(2, struct.pack("<HBBIII", 1, 7, 0, 1, 1, 1) + bytes(4)), None,
                 m.Status.MALFORMED, "PROGRAM request: kind 7 is not 0 (WEIGHTS)", False,
                 id="unknown-kind"),
]
# fmt: on


@pytest.mark.parametrize(("data", "prepare", "status", "text", "fatal"), CORPUS)
def test_malformed_request_gets_its_error_and_the_emulator_keeps_serving(
    emulator: Emulator, data: bytes, prepare: object, status: m.Status, text: str, fatal: bool
) -> None:
    with Raw(emulator.port) as raw:
        if callable(prepare):
            prepare(raw)
        raw.sock.sendall(data)
        rid, reply = raw.receive()
        assert isinstance(reply, m.ErrorReply), reply
        assert reply.status == status
        assert text in reply.message
        assert rid == (0 if fatal else 11)
        if fatal:
            assert raw.closed_by_peer()
        else:
            still_serves(raw)
    with Raw(emulator.port) as fresh:
        still_serves(fresh)


def test_the_length_field_decides_where_a_message_ends(emulator: Emulator) -> None:
    with Raw(emulator.port) as raw:
        data = mvm(0, OK)  # its length field says 4 bytes more than its body: the emulator
        too_long = data[:12] + struct.pack("<I", len(data) - 16 + 4) + data[16:] + bytes(4)
        raw.sock.sendall(too_long)  # takes the 4 bytes after it as part of it
        rid, reply = raw.receive()
        assert isinstance(reply, m.ErrorReply) and reply.status == m.Status.MALFORMED
        assert "MVM request: 4 trailing bytes after the last field" in reply.message
        assert rid == 11
        still_serves(raw)


def test_a_peer_that_leaves_inside_a_message_gets_no_reply_and_others_are_served(
    emulator: Emulator,
) -> None:
    with Raw(emulator.port) as raw:
        raw.sock.sendall(frame(4, b"", length=100) + bytes(10))
        raw.sock.shutdown(socket.SHUT_WR)
        assert raw.closed_by_peer()
    with Raw(emulator.port) as fresh:
        still_serves(fresh)


def test_a_fatal_error_on_one_connection_leaves_the_others_open(emulator: Emulator) -> None:
    with Raw(emulator.port) as good, Raw(emulator.port) as bad:
        still_serves(good)
        bad.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        rid, reply = bad.receive()
        assert isinstance(reply, m.ErrorReply) and reply.status == m.Status.MALFORMED
        assert rid == 0
        assert bad.closed_by_peer()
        still_serves(good)


def test_pipelined_requests_are_answered_in_order_with_their_ids(emulator: Emulator) -> None:
    with Raw(emulator.port) as raw:
        requests: list[m.Message] = [
            m.ProgramRequest(7, m.Kind.WEIGHTS, W),
            m.MvmRequest(7, np.array([[1.0, 0.0, 0.0]], np.float32)),
            m.ReadRequest(70),
            m.ResetRequest(7),
            m.InfoRequest(),
        ]
        raw.sock.sendall(b"".join(p.encode(msg, 100 + i) for i, msg in enumerate(requests)))
        replies = [raw.receive() for _ in requests]
    assert [rid for rid, _ in replies] == [100, 101, 102, 103, 104]
    kinds = [type(reply) for _, reply in replies]
    assert kinds == [m.ProgramReply, m.MvmReply, m.ErrorReply, m.ResetReply, m.InfoReply]


def test_an_empty_batch_gets_an_empty_reply(emulator: Emulator) -> None:
    with Raw(emulator.port) as raw:
        programmed(raw, tile=8)
        reply = raw.ask(m.MvmRequest(8, np.zeros((0, 3), np.float32)))
        assert reply == m.MvmReply(8, np.zeros((0, 2), np.float32))


def test_a_whole_session_over_tcp(emulator: Emulator) -> None:
    with Raw(emulator.port) as raw:
        info = raw.ask(m.InfoRequest())
        assert isinstance(info, m.InfoReply)
        assert info.version == 1 and info.g_max == 25.0 and info.out_bound == 12.0
        assert (info.dac_bits, info.adc_bits) == (8, 8)
        assert info.name == "aif emulator: PCM, 64 tiles of 256x256"
        done = raw.ask(m.ProgramRequest(9, m.Kind.WEIGHTS, W), rid=2)
        assert done == m.ProgramReply(9, 2, 3, info.clock)
        read = raw.ask(m.ReadRequest(9), rid=3)
        assert isinstance(read, m.ReadReply) and read.g_plus.shape == (2, 3)
        assert np.abs(read.g_plus - np.maximum(W, 0) * 25).max() < 8.0
        out = raw.ask(m.MvmRequest(9, np.eye(3, dtype=np.float32)), rid=4)
        assert isinstance(out, m.MvmReply) and out.outputs.shape == (3, 2)
        assert np.abs(out.outputs - W.T).max() < 0.5
        later = raw.ask(m.WaitRequest(3600.0), rid=5)
        assert isinstance(later, m.WaitReply) and later.clock == info.clock + 3600.0
        assert raw.ask(m.ResetRequest(m.ALL_TILES), rid=6) == m.ResetReply(64)
        gone = raw.ask(m.ReadRequest(9), rid=7)
        assert isinstance(gone, m.ErrorReply) and gone.status == m.Status.NOT_PROGRAMMED


# --- the process: options, address, signals --------------------------------------------------


def test_sigterm_with_a_client_connected_exits_0(tmp_path: Path) -> None:
    running = start("--no-noise", "--tiles", "2", "--rows", "4", "--cols", "4", log=tmp_path / "e")
    with Raw(running.port) as raw:
        info = raw.ask(m.InfoRequest())
        assert isinstance(info, m.InfoReply) and info.name.startswith("aif emulator: ideal")
        assert stop(running) == 0
        assert raw.closed_by_peer()
    assert "stopped" in running.log.read_text()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--listen", "127.0.0.1:5000"], "'127.0.0.1:5000' is not tcp://HOST:PORT"),
        (["--tiles", "0", "--dac-bits", "1"], "tiles = 0 must be within 1..65534; dac_bits = 1"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args: list[str], text: str) -> None:
    done = subprocess.run(
        [*EMULATOR, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert text in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("tcp://127.0.0.1:0", ("127.0.0.1", 0)),
        ("tcp://localhost:5555", ("localhost", 5555)),
        ("tcp://[::1]:65535", ("::1", 65535)),
        ("tcp://0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_listen_addresses_parse(text: str, address: tuple[str, int]) -> None:
    assert parse_listen(text) == address


@pytest.mark.parametrize(
    "text", ["127.0.0.1:5000", "tcp://127.0.0.1", "tcp://:80", "udp://h:1", "tcp://h:70000"]
)
def test_bad_listen_addresses_say_the_form(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"is not tcp://HOST:PORT with a port"):
        parse_listen(text)


# --- physics, with the in-process Chip ------------------------------------------------------


def weights(rows: int, cols: int, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (rows, cols)) * scale).astype(np.float32)


def test_an_ideal_chip_multiplies_exactly_up_to_the_converters() -> None:
    chip = Chip(ChipConfig(noise=False))
    w = weights(32, 64, scale=0.15)  # |y| <= 64 * 0.15 < out_bound: nothing clips
    x = np.random.default_rng(1).uniform(-1, 1, (50, 64)).astype(np.float32)
    chip.program(3, w)
    y = chip.mvm(3, x)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    bound = chip.config.adc_step / 2 + np.abs(w).sum(axis=1) * chip.config.dac_step / 2
    assert np.all(np.abs(y - exact) <= bound + 1e-5)
    grid = y / chip.config.adc_step
    assert np.allclose(grid, np.round(grid), atol=1e-3)  # outputs sit on the ADC grid
    ideal = Chip(ChipConfig(noise=False, dac_bits=0, adc_bits=0))
    ideal.program(0, w)
    assert np.allclose(ideal.mvm(0, x), exact, atol=1e-5)


def test_outputs_clip_at_out_bound_and_inputs_at_one() -> None:
    chip = Chip(ChipConfig(noise=False, rows=2, cols=32))
    chip.program(0, np.ones((1, 32), np.float32))
    y = chip.mvm(0, np.full((1, 32), 3.0, np.float32))  # the DAC clips 3 to 1: sum 32
    assert y.tolist() == [[12.0]]


def test_an_ideal_chip_reads_back_its_targets_and_does_not_drift() -> None:
    chip = Chip(ChipConfig(noise=False))
    w = weights(8, 8)
    chip.program(0, w)
    chip.wait(86400.0)
    read = chip.read(0)
    assert np.array_equal(read.g_plus, np.maximum(w, 0) * 25)
    assert np.array_equal(read.g_minus, np.maximum(-w, 0) * 25)


def test_read_after_programming_is_near_the_targets() -> None:
    chip = Chip(ChipConfig(seed=0))
    w = weights(64, 64)
    chip.program(0, w)
    read = chip.read(0)
    error = np.concatenate(
        [
            (read.g_plus - np.maximum(w, 0) * 25).ravel(),
            (read.g_minus - np.maximum(-w, 0) * 25).ravel(),
        ]
    )
    # aihwkit's PCM programming noise (std 0.26..1.1 uS) plus the 1/f noise of the
    # first t_0 = 20 s: measured mean |error| ~0.49 uS, max ~6 uS over 8192 devices
    assert 0.2 < np.abs(error).mean() < 0.8
    assert np.abs(error).max() < 10.0
    assert (read.g_plus >= 0).all() and (read.g_minus >= 0).all()
    assert np.array_equal(chip.read(0).g_plus, read.g_plus)  # one clock value, one state


def test_conductances_and_outputs_shrink_with_drift() -> None:
    chip = Chip(ChipConfig(seed=1, read_noise=0.0))
    w = np.abs(weights(32, 64, scale=0.3))
    x = np.random.default_rng(2).uniform(0, 1, (16, 64)).astype(np.float32)
    chip.program(0, w)
    g, y = [chip.read(0).g_plus.mean()], [chip.mvm(0, x).mean()]
    for t in (3600.0, 86400.0, 3.15e7):
        chip.wait(t - chip.clock)
        g.append(chip.read(0).g_plus.mean())
        y.append(chip.mvm(0, x).mean())
    assert g == sorted(g, reverse=True) and y == sorted(y, reverse=True)
    assert 0.55 < g[2] / g[0] < 0.75  # after a day: ((86400 + 20) / 20) ** -nu, nu ~0.05
    assert 0.55 < y[2] / y[0] < 0.75


def test_reprogramming_restarts_the_drift_clock() -> None:
    chip = Chip(ChipConfig(seed=2))
    w = np.full((4, 4), 0.8, np.float32)
    chip.program(0, w)
    chip.wait(1e6)
    assert chip.read(0).g_plus.mean() < 0.8 * 20
    assert chip.program(0, w).clock == 1e6
    assert abs(chip.read(0).g_plus.mean() - 20) < 2.0


def test_reset_erases() -> None:
    chip = Chip(ChipConfig(noise=False, tiles=3))
    for tile in range(3):
        chip.program(tile, weights(2, 2))
    assert chip.reset(1) == 1
    assert not chip.programmed(1) and chip.programmed(0)
    with pytest.raises(ChipError, match="tile 1 is not programmed") as info:
        chip.mvm(1, np.zeros((1, 2), np.float32))
    assert info.value.status == m.Status.NOT_PROGRAMMED
    assert chip.reset(m.ALL_TILES) == 3
    assert not any(chip.programmed(t) for t in range(3))


def test_seeded_chips_repeat_and_tiles_draw_independently() -> None:
    def session(seed: int, order: tuple[int, int]) -> list[np.ndarray]:
        chip = Chip(ChipConfig(seed=seed))
        for tile in order:
            chip.program(tile, weights(16, 16, seed=tile))
        chip.wait(100.0)
        x = np.ones((4, 16), np.float32) * 0.5
        return [chip.read(0).g_plus, chip.read(1).g_minus, chip.mvm(0, x), chip.mvm(1, x)]

    first, again = session(7, (0, 1)), session(7, (1, 0))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = session(8, (0, 1))
    assert not np.array_equal(first[0], other[0])


def test_the_chip_leaves_torch_global_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    chip = Chip(ChipConfig(seed=0))
    chip.program(0, weights(8, 8))
    chip.wait(10.0)
    chip.mvm(0, np.zeros((2, 8), np.float32))
    assert torch.equal(torch.rand(3), expected)


def test_a_bad_configuration_names_every_fault() -> None:
    with pytest.raises(ConfigError, match="rows = 0 must be within") as info:
        ChipConfig(rows=0, g_max=-1.0, read_noise=math.nan)
    assert "g_max = -1.0 must be a finite number > 0" in str(info.value)
    assert "read_noise = nan" in str(info.value)
