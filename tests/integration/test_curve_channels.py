"""A secure run's tcp channels: CURVE with the run's key, and nobody else gets in.

Channel level: real tcp readers and writers with a run's ``CurveKeys``, and raw
ZeroMQ sockets playing an intruder (plain, or CURVE with its own key). Run level: an
embedded controller in the secure profile (its tcp AIM API CURVE) runs a workflow
whose ``placement: remote`` AIM is hosted by ``aif aim serve`` in a real process, so
the feeder, the remote reader and writer, the controller's collector and the control
lane all cross tcp, encrypted with the run's key pair.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from aif import Controller
from aif.communication.channel import ChannelReader, ChannelWriter
from aif.communication.ports import Record, Signal
from aif.controller import wiring
from aif.security.curve import (
    CurveKeys,
    CurvePair,
    Gatekeeper,
    curve_client,
    key_text,
    load_controller_curve,
    run_domain,
)
from aif.security.keys import KeyRing
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    Gatekeeper.stop_for(context)
    context.destroy(linger=0)


def run_keys(run_id: str = "test-1234") -> CurveKeys:
    keys = CurveKeys.of(wiring.new_channel_keys(run_id))
    assert keys is not None
    return keys


async def next_record(reader: ChannelReader, timeout: float) -> Any:
    event = await asyncio.wait_for(reader.recv(), timeout)
    assert isinstance(event, Record)
    return event.value


async def test_a_secure_tcp_channel_carries_records_between_the_runs_own_ends(
    ctx: zmq.asyncio.Context,
) -> None:
    keys = run_keys()
    other = zmq.asyncio.Context()  # the writer's AIM lives in another host
    reader = ChannelReader(ctx, "in", "tcp", curve=keys)
    writer = ChannelWriter(other, "out", reader.endpoints, curve=keys)
    try:
        assert Gatekeeper.of(ctx).allowed(keys.domain) == {"run": keys.pair.public}
        await writer.send({"x": 1})
        await writer.send_signal(7)
        events = [await asyncio.wait_for(reader.recv(), 5.0) for _ in range(2)]
        assert Record("in", {"x": 1}) in events  # both lanes serve CURVE
        assert Signal(7, "in") in events
    finally:
        writer.close(linger_ms=0)
        reader.close()
        other.destroy(linger=0)
    assert keys.domain not in Gatekeeper.of(ctx).domains  # the last holder closed it


async def test_an_intruder_cannot_inject_into_a_secure_reader(
    ctx: zmq.asyncio.Context, caplog: pytest.LogCaptureFixture
) -> None:
    keys = run_keys()
    reader = ChannelReader(ctx, "in", "tcp", curve=keys)
    intruder_ctx = zmq.asyncio.Context()
    stranger = CurvePair.generate()
    try:
        # A plain PUSH: the mechanisms do not match; nothing gets through.
        plain = intruder_ctx.socket(zmq.PUSH)
        plain.linger = 0
        plain.connect(reader.endpoints.normal)
        # A CURVE PUSH that knows the run's public key, but not its secret key.
        forged = intruder_ctx.socket(zmq.PUSH)
        forged.linger = 0
        curve_client(forged, stranger.public, stranger.secret, keys.pair.public)
        forged.connect(reader.endpoints.normal)
        from aif.communication import codec

        frames = codec.encode("injected")
        with caplog.at_level(logging.WARNING, logger="aif.security"):
            await plain.send_multipart(frames)
            await forged.send_multipart(frames)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.recv(), 1.0)
        assert (keys.domain, key_text(stranger.public)) in Gatekeeper.of(ctx).refused
        logged = [r.getMessage() for r in caplog.records if r.name == "aif.security"]
        assert any(key_text(stranger.public) in m and keys.domain in m for m in logged)
        assert any("only the run's own AIMs" in m for m in logged)
        # The run's own writer still gets through.
        writer = ChannelWriter(intruder_ctx, "out", reader.endpoints, curve=keys)
        await writer.send("mine")
        assert await next_record(reader, 5.0) == "mine"
        writer.close(linger_ms=0)
        plain.close()
        forged.close()
    finally:
        reader.close()
        intruder_ctx.destroy(linger=0)


async def test_ipc_channels_of_a_secure_run_stay_plain(
    ctx: zmq.asyncio.Context, tmp_path: Path
) -> None:
    keys = run_keys()
    reader = ChannelReader(ctx, "in", "ipc", ipc_dir=tmp_path, curve=keys)
    writer = ChannelWriter(ctx, "out", reader.endpoints)  # no keys at all
    try:
        await writer.send(3)
        assert await next_record(reader, 5.0) == 3
        assert Gatekeeper.running(ctx) is None  # nothing CURVE was set up
    finally:
        writer.close(linger_ms=0)
        reader.close()


SECURE_REMOTE = """
name: curve-relay
profile: secure
aims:
  relay: {type: relay, placement: remote}
  sink: {type: collect}
inputs:
  relay.in: [1, 2, 3]
connections: [relay.out -> sink.in]
outputs: [relay.out]
"""


def serve_relay(controller: str, state_dir: Path, server_key: bytes) -> list[str]:
    """``aif aim serve relay`` as a person starts it for a secure controller."""
    return [
        sys.executable, "-m", "aif.cli.main", "aim", "serve", "relay", "--controller", controller,
        "--name", "relay", "--state-dir", str(state_dir), "--server-key", key_text(server_key),
    ]  # fmt: skip


async def test_a_secure_run_with_a_remote_aim_crosses_tcp_with_curve(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ring = KeyRing(state)
    ring.init()
    identity = ring.identity()
    curve = load_controller_curve(state, identity)
    wf = resolve(load_workflow_text(SECURE_REMOTE, "curve.yml"))
    async with Controller(
        state, tcp="tcp://127.0.0.1:*", curve=curve, identity=identity, ready_timeout=30
    ) as controller:
        assert controller.curve_api
        launch = asyncio.create_task(controller.launch(wf))
        await asyncio.sleep(0.1)
        # The host a person starts by hand, with the key `aif run` prints; it dials with
        # the state directory's identity, which the controller trusts (its own).
        host = subprocess.Popen(
            serve_relay(controller.endpoints["tcp"], state, identity.curve_public),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            run = await launch
            assert controller.ctx is not None
            keeper = Gatekeeper.running(controller.ctx)
            assert keeper is not None
            # Inside the controller: the collector of relay.out and sink's reader.
            assert keeper.allowed(run_domain(run.id))
            result = await controller.wait_run(run, timeout=30)
        finally:
            output, _ = host.communicate(timeout=20)
    assert result.ok, f"{result.error}\n{output}"
    assert result.outputs["relay.out"] == [1, 2, 3]
    assert result.results["sink"]["received"] == 3
    assert host.returncode == 0, output


async def test_a_host_that_is_not_trusted_never_registers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ring = KeyRing(state)
    ring.init()
    KeyRing(tmp_path / "stranger").init()
    identity = ring.identity()
    curve = load_controller_curve(state, identity)
    async with Controller(state, tcp="tcp://127.0.0.1:*", curve=curve, identity=identity) as c:
        # Asynchronously: the controller's loop answers the host's ZAP requests meanwhile.
        started = time.monotonic()
        host = await asyncio.create_subprocess_exec(
            *serve_relay(c.endpoints["tcp"], tmp_path / "stranger", identity.curve_public),
            "--connect-timeout",
            "30",
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output = (await asyncio.wait_for(host.communicate(), 30))[0].decode()
        assert c.ctx is not None
        keeper = Gatekeeper.running(c.ctx)
        assert keeper is not None
        stranger = key_text(KeyRing(tmp_path / "stranger").public().curve)
        assert ("aif-aim-api", stranger) in keeper.refused
    assert host.returncode == 1
    # Refused in the handshake, it leaves at once saying why, not after its 30 s timeout.
    assert time.monotonic() - started < 15
    assert "refused this client's key" in output, output
    assert f"aif keys trust NAME '{stranger}'" in output, output
