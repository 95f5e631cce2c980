"""The controller daemon for real: a child process, its ipc User API, real AIM processes.

Covers the User API verbs (submit, ps, status, logs, suspend, resume, cancel, aims),
queues and priorities, persistence across ``kill -9`` of the daemon, restarts of jobs
whose AIM host was killed or hung, and the lock that keeps two daemons apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif.daemon.client import Client
from aif.daemon.records import JobState
from aif.errors import DaemonError, JobNotFound, LifecycleError, WorkflowError
from tests.helpers.cli import aif as run_aif
from tests.helpers.daemon import ROOT, DaemonProcess, gone, wait_for

pytestmark = pytest.mark.integration

TRIVIAL = """
name: trivial
aims:
  src: {type: source, params: {records: [1, 2, 3]}}
outputs: [src.out]
"""

TICKER = """
name: ticker
aims:
  tick:
    type: tests.helpers.aims:Ticker
    placement: {placement}
    params: {{interval: 0.05, limit: {limit}}}
    {extra}
outputs: [tick.out]
{policy}
"""


def ticker(
    tmp_path: Path,
    name: str,
    limit: int = 100_000,
    placement: str = "inproc",
    extra: str = "",
    policy: str = "",
) -> Path:
    path = tmp_path / f"{name}.yaml"
    text = TICKER.format(placement=placement, limit=limit, extra=extra, policy=policy)
    path.write_text(text.replace("name: ticker", f"name: {name}"))
    return path


@pytest.fixture
def trivial(tmp_path: Path) -> Path:
    path = tmp_path / "trivial.yaml"
    path.write_text(TRIVIAL)
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(tmp_path / "state", "--instances", "cpu=2").start()
    yield proc
    proc.stop()


def aif(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    state = ("--state-dir", str(state_dir))
    return run_aif(*args, *state, timeout=60, env={"PYTHONPATH": str(ROOT)})


def state_of(client: Client, job: str) -> JobState:
    return client.status(job).job.state


# -- the User API ------------------------------------------------------------------------


def test_submit_runs_a_job_to_success_and_keeps_its_result(
    daemon: DaemonProcess, trivial: Path
) -> None:
    with daemon.client() as client:
        job = client.submit(trivial)
        assert job.id.startswith("trivial-") and job.state is JobState.QUEUED
        assert job.queues == ("cpu",) and job.queue == "cpu"
        done = client.wait(job.id, timeout=30)
        assert done.state is JobState.SUCCEEDED, done
        assert done.final and done.result is not None
        assert done.result["outputs"] == {"src.out": 3}
        assert done.attempts == 1 and done.instance in ("cpu-0", "cpu-1")
        events = list(client.logs(job.id))
        assert all(e.job == job.id for e in events)
        states = [e.data.get("job") for e in events if e.topic == "state"]
        assert states[0] == "queued" and states[-1] == "succeeded"
        assert "running" in states
        assert any(e.source == "src" for e in events)
        # a unique prefix names the job too
        assert client.status(job.id[:-2]).job.id == job.id


def test_the_cli_submits_lists_shows_and_follows(daemon: DaemonProcess, trivial: Path) -> None:
    state_dir = daemon.state_dir
    submitted = aif(
        "submit", str(trivial), "--set", "aims.src.params.records=[7]", state_dir=state_dir
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    assert job.startswith("trivial-") and "aif logs" in submitted.stderr
    follow = aif("logs", job, "--follow", state_dir=state_dir)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert f"job {job} succeeded" in follow.stdout
    listing = json.loads(aif("ps", "--json", state_dir=state_dir).stdout)
    assert [j["id"] for j in listing] == [job]
    status = json.loads(aif("status", job, "--json", state_dir=state_dir).stdout)
    assert status["job"]["overrides"] == ["aims.src.params.records=[7]"]
    assert status["job"]["result"]["outputs"] == {"src.out": 1}
    # the JSON the daemon sent, the derived keys included
    assert status["job"]["final"] is True and status["job"]["queue"] == "cpu"
    assert list(status) == ["job", "aims"] and status["aims"] == []
    table = aif("ps", state_dir=state_dir)
    assert job in table.stdout and "succeeded" in table.stdout
    aims = json.loads(aif("aims", "--json", state_dir=state_dir).stdout)
    assert [i["name"] for i in aims["instances"]] == ["cpu-0", "cpu-1"]
    status_text = aif("controller", "status", state_dir=state_dir)
    assert status_text.returncode == 0 and f"pid {daemon.pid}" in status_text.stdout


def test_bad_input_gets_a_clear_error_and_the_daemon_goes_on(
    daemon: DaemonProcess, tmp_path: Path, trivial: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\naims:\n  src: {type: no-such-aim}\n")
    with daemon.client() as client:
        with pytest.raises(WorkflowError, match="no-such-aim"):
            client.submit(broken)
        with pytest.raises(JobNotFound, match="aif ps"):
            client.status("nope")
        with pytest.raises(LifecycleError, match="job states are"):
            client.jobs(["nonsense"])
        with pytest.raises(DaemonError, match="cannot read workflow file"):
            client.submit(tmp_path / "missing.yaml")
        with pytest.raises(Exception, match="job: String should have at least 1 character"):
            client.call("status", job="")
        with pytest.raises(Exception, match="op"):
            client.call("format-disk")
        # garbage bytes on the socket
        client._sock.send(b"\xc1\xc1 not msgpack")
        job = client.submit(trivial)
        assert client.wait(job.id, timeout=30).state is JobState.SUCCEEDED
    cli = aif("status", "nope", state_dir=daemon.state_dir)
    assert cli.returncode == 2 and "no job 'nope'" in cli.stderr


def test_suspend_resume_and_cancel_a_running_job(daemon: DaemonProcess, tmp_path: Path) -> None:
    with daemon.client() as client:
        job = client.submit(ticker(tmp_path, "tick")).id
        wait_for(lambda: state_of(client, job) is JobState.RUNNING, what="running")
        with pytest.raises(LifecycleError, match="only held and suspended"):
            client.resume(job)
        assert client.suspend(job).state is JobState.SUSPENDED
        wait_for(
            lambda: any(
                e.data.get("state") == "suspended" for e in client.logs(job) if e.source == "tick"
            ),
            what="the AIM to pause",
        )
        assert client.resume(job).state is JobState.RUNNING
        assert client.cancel(job).state is JobState.STOPPING
        final = client.wait(job, timeout=20)
        assert final.state is JobState.CANCELLED
        with pytest.raises(LifecycleError, match="already ended"):
            client.cancel(job)


def test_held_and_queued_jobs_can_be_released_or_cancelled(
    daemon: DaemonProcess, trivial: Path
) -> None:
    with daemon.client() as client:
        held = client.submit(trivial, hold=True)
        assert held.state is JobState.HELD
        queued_then_cancelled = client.submit(trivial, hold=True).id
        assert client.cancel(queued_then_cancelled).state is JobState.CANCELLED
        assert client.resume(held.id).state is JobState.QUEUED
        assert client.wait(held.id, timeout=30).state is JobState.SUCCEEDED
        assert state_of(client, queued_then_cancelled) is JobState.CANCELLED


# -- queues and scheduling -----------------------------------------------------------------


def test_a_full_queue_makes_jobs_wait_and_priority_goes_first(tmp_path: Path) -> None:
    proc = DaemonProcess(tmp_path / "state", "--instances", "cpu=1").start()
    try:
        with proc.client() as client:
            busy = client.submit(ticker(tmp_path, "busy")).id
            wait_for(lambda: state_of(client, busy) is JobState.RUNNING, what="running")
            low = client.submit(ticker(tmp_path, "low", limit=2)).id
            high = client.submit(ticker(tmp_path, "high", limit=2), priority=5).id
            status = wait_for(lambda: client.status(low).waiting, what="a reason")
            assert status == "waiting for a cpu instance (1 of 1 slots busy)"
            client.cancel(busy)
            client.wait(low, timeout=30)
            high_job = client.status(high).job
            low_job = client.status(low).job
            assert high_job.started is not None and low_job.started is not None
            assert high_job.started < low_job.started
    finally:
        proc.stop()


def test_a_job_no_instance_can_run_waits_with_the_reason(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    path = tmp_path / "gpu.yaml"
    path.write_text(
        "name: gpu\naims:\n  sim: {type: analog-simulator, params: {device: cuda}}\n"
        "inputs: {sim.jobs: []}\n"
    )
    with daemon.client() as client:
        job = client.submit(path)
        assert job.queues == ("cuda",)
        reason = wait_for(lambda: client.status(job.id).waiting, what="a reason")
        assert "no instance serves queue 'cuda'" in reason
        assert "--instances cuda=1" in reason


# -- persistence ---------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_of_the_daemon_loses_nothing(tmp_path: Path, trivial: Path) -> None:
    state_dir = tmp_path / "state"
    first = DaemonProcess(state_dir, "--instances", "cpu=1").start()
    with first.client() as client:
        done = client.submit(trivial).id
        client.wait(done, timeout=30)
        requeued = client.submit(ticker(tmp_path, "again", limit=20)).id
        wait_for(lambda: state_of(client, requeued) is JobState.RUNNING, what="running")
        interrupted_path = ticker(tmp_path, "stopped", limit=20, policy="on_restart: interrupt")
        waiting = client.submit(trivial).id
        interrupted = client.submit(interrupted_path, priority=9).id
        assert state_of(client, waiting) is JobState.QUEUED
    first.kill9()
    # a new daemon on the same state directory settles and goes on
    second = DaemonProcess(state_dir, "--instances", "cpu=2").start()
    try:
        with second.client() as client:
            result = client.status(done).job.result
            assert result is not None and result["outputs"] == {"src.out": 3}
            assert client.wait(requeued, timeout=30).state is JobState.SUCCEEDED
            assert client.wait(waiting, timeout=30).state is JobState.SUCCEEDED
            record = client.wait(interrupted, timeout=30)
            # it was queued, not running, when the daemon died: it simply runs
            assert record.state is JobState.SUCCEEDED
            events = [e.data.get("detail", "") for e in client.logs(requeued)]
            assert any("re-queued: the controller restarted" in d for d in events)
    finally:
        second.stop()


@pytest.mark.slow
def test_a_running_job_is_interrupted_when_its_workflow_says_so(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = DaemonProcess(state_dir, "--instances", "cpu=1").start()
    path = ticker(tmp_path, "fragile", policy="on_restart: interrupt")
    with first.client() as client:
        job = client.submit(path).id
        wait_for(lambda: state_of(client, job) is JobState.RUNNING, what="running")
    first.kill9()
    second = DaemonProcess(state_dir).start()
    try:
        with second.client() as client:
            record = client.status(job).job
            assert record.state is JobState.INTERRUPTED
            assert "the controller stopped while it was running" in record.detail
    finally:
        second.stop()


def test_sigterm_drains_and_requeues_live_jobs(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = DaemonProcess(state_dir, "--instances", "cpu=1", "--drain-timeout", "10").start()
    with first.client() as client:
        job = client.submit(ticker(tmp_path, "drained", limit=40)).id
        wait_for(lambda: state_of(client, job) is JobState.RUNNING, what="running")
    assert first.stop() == 0
    assert not (state_dir / "controller.json").exists()
    second = DaemonProcess(state_dir).start()
    try:
        with second.client() as client:
            assert client.wait(job, timeout=30).state is JobState.SUCCEEDED
            assert client.status(job).job.attempts == 2
    finally:
        second.stop()


def test_two_daemons_cannot_share_a_state_directory(daemon: DaemonProcess) -> None:
    second = aif("controller", "start", state_dir=daemon.state_dir)
    assert second.returncode == 2
    assert f"(pid {daemon.pid}) already uses state directory" in second.stderr


def test_bad_daemon_settings_are_refused_naming_the_flag(tmp_path: Path) -> None:
    drain = aif("controller", "start", "--drain-timeout", "0", state_dir=tmp_path / "s")
    assert drain.returncode == 2 and "--drain-timeout must be positive" in drain.stderr
    instances = aif("controller", "start", "--instances", "gpu", state_dir=tmp_path / "s")
    assert instances.returncode == 2 and "is not QUEUE=COUNT" in instances.stderr


def test_clients_say_when_no_daemon_runs(tmp_path: Path) -> None:
    result = aif("ps", state_dir=tmp_path / "nothing")
    assert result.returncode == 2
    assert "no controller daemon runs on state directory" in result.stderr
    assert "aif controller start" in result.stderr
    status = aif("controller", "status", state_dir=tmp_path / "nothing")
    assert status.returncode == 1


def test_detach_starts_a_background_daemon_and_stop_ends_it(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    started = aif("controller", "start", "--detach", "--instances", "cpu=1", state_dir=state_dir)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "controller daemon started" in started.stdout
    pid = json.loads((state_dir / "controller.json").read_text())["pid"]
    stopped = aif("controller", "stop", state_dir=state_dir)
    assert stopped.returncode == 0 and f"(pid {pid}) stopped" in stopped.stdout
    assert gone(pid)


# -- fault tolerance -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_whose_aim_host_is_killed_is_retried_on_another_instance(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    restart = "restart: on-failure\n    max_restarts: 1\n    restart_backoff: 0.2"
    path = ticker(tmp_path, "retried", limit=30, placement="process", extra=restart)
    with daemon.client() as client:
        job = client.submit(path).id
        wait_for(lambda: state_of(client, job) is JobState.RUNNING, what="running")
        first = client.status(job)
        pid = first.aims[0].pid
        assert pid is not None
        # what the AIM declared where it runs, in status and in the daemon's AIM list
        assert first.aims[0].capabilities == {"counts": "int64"}
        assert [h.capabilities for h in client.aims().hosts] == [{"counts": "int64"}]
        os.kill(pid, signal.SIGKILL)
        record = client.wait(job, timeout=60)
        assert record.state is JobState.SUCCEEDED, record
        assert record.attempts == 2
        assert record.instance != first.job.instance
        details = [e.data.get("message", "") for e in client.logs(job) if e.topic == "log"]
        assert any("restart 1 of 1 for AIM 'tick'" in d and "SIGKILL" in d for d in details)


@pytest.mark.slow
def test_a_job_fails_with_the_cause_when_restarts_run_out(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    path = ticker(tmp_path, "doomed", placement="process")
    with daemon.client() as client:
        job = client.submit(path).id
        wait_for(lambda: client.status(job).aims and client.status(job).aims[0].pid, what="pid")
        pid = client.status(job).aims[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        record = client.wait(job, timeout=30)
        assert record.state is JobState.FAILED
        assert "AIM 'tick' failed" in record.detail and "SIGKILL" in record.detail


@pytest.mark.slow
def test_a_hung_aim_is_detected_by_its_heartbeats(daemon: DaemonProcess, tmp_path: Path) -> None:
    path = tmp_path / "hung.yaml"
    path.write_text(
        "name: hung\naims:\n  h:\n    type: tests.helpers.aims:Hang\n    placement: process\n"
        "    heartbeat_timeout: 1.5\n"
    )
    with daemon.client() as client:
        job = client.submit(path).id
        record = client.wait(job, timeout=30)
        assert record.state is JobState.FAILED
        assert "no heartbeat" in record.detail
        pids = [e.data.get("pid") for e in client.logs(job) if e.source == "h"]
        host = next(p for p in pids if p)
        wait_for(lambda: gone(host), timeout=15, what="the hung host to be reaped")


# -- scale ---------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_thousand_queued_jobs_run_with_bounded_memory(tmp_path: Path, trivial: Path) -> None:
    proc = DaemonProcess(tmp_path / "state", "--instances", "cpu=2x4").start()
    try:
        with proc.client(timeout=30) as client:
            ids = [client.submit(trivial).id for _ in range(100)]
            wait_for(
                lambda: not client.jobs(["queued", "starting", "running"]),
                timeout=120,
                what="the first 100 jobs",
            )
            after_100 = rss_kib(proc.pid)
            # Eight tickers take every slot (cpu=2x4), so the next 900 must queue up
            # however fast they would run: a race between submit and run otherwise.
            blockers = [client.submit(ticker(tmp_path, f"block{n}")).id for n in range(8)]
            wait_for(
                lambda: all(state_of(client, b) is JobState.RUNNING for b in blockers),
                what="eight tickers running",
            )
            ids += [client.submit(trivial).id for _ in range(900)]
            queued = len(client.jobs(["queued"]))
            for blocker in blockers:
                client.cancel(blocker)
            wait_for(
                lambda: not client.jobs(["queued", "starting", "running"]),
                timeout=240,
                what="all 1,000 jobs",
            )
            after_1000 = rss_kib(proc.pid)
            done = client.jobs(["succeeded"])
            assert len(done) == 1000, client.jobs(["failed"])[:3]
            assert {j.id for j in done} == set(ids)
            assert all(j.state is JobState.SUCCEEDED for j in done)
            counts = client.ping().jobs
            assert counts["succeeded"] == 1000
    finally:
        proc.stop()
    assert queued > 100  # they did queue up, not run as fast as they came
    # 900 more jobs in the database, none kept in the daemon's memory
    assert after_1000 - after_100 < 40 * 1024, (after_100, after_1000)


# -- controllers that work together ------------------------------------------------------------


def tcp_api(proc: DaemonProcess) -> str:
    return next(a for a in proc.info()["api"] if a.startswith("tcp://"))


@pytest.mark.slow
def test_a_job_uses_an_aim_on_another_daemon_and_moves_when_it_is_lost(tmp_path: Path) -> None:
    peer_b = DaemonProcess(tmp_path / "b", "--api", "tcp://127.0.0.1:*").start()
    peer_c = DaemonProcess(tmp_path / "c", "--api", "tcp://127.0.0.1:*").start()
    b, c = tcp_api(peer_b), tcp_api(peer_c)
    # basic-profile peers serve tcp only with their token: the home daemon is given both
    tokens = ",".join(
        f"{address}={(peer.state_dir / 'api.token').read_text().strip()}"
        for address, peer in ((b, peer_b), (c, peer_c))
    )
    home = DaemonProcess(
        tmp_path / "a", "--instances", "cpu=1", env={"AIF_PEER_TOKENS": tokens}
    ).start()
    try:
        restart = f"restart: on-failure\n    restart_backoff: 0.2\n    peers: [{b}, {c}]"
        path = ticker(tmp_path, "shared", limit=60, placement="remote", extra=restart)
        with home.client() as client, peer_b.client() as on_b:
            job = client.submit(path).id
            hosted = wait_for(lambda: on_b.aims().peer_hosts, what="B to host the AIM")
            assert hosted[0].workflow == job and hosted[0].aim == "tick"
            wait_for(lambda: state_of(client, job) is JobState.RUNNING, what="running")
            peer_b.kill9()
            record = client.wait(job, timeout=60)
            assert record.state is JobState.SUCCEEDED, record
            assert record.attempts == 2
            messages = [e.data.get("message", "") for e in client.logs(job)]
            assert any(f"controller {b} stopped answering" in m for m in messages), messages
        with peer_c.client() as on_c:
            assert [h.workflow for h in on_c.aims().peer_hosts] == [job]
    finally:
        home.stop()
        peer_c.stop()
        if peer_b.proc is not None and peer_b.proc.poll() is None:
            peer_b.stop()
