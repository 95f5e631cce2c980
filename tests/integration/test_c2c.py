"""The Controller-to-Controller API: a controller hosts an AIM of another's AIW.

Controller B is a real process (``tests.helpers.peer_controller``: the daemon's
``ApiServer`` with ``PeerHosts`` behind it) serving on tcp; controller A is an embedded
``Controller`` listening on tcp whose AIW declares an AIM ``placement: remote`` with
``peers``. B starts the host (``aif aim serve``) as a real child process, which dials
A; records then flow AIM to AIM over tcp. B is also killed outright, to check that A
notices within seconds and that B's host does not outlive it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq.asyncio

from aif import Controller, RunState
from aif.communication.events import Event
from aif.controller.launchers.peer import PeerLauncher, ask
from aif.daemon.records import PeerHostedAIM
from aif.errors import ControllerError, MalformedMessage
from aif.workflow import ResolvedWorkflow, load_workflow_text, resolve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Peer:
    """Controller B in its own process; its output is collected on a thread."""

    def __init__(self, state_dir: Path, *offers: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))  # its hosts import tests.helpers
        command = [sys.executable, "-m", "tests.helpers.peer_controller"]
        command += ["--state-dir", str(state_dir)]
        for offer in offers:
            command += ["--offer", offer]
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("serving on "):
                self.address = line.split()[-1]
                break
        else:
            raise AssertionError("the peer controller did not start:\n" + self.output)
        self._reader = threading.Thread(target=self.lines.extend, args=(self.proc.stdout,))
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        status = self.proc.wait(timeout=20)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return status

    async def call(self, op: str, **params: Any) -> Any:
        ctx = zmq.asyncio.Context()
        try:
            return await ask(ctx, self.address, op, 10.0, **params)
        finally:
            ctx.destroy(linger=0)

    async def hosted(self) -> list[PeerHostedAIM]:
        """The AIMs B hosts (or hosted) for peers, as ``aif aims`` lists them."""
        listing = (await self.call("aims"))["peer_hosts"]
        return [PeerHostedAIM.from_json(h, f"the peer at {self.address}") for h in listing]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """Controller B, hosting any type it can load."""
    b = Peer(tmp_path_factory.mktemp("peer-b"))
    yield b
    assert b.stop() == 0, b.output


def free_address() -> str:
    """A tcp address nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def relay_workflow(*peers: str, relay_type: str = "relay") -> ResolvedWorkflow:
    return resolve(
        load_workflow_text(
            f"""
name: c2c-relay
aims:
  gen: {{type: source, params: {{records: [1, 2, 3]}}}}
  relay: {{type: {relay_type}, placement: remote, peers: [{", ".join(peers)}]}}
  sink: {{type: collect}}
connections: [gen.out -> relay.in, relay.out -> sink.in]
outputs: [relay.out]
""",
            "c2c.yml",
        )
    )


def controller(tmp_path: Path, tcp: str | None = "tcp://127.0.0.1:*") -> Controller:
    return Controller(tmp_path / "a", tcp=tcp, ready_timeout=30)


def gone(pid: int) -> bool:
    """The process has ended (a zombie no one reaped counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_an_aim_hosted_by_a_peer_runs_and_its_host_leaves_after(
    peer: Peer, tmp_path: Path
) -> None:
    async with controller(tmp_path) as a:
        run = await a.launch(relay_workflow(peer.address))
        launcher = run.handles["relay"].launcher
        assert isinstance(launcher, PeerLauncher)
        hosted = await peer.hosted()
        result = await a.wait_run(run, timeout=30)
        a_address = a.endpoints["tcp"]
    assert result.ok, result.error
    assert result.outputs["relay.out"] == [1, 2, 3]
    assert result.results["sink"]["received"] == 3
    assert launcher.peer == peer.address and launcher.host_pid is not None
    assert launcher.description == (
        f"host on controller {peer.address} (pid {launcher.host_pid} on {socket.gethostname()})"
    )
    mine = [h for h in hosted if h.workflow == run.id]
    assert len(mine) == 1
    assert mine[0].aim == "relay" and mine[0].type == "relay"
    assert mine[0].pid == launcher.host_pid and mine[0].controller == a_address
    assert mine[0].state == "running"

    async def exited() -> PeerHostedAIM | None:
        listing = await peer.hosted()
        return next((h for h in listing if h.workflow == run.id and h.state != "running"), None)

    deadline = time.monotonic() + 10
    while (record := await exited()) is None:
        assert time.monotonic() < deadline, "the host did not end after the run"
        await asyncio.sleep(0.1)
    assert record.state == "exited 0"
    assert gone(launcher.host_pid)


async def test_an_unreachable_first_peer_is_skipped_for_the_next(
    peer: Peer, tmp_path: Path
) -> None:
    dead = free_address()
    async with controller(tmp_path) as a:
        started = time.monotonic()
        result = await a.run_workflow(relay_workflow(dead, peer.address), timeout=30)
        took = time.monotonic() - started
    assert result.ok, result.error
    assert result.outputs["relay.out"] == [1, 2, 3]
    assert took < 15


async def test_no_reachable_peer_fails_the_run_naming_each_peer_and_why(tmp_path: Path) -> None:
    first, second = free_address(), free_address()
    async with controller(tmp_path) as a:
        started = time.monotonic()
        result = await a.run_workflow(relay_workflow(first, second), timeout=30)
        took = time.monotonic() - started
    assert result.state is RunState.FAILED
    error = result.error or ""
    assert "AIM 'relay' failed" in error and "no peer controller could host it" in error
    for address in (first, second):
        assert f"{address}: nothing answers there (the connection was refused" in error
    assert took < 5, f"took {took:.1f} s"


async def test_a_peer_refuses_a_type_it_does_not_offer_and_says_why(tmp_path: Path) -> None:
    b = Peer(tmp_path / "b", "relay")
    try:
        async with controller(tmp_path) as a:
            result = await a.run_workflow(
                relay_workflow(b.address, relay_type="checksum"), timeout=30
            )
            by_class_path = await a.run_workflow(
                relay_workflow(b.address, relay_type="'aif.aims.builtin:Relay'"), timeout=30
            )
    finally:
        assert b.stop() == 0, b.output
    assert result.state is RunState.FAILED
    assert (
        f"{b.address}: the controller on {socket.gethostname()} does not host AIM type "
        "'checksum' for peers (it offers: relay); ask a peer that offers it, or add "
        "--offer checksum" in (result.error or "")
    )
    assert "asks to host AIM 'relay' (type checksum)" in b.output  # who asked is logged
    assert by_class_path.ok, by_class_path.error  # the offered type, by its class path


@pytest.mark.slow
async def test_losing_the_peer_mid_run_fails_the_run_naming_it_and_its_host_dies_too(
    tmp_path: Path,
) -> None:
    b = Peer(tmp_path / "b")
    wf = resolve(
        load_workflow_text(
            f"""
name: c2c-ticking
aims:
  tick:
    type: 'tests.helpers.aims:Ticker'
    placement: remote
    peers: [{b.address}]
    heartbeat_timeout: 10   # the peer's watchdog, not the heartbeats, must notice
    params: {{interval: 0.05}}
  sink: {{type: collect}}
connections: [tick.out -> sink.in]
""",
            "ticking.yml",
        )
    )
    pids: list[int] = []

    def on_event(event: Event) -> None:
        if event.source == "tick" and event.topic == "progress":
            pids.append(int(event.data["pid"]))

    try:
        async with controller(tmp_path) as a:
            a.subscribe(on_event)
            run = await a.launch(wf)
            await until(lambda: pids)  # the hosted AIM is ticking
            b.stop(signal.SIGKILL)
            started = time.monotonic()
            result = await a.wait_run(run, timeout=30)
            took = time.monotonic() - started
    finally:
        b.stop()
    assert result.state is RunState.FAILED
    assert "AIM 'tick' failed" in (result.error or "")
    assert f"controller {b.address} stopped answering for 3 s" in (result.error or "")
    assert took < 6, f"took {took:.1f} s"
    await until(lambda: gone(pids[0]), timeout=5)  # PR_SET_PDEATHSIG: no orphan host


async def test_a_controller_without_tcp_fails_the_run_naming_listen(
    peer: Peer, tmp_path: Path
) -> None:
    async with controller(tmp_path, tcp=None) as a:
        result = await a.run_workflow(relay_workflow(peer.address), timeout=30)
    assert result.state is RunState.FAILED
    assert "the controller must listen on tcp for peers' hosts" in (result.error or "")
    assert "aif run --listen tcp://HOST:*" in (result.error or "")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"type": "relay", "name": "Bad Name", "workflow": "w", "controller": "tcp://h:1"},
            "name: String should match pattern",
        ),
        ({"name": "relay", "controller": "tcp://h:1"}, "type: Field required"),
        (
            {"type": "relay", "name": "r", "workflow": "w", "controller": "ipc:///x"},
            "controller: String should match pattern '^tcp://'",
        ),
    ],
)
async def test_a_malformed_request_is_refused_naming_the_field_and_the_peer_goes_on(
    peer: Peer, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(MalformedMessage, match="invalid User API request") as caught:
        await peer.call("peer.host", **params)
    assert message in str(caught.value)
    offer = await peer.call("peer.offer")
    assert offer["types"] is None and offer["machine"] == socket.gethostname()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"type": "relya"}, "cannot load AIM type 'relya': unknown AIM type 'relya'"),
        ({"controller": "tcp://0.0.0.0:5"}, "controller: tcp://0.0.0.0:5 means every interface"),
        ({"controller": "tcp://nohost"}, "controller: 'tcp://nohost' is not a tcp address"),
    ],
)
async def test_a_host_request_the_peer_cannot_serve_is_refused_with_the_fix(
    peer: Peer, params: dict[str, Any], message: str
) -> None:
    request = {"type": "relay", "name": "r", "workflow": "w", "controller": "tcp://127.0.0.1:1"}
    with pytest.raises(ControllerError) as caught:
        await peer.call("peer.host", **{**request, **params})
    assert message in str(caught.value)
    assert (await peer.call("peer.offer"))["hosts"] >= 0


@pytest.mark.slow
async def test_a_hung_host_is_ended_by_its_peer_when_the_run_releases_it(
    peer: Peer, tmp_path: Path
) -> None:
    wf = resolve(
        load_workflow_text(
            f"""
name: c2c-hung
aims:
  hang:
    type: 'tests.helpers.aims:Hang'
    placement: remote
    peers: [{peer.address}]
    heartbeat_timeout: 1.0
""",
            "hung.yml",
        )
    )
    async with Controller(tmp_path / "a", tcp="tcp://127.0.0.1:*", stop_grace=1.0) as a:
        result = await a.run_workflow(wf, timeout=30)
    assert result.state is RunState.FAILED
    assert "no heartbeat from its host on controller" in (result.error or "")

    async def state() -> str:
        return next(h.state for h in await peer.hosted() if h.workflow == result.id)

    deadline = time.monotonic() + 12  # released: 2 s to go by itself, SIGTERM, SIGKILL
    while (now := await state()) == "running":
        assert time.monotonic() < deadline, "the released host was not ended"
        await asyncio.sleep(0.2)
    assert now == f"exited {-signal.SIGKILL}"  # its event loop is blocked: SIGTERM waits
