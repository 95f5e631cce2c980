"""A controller daemon in the secure profile, as a real process, over real tcp sockets.

``aif controller start --profile secure --api tcp://127.0.0.1:*``: the tcp User API is
CURVE with the daemon's identity and lets in only trusted client keys (and its own);
an unknown client is refused in the handshake, logged, and told why, while the daemon
goes on serving; the ipc User API stays plain. Two secure daemons that trust each
other host AIMs for each other (C2C); one that does not trust the asker refuses it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aif import Client, Controller, DaemonError
from aif.daemon.client import read_daemon_file
from aif.daemon.records import JobState
from aif.security.curve import (
    OWN_KEY_NAME,
    ControllerCurve,
    CurvePair,
    Gatekeeper,
    key_text,
    parse_curve_key,
)
from aif.security.keys import KeyRing
from aif.workflow import ResolvedWorkflow, load_workflow_text, resolve
from tests.helpers.daemon import ROOT, DaemonProcess, wait_for

pytestmark = pytest.mark.integration

AIF = [sys.executable, "-m", "aif"]
TINY = """name: tiny
aims:
  gen: {type: source, params: {records: [1, 2, 3]}}
  sink: {type: collect}
connections: [gen.out -> sink.in]
"""


@dataclass
class Person:
    """A state directory with an identity: a client machine, or a controller's."""

    state_dir: Path
    key: str  # curve:KEY

    @classmethod
    def new(cls, state_dir: Path) -> Person:
        public = KeyRing(state_dir).init()
        return cls(state_dir, key_text(public.curve))


@dataclass
class Secure:
    daemon: DaemonProcess
    alice: Person

    @property
    def tcp(self) -> str:
        return next(a for a in self.daemon.info()["api"] if a.startswith("tcp://"))

    @property
    def key(self) -> str:
        key: str = self.daemon.info()["curve"]
        return key


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    """One secure daemon for the module; it trusts alice (a client on another state dir)."""
    root = tmp_path_factory.mktemp("secure")
    server = Person.new(root / "server")
    alice = Person.new(root / "alice")
    KeyRing(server.state_dir).trust("alice", alice.key)
    daemon = DaemonProcess(
        server.state_dir, "--profile", "secure", "--api", "tcp://127.0.0.1:*"
    ).start()
    yield Secure(daemon, alice)
    assert daemon.stop() == 0, daemon.text()


def test_controller_json_names_the_profile_and_the_key(secure: Secure) -> None:
    info = secure.daemon.info()
    assert info["profile"] == "secure"
    assert info["curve"] == key_text(KeyRing(secure.daemon.state_dir).public().curve)


def test_attest_signs_what_the_daemon_loaded_and_verify_catches_tampering(
    secure: Secure, tmp_path: Path
) -> None:
    workflow = tmp_path / "stored.yml"
    workflow.write_text(
        "name: stored\nprofile: secure\naims:\n"
        "  keeper: {type: 'tests.helpers.aims:StorageUser', placement: process}\n"
        "inputs:\n  keeper.in: [calibration]\n"
    )
    with secure.daemon.client() as client:
        job = client.submit(workflow)
        assert client.wait(job.id, timeout=60).state is JobState.SUCCEEDED
    sealed = secure.daemon.state_dir / "secure" / "aims" / "keeper" / "notes" / "calibration"
    assert sealed.is_file() and b"calibration" not in sealed.read_bytes()

    state = ["--state-dir", str(secure.daemon.state_dir)]
    report = tmp_path / "report.json"
    nonce = "00112233445566778899aabbccddeeff"
    got = subprocess.run([*AIF, "attest", *state, "--nonce", nonce, "-o", str(report)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert got.returncode == 0, got.stderr
    signer = KeyRing(secure.daemon.state_dir).public().texts()["ed25519"]
    envelope = json.loads(report.read_text())
    aims = {a["type"]: a for a in envelope["report"]["aims"]}
    assert aims["tests.helpers.aims:StorageUser"]["digest"].startswith("sha256:")
    assert envelope["report"]["profile"] == "secure"

    def verify(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*AIF, "attest", "--verify", str(report), "--key", signer, *extra],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip

    ok = verify("--nonce", nonce, "--expect", str(report))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"verified: {signer}") and "digests checked" in ok.stdout
    stale = verify("--nonce", "ff" * 16)
    assert stale.returncode == 1 and "nonce" in stale.stderr

    envelope["report"]["aims"][0]["digest"] = "sha256:" + "0" * 64
    report.write_text(json.dumps(envelope))
    forged = verify("--nonce", nonce)
    assert forged.returncode == 1 and "does not verify" in forged.stderr


def test_a_trusted_client_submits_and_reads_status_over_tcp(secure: Secure, tmp_path: Path) -> None:
    workflow = tmp_path / "tiny.yml"
    workflow.write_text(TINY)
    with Client(secure.tcp, state_dir=secure.alice.state_dir, server_key=secure.key) as client:
        assert client.keys is not None
        job = client.submit(workflow)
        record = client.wait(job.id, timeout=30)
        assert record.state is JobState.SUCCEEDED, client.status(job.id)
        assert client.status(job.id).job.id == job.id


def test_the_local_cli_dials_tcp_with_the_key_from_controller_json(secure: Secure) -> None:
    state_dir = str(secure.daemon.state_dir)
    done = subprocess.run(
        [*AIF, "controller", "status", "--controller", secure.tcp, "--state-dir", state_dir],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"profile:    secure, CURVE key {secure.key}" in done.stdout


def test_an_unknown_client_is_refused_and_logged_and_the_daemon_goes_on(
    secure: Secure, tmp_path: Path
) -> None:
    mallory = Person.new(tmp_path / "mallory")
    started = time.monotonic()
    with (
        Client(secure.tcp, state_dir=mallory.state_dir, server_key=secure.key) as client,
        pytest.raises(DaemonError, match="refused this client's key") as info,
    ):
        client.ping()
    assert time.monotonic() - started < 5.0  # told at once, not after the call's timeout
    assert "aif keys trust NAME curve:KEY" in str(info.value)
    wait_for(lambda: mallory.key in secure.daemon.text(), what="the refusal in the log")
    line = next(x for x in secure.daemon.text().splitlines() if mallory.key in x)
    assert "refused a CURVE client in domain aif-user-api" in line
    assert f"aif keys trust NAME '{mallory.key}'" in line
    # The daemon goes on serving: the trusted client over tcp, and the ipc User API.
    with Client(secure.tcp, state_dir=secure.alice.state_dir, server_key=secure.key) as client:
        assert client.ping().profile == "secure"
    with secure.daemon.client() as local:
        assert local.address.startswith("ipc://")
        assert local.ping().pid == secure.daemon.pid


def test_a_wrong_server_key_or_a_plain_client_is_told_why(secure: Secure, tmp_path: Path) -> None:
    someone_else = key_text(CurvePair.generate().public)
    with (
        Client(secure.tcp, state_dir=secure.alice.state_dir, server_key=someone_else) as client,
        pytest.raises(DaemonError, match="server key is wrong"),
    ):
        client.ping()
    # No key known for that address on this (empty) state directory: a plain client.
    with (
        Client(secure.tcp, state_dir=tmp_path, timeout=5) as client,
        pytest.raises(DaemonError, match=r"requires CURVE.*--server-key"),
    ):
        assert client.keys is None
        client.ping()
    # Both failed inside libzmq, before any key could be checked; the daemon logs them.
    wait_for(
        lambda: "refused a client of the User API" in secure.daemon.text(),
        what="the failed handshakes in the log",
    )
    assert "it failed the CURVE handshake" in secure.daemon.text()


def test_sighup_reads_the_trusted_keys_again(secure: Secure, tmp_path: Path) -> None:
    carol = Person.new(tmp_path / "carol")

    def ping() -> bool:
        with Client(secure.tcp, state_dir=carol.state_dir, server_key=secure.key) as client:
            try:
                client.ping()
            except DaemonError:
                return False
            return True

    assert not ping()
    KeyRing(secure.daemon.state_dir).trust("carol", carol.key)
    assert secure.daemon.proc is not None
    secure.daemon.proc.send_signal(signal.SIGHUP)
    wait_for(ping, timeout=10, what="carol let in after SIGHUP")
    assert "reloaded the trusted keys" in secure.daemon.text()


def test_the_secure_profile_without_an_identity_names_aif_keys_init(tmp_path: Path) -> None:
    done = subprocess.run(
        [*AIF, "controller", "start", "--profile", "secure", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "aif keys init" in done.stderr + done.stdout


# -- C2C: controllers that host AIMs for each other ----------------------------------------

RELAY = """
name: c2c-secure
profile: secure
aims:
  gen: {{type: source, params: {{records: [1, 2, 3]}}}}
  relay: {{type: relay, placement: remote, peers: [{peer}]}}
  sink: {{type: collect}}
connections: [gen.out -> relay.in, relay.out -> sink.in]
outputs: [relay.out]
"""


def relay_workflow(peer: str) -> ResolvedWorkflow:
    return resolve(load_workflow_text(RELAY.format(peer=peer), "c2c.yml"))


def controller_curve(person: Person, trusted: dict[str, Person], peers: dict[str, str]) -> Any:
    """Person's CURVE side as a daemon builds it from its key ring: its pair, the client keys
    it trusts, and the key it trusts for each peer endpoint (``peers``: endpoint -> key)."""
    identity = KeyRing(person.state_dir).identity()
    clients = {name: parse_curve_key(p.key) for name, p in trusted.items()}
    clients[OWN_KEY_NAME] = identity.curve_public
    by_endpoint = {endpoint: parse_curve_key(key) for endpoint, key in peers.items()}
    pair = CurvePair(identity.curve_public, identity.curve_secret)
    return identity, ControllerCurve(pair, clients, by_endpoint.get)


@pytest.fixture(scope="module")
def peer_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Secure, Person]]:
    """Controller B (a secure daemon) and controller A, whose key B trusts."""
    root = tmp_path_factory.mktemp("c2c")
    a, b = Person.new(root / "a"), Person.new(root / "b")
    KeyRing(b.state_dir).trust("a", a.key)
    daemon = DaemonProcess(b.state_dir, "--profile", "secure", "--api", "tcp://127.0.0.1:*")
    daemon.start()
    yield Secure(daemon, a), a
    assert daemon.stop() == 0, daemon.text()


async def test_two_secure_controllers_that_trust_each_other_share_an_aim(
    peer_b: tuple[Secure, Person],
) -> None:
    b, a = peer_b
    b_person = Person(b.daemon.state_dir, b.key)
    identity, curve = controller_curve(a, {"b": b_person}, {b.tcp: b.key})
    async with Controller(
        a.state_dir, tcp="tcp://127.0.0.1:*", curve=curve, identity=identity, ready_timeout=30
    ) as controller:
        result = await controller.run_workflow(relay_workflow(b.tcp), timeout=30)
    assert result.ok, f"{result.error}\n{b.daemon.text()[-3000:]}"
    assert result.outputs["relay.out"] == [1, 2, 3]
    assert result.results["sink"]["received"] == 3
    # B's host dialled A's AIM API with B's identity, handed on through its stdin: B's
    # secret key is in no log and on no command line.
    assert KeyRing(b.daemon.state_dir).identity().curve_secret.decode() not in b.daemon.text()


async def test_a_peer_that_does_not_trust_the_caller_refuses_it(
    peer_b: tuple[Secure, Person], tmp_path: Path
) -> None:
    b, _ = peer_b
    stranger = Person.new(tmp_path / "x")
    identity, curve = controller_curve(stranger, {}, {b.tcp: b.key})
    async with Controller(
        stranger.state_dir, tcp="tcp://127.0.0.1:*", curve=curve, identity=identity
    ) as controller:
        result = await controller.run_workflow(relay_workflow(b.tcp), timeout=20)
    assert not result.ok
    assert "refused this client's key" in (result.error or ""), result.error
    assert "not trusted there" in (result.error or "")
    wait_for(lambda: stranger.key in b.daemon.text(), what="B logging the refusal")


async def test_a_peer_with_no_trusted_key_is_not_asked_in_the_clear(
    peer_b: tuple[Secure, Person],
) -> None:
    b, a = peer_b
    identity, curve = controller_curve(a, {}, {})  # no key trusted for B's endpoint
    async with Controller(
        a.state_dir, tcp="tcp://127.0.0.1:*", curve=curve, identity=identity
    ) as controller:
        result = await controller.run_workflow(relay_workflow(b.tcp), timeout=20)
    assert not result.ok
    assert f"no CURVE key is trusted for the controller at {b.tcp}" in (result.error or "")
    assert f"--endpoint {b.tcp}" in (result.error or "")


async def test_the_callers_aim_api_refuses_a_host_it_does_not_trust(
    peer_b: tuple[Secure, Person],
) -> None:
    b, a = peer_b
    identity, curve = controller_curve(a, {}, {b.tcp: b.key})  # A does not trust B
    async with Controller(
        a.state_dir, tcp="tcp://127.0.0.1:*", curve=curve, identity=identity, ready_timeout=3
    ) as controller:
        result = await controller.run_workflow(relay_workflow(b.tcp), timeout=20)
        assert controller.ctx is not None
        keeper = Gatekeeper.running(controller.ctx)
        assert keeper is not None
        assert ("aif-aim-api", b.key) in keeper.refused  # B's host, refused and logged
    assert not result.ok


def test_a_protected_identity_is_unlocked_by_a_passphrase_on_stdin(tmp_path: Path) -> None:
    """How ``--detach`` hands the passphrase it asked for to the daemon: a pipe, not argv."""
    KeyRing(tmp_path / "s").init("correct horse")
    env = {k: v for k, v in os.environ.items() if k != "AIF_PASSPHRASE"}
    env["PYTHONPATH"] = str(ROOT)
    start = [*AIF, "controller", "start", "--profile", "secure", "--passphrase-stdin"]
    wrong = subprocess.run(
        [*start, "--state-dir", str(tmp_path / "s")],
        input="wrong\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert wrong.returncode != 0
    assert "wrong passphrase" in wrong.stderr + wrong.stdout
    daemon = subprocess.Popen(
        [*start, "--state-dir", str(tmp_path / "s")],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
        text=True,
    )
    try:
        assert daemon.stdin is not None
        daemon.stdin.write("correct horse\n")
        daemon.stdin.close()
        info = wait_for(lambda: read_daemon_file(tmp_path / "s"), what="the daemon serving")
        assert info["profile"] == "secure"
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0


def test_two_secure_daemons_find_each_others_keys_in_their_key_rings(tmp_path: Path) -> None:
    a, b = Person.new(tmp_path / "a"), Person.new(tmp_path / "b")
    KeyRing(b.state_dir).trust("ctrl-a", a.key)
    daemon_b = DaemonProcess(b.state_dir, "--profile", "secure", "--api", "tcp://127.0.0.1:*")
    daemon_b.start()
    b_api = Secure(daemon_b, a).tcp
    KeyRing(a.state_dir).trust("ctrl-b", b.key, endpoint=b_api)
    daemon_a = DaemonProcess(a.state_dir, "--profile", "secure").start()
    try:
        workflow = tmp_path / "c2c.yml"
        workflow.write_text(RELAY.format(peer=b_api))
        with daemon_a.client() as client:
            job = client.submit(workflow)
            record = client.wait(job.id, timeout=60)
            assert record.state is JobState.SUCCEEDED, client.status(job.id)
    finally:
        assert daemon_a.stop() == 0, daemon_a.text()
        assert daemon_b.stop() == 0, daemon_b.text()
