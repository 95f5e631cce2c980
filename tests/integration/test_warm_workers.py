"""The daemon's warm workers for real: a daemon process, its worker processes, real jobs.

Two jobs forked by one worker, which imported torch once, see a fresh AIM in a fresh
process (fresh random generators, torch's settings, their own storage, nothing on the
instance or in module globals); a worker is replaced after ``--worker-jobs`` forks and
retired once its hosts end; a host killed mid-job fails that job, or retries it per its
restart policy; a worker killed mid-job takes its hosts with it, and a new worker
serves the next job.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aif.daemon.client import Client
from aif.daemon.records import JobRecord, JobState
from tests.helpers.daemon import DaemonProcess, gone, wait_for

pytestmark = pytest.mark.integration

#: Generous: a worker's first import of torch on a busy 2-core machine takes seconds.
JOB_TIMEOUT = 120.0

PROBE = """
name: {name}
aims:
  {aim}:
    type: tests.helpers.warm_aims:WarmProbe
    placement: process
    params: {{seed: {seed}}}
"""

HOLD = """
name: {name}
aims:
  hold:
    type: tests.helpers.warm_aims:WarmHold
    placement: process
    params: {{seconds: {seconds}}}
    {extra}
"""


def write(tmp_path: Path, name: str, template: str, **fields: Any) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(template.format(name=name, **fields))
    return path


def finished(client: Client, job: str) -> JobRecord:
    return client.wait(job, timeout=JOB_TIMEOUT)


def aim_result(record: JobRecord, aim: str) -> dict[str, Any]:
    assert record.result is not None, record
    result: dict[str, Any] = record.result["results"][aim]
    return result


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(tmp_path / "state", "--instances", "cpu=1", "--worker-jobs", "2").start()
    yield proc
    proc.stop()


def test_two_jobs_through_one_warm_worker_each_get_a_fresh_aim(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    with daemon.client() as client:
        first = finished(client, client.submit(write(tmp_path, "one", PROBE, aim="a", seed=7)).id)
        second = finished(client, client.submit(write(tmp_path, "two", PROBE, aim="b", seed=7)).id)
    assert first.state is JobState.SUCCEEDED, first
    assert second.state is JobState.SUCCEEDED, second
    one, two = aim_result(first, "a"), aim_result(second, "b")
    assert one["ppid"] == two["ppid"]  # forked by the same worker: torch imported once
    assert one["pid"] != two["pid"]  # each job a fresh process
    assert one["torch_was_imported"] and two["torch_was_imported"]  # before the job's code
    # Job one seeded torch and Python with 7 and cut torch to one thread: none of it stays.
    assert two["torch_seed"] not in (one["torch_seed"], "7")
    assert two["torch_draw"] != one["torch_draw"]
    assert two["python_draw"] != one["python_draw"]  # each fork reseeded, not a shared state
    assert two["threads"] == one["threads"]
    assert two["leftover"] is None and one["leftover"] is None
    assert two["module_global"] is None and one["module_global"] is None
    # Each job has the storage its own AIM is granted; job one's key is not in job two's.
    assert one["keys"] == [] and two["keys"] == []
    assert (daemon.state_dir / "aims" / "a" / f"from-{first.id}").exists()


def test_a_worker_is_replaced_after_worker_jobs_forks(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    workers = []
    with daemon.client() as client:
        for i in range(3):
            job = client.submit(write(tmp_path, f"hold{i}", HOLD, seconds=0, extra="")).id
            record = finished(client, job)
            assert record.state is JobState.SUCCEEDED, record
            workers.append(aim_result(record, "hold")["ppid"])
    assert workers[0] == workers[1]  # --worker-jobs 2: the first worker forks two hosts
    assert workers[2] != workers[0]
    wait_for(lambda: gone(workers[0]), timeout=30, what="the replaced worker to exit")


def test_suspend_resume_and_stop_reach_a_warm_worker_which_serves_on(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    held = write(tmp_path, "held", HOLD, seconds=60, extra="")
    with daemon.client() as client:
        job = client.submit(held).id
        worker = wait_for(lambda: _running_pid(client, job), timeout=JOB_TIMEOUT, what="running")
        client.suspend(job)
        wait_for(lambda: client.status(job).job.state is JobState.SUSPENDED, what="suspended")
        client.resume(job)
        wait_for(lambda: client.status(job).job.state is JobState.RUNNING, what="running again")
        client.cancel(job)  # a stop: the AIM ends cleanly; its worker forks the next one
        record = finished(client, job)
        assert record.state is JobState.CANCELLED, record
        held = aim_result(record, "hold")
        assert held["pid"] == worker
        again = finished(
            client, client.submit(write(tmp_path, "again", HOLD, seconds=0, extra="")).id
        )
        assert again.state is JobState.SUCCEEDED, again
        assert aim_result(again, "hold")["ppid"] == held["ppid"]


def test_a_host_killed_mid_job_retries_the_job_on_a_fresh_fork(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    restart = "restart: on-failure\n    max_restarts: 1\n    restart_backoff: 0.2"
    retried = write(tmp_path, "retried", HOLD, seconds=1.5, extra=restart)
    doomed = write(tmp_path, "doomed", HOLD, seconds=60, extra="")
    with daemon.client() as client:
        job = client.submit(retried).id
        killed = _kill_when_running(client, job)
        record = finished(client, job)
        assert record.state is JobState.SUCCEEDED, record
        assert record.attempts == 2
        assert aim_result(record, "hold")["pid"] != killed
        details = [e.data.get("message", "") for e in client.logs(job) if e.topic == "log"]
        assert any("forked by warm worker" in d and "SIGKILL" in d for d in details), details

        job = client.submit(doomed).id  # no restart policy: the job fails, naming the kill
        killed = _kill_when_running(client, job)
        record = finished(client, job)
        assert record.state is JobState.FAILED, record
        assert "SIGKILL" in record.detail

        record = finished(client, client.submit(retried).id)
        assert record.state is JobState.SUCCEEDED, record
        assert aim_result(record, "hold")["pid"] != killed
    assert gone(killed)


def _running_pid(client: Client, job: str) -> int | None:
    """The pid of the process hosting ``job``'s AIM once that AIM runs, else None."""
    aims = client.status(job).aims
    return aims[0].pid if aims and aims[0].state == "running" else None


def _kill_when_running(client: Client, job: str) -> int:
    """SIGKILL the worker that hosts ``job``'s AIM once it runs; its pid."""
    worker = wait_for(lambda: _running_pid(client, job), timeout=JOB_TIMEOUT, what="running")
    assert worker != os.getpid()
    os.kill(worker, signal.SIGKILL)
    return int(worker)


def test_a_worker_killed_mid_job_takes_its_host_along_and_a_new_worker_serves_on(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    doomed = write(tmp_path, "doomed", HOLD, seconds=60, extra="")
    with daemon.client() as client:
        job = client.submit(doomed).id
        host = wait_for(lambda: _running_pid(client, job), timeout=JOB_TIMEOUT, what="running")
        worker = _parent_of(host)
        os.kill(worker, signal.SIGKILL)
        record = finished(client, job)
        assert record.state is JobState.FAILED, record
        wait_for(lambda: gone(host), timeout=30, what="the orphaned host to leave")
        again = finished(
            client, client.submit(write(tmp_path, "again", HOLD, seconds=0, extra="")).id
        )
        assert again.state is JobState.SUCCEEDED, again
        assert aim_result(again, "hold")["ppid"] not in (worker, 1)


def _parent_of(pid: int) -> int:
    """The parent pid of ``pid``, from ``/proc``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])
