"""``aif ps``, ``status`` and ``logs`` read a state directory's jobs when no daemon runs:
from its SQLite database, read-only, saying so, and leaving the file as it was."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from aif.daemon.records import JobState
from tests.helpers.cli import aif as run_aif
from tests.helpers.daemon import ROOT, DaemonProcess

pytestmark = pytest.mark.integration

WORKFLOW = """
name: counted
aims:
  src: {type: source, params: {records: [1, 2, 3]}}
outputs: [src.out]
"""


def aif(*args: str) -> subprocess.CompletedProcess[str]:
    return run_aif(
        *args,
        timeout=120,
        env={"PYTHONPATH": str(ROOT)},
        unset=("AIF_CONTROLLER", "AIF_TOKEN"),
    )


def digest(state: Path) -> str:
    return hashlib.sha256((state / "controller.db").read_bytes()).hexdigest()


def test_jobs_are_listed_shown_and_logged_after_the_daemon_stopped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    workflow = tmp_path / "counted.yaml"
    workflow.write_text(WORKFLOW)
    daemon = DaemonProcess(state, "--instances", "cpu=1").start()
    try:
        with daemon.client() as client:
            done = client.wait(client.submit(workflow).id, timeout=60)
            held = client.submit(workflow, hold=True)
    finally:
        assert daemon.stop() == 0
    assert done.state is JobState.SUCCEEDED
    before = digest(state)
    target = ("--state-dir", str(state))

    listed = aif("ps", "--all", "--json", *target)
    assert listed.returncode == 0, listed.stderr
    assert "no daemon runs on" in listed.stderr and "read-only" in listed.stderr
    states = {job["id"]: job["state"] for job in json.loads(listed.stdout)}
    assert states == {done.id: "succeeded", held.id: "held"}

    shown = aif("status", done.id[:12], *target)
    assert shown.returncode == 0, shown.stderr
    assert f"job        {done.id}" in shown.stdout and "succeeded" in shown.stdout

    logged = aif("logs", done.id, "--json", *target)
    assert logged.returncode == 0, logged.stderr
    events = [json.loads(line) for line in logged.stdout.splitlines()]
    assert events and all({"seq", "topic", "source"} <= set(e) for e in events)

    follow = aif("logs", done.id, "--follow", *target)
    assert follow.returncode != 0 and "leave out --follow" in follow.stderr
    missing = aif("status", "no-such-job", *target)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert digest(state) == before  # read-only: the file is as the daemon left it


def test_a_state_directory_no_daemon_ever_used_says_so(tmp_path: Path) -> None:
    done = aif("ps", "--state-dir", str(tmp_path / "empty"))
    assert done.returncode != 0
    assert "no controller daemon runs on state directory" in done.stderr
    assert "aif controller start" in done.stderr and "read-only" not in done.stderr
