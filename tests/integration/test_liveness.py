"""Liveness that tells busy from hung, on a machine whose every core is busy with other work.

Real child processes and sockets, a short ``heartbeat_timeout`` (2 s), and one spinning
process per core for the length of each test: an AIM computing in a C call that holds
the GIL longer than its limit is not failed; a stopped (SIGSTOP) one is, within about
its limit, with a message that names it and says why. A remote host, whose CPU time the
controller cannot read, reports it in the heartbeats its thread sends while its event
loop is blocked: computing there is busy, sleeping there (a deadlock) is hung. (A local
deadlock at no CPU: ``test_a_hung_aim_is_failed_by_missing_heartbeats``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from aif import Controller, RunState, WorkflowResult
from aif.communication.events import Event
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration

LIMIT = 2.0


def workflow(text: str):  # type: ignore[no-untyped-def]
    return resolve(load_workflow_text(text, "test.yml"))


@pytest.fixture
def loaded_machine() -> Iterator[int]:
    """One busy-spinning process per core while the test runs."""
    count = os.cpu_count() or 2
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield count
    finally:
        for proc in spinners:
            proc.kill()
        for proc in spinners:
            proc.wait()


async def test_an_aim_holding_the_gil_past_its_limit_on_a_loaded_machine_is_busy_not_failed(
    loaded_machine: int, tmp_path: os.PathLike[str]
) -> None:
    wf = workflow(
        f"""
name: busy
aims:
  hog:
    type: "tests.helpers.liveness_aims:GilHog"
    placement: process
    heartbeat_timeout: {LIMIT}
    params: {{cpu_seconds: 3.0}}
"""
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=60)
    assert result.ok, result.error
    hog = result.results["hog"]
    print(
        f"\nGIL held {hog['wall']:.1f} s ({hog['cpu']:.1f} s CPU) with {loaded_machine} "
        f"spinning processes; longest pause of a Python thread {hog['longest_gil_pause']:.1f} s"
    )
    # The test tested something: no thread of the host could run for longer than the limit.
    assert hog["longest_gil_pause"] > LIMIT


async def _verdict_after(
    controller: Controller, wf: object, name: str, sig: int | None
) -> tuple[WorkflowResult, float]:
    """Run ``wf`` until AIM ``name`` reports its pid, send it ``sig``; the result, and
    the seconds from the signal to the run's failure (not counting the reaping)."""
    pids: list[int] = []
    failed_at: list[float] = []

    def on_event(event: Event) -> None:
        if event.source == name and event.topic == "progress":
            pids.append(int(event.data["pid"]))
        if event.topic == "state" and event.data.get("run") == RunState.FAILED.value:
            failed_at.append(time.monotonic())
            if sig is not None and pids:  # judged: let it go, so it is reaped at once
                os.kill(pids[0], signal.SIGCONT)

    controller.subscribe(on_event)
    run = await controller.launch(wf)  # type: ignore[arg-type]
    while not pids:
        assert not run.state.ended, run.error
        await asyncio.sleep(0.02)
    if sig is not None:
        os.kill(pids[0], sig)
    started = time.monotonic()
    try:
        result = await controller.wait_run(run, timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[0], signal.SIGCONT)
    return result, (failed_at or [time.monotonic()])[0] - started


async def test_a_stopped_aim_is_failed_within_about_its_limit_naming_it(
    loaded_machine: int, tmp_path: os.PathLike[str]
) -> None:
    wf = workflow(
        f"""
name: stopped
aims:
  idle: {{type: "tests.helpers.liveness_aims:Idle", placement: process, heartbeat_timeout: {LIMIT}}}
"""
    )
    async with Controller(tmp_path, stop_grace=1.0) as controller:
        result, took = await _verdict_after(controller, wf, "idle", signal.SIGSTOP)
    print(f"\nSIGSTOP to verdict: {took:.2f} s (limit {LIMIT:g} s, {loaded_machine} spinners)")
    print(f"verdict: {result.error}")
    assert result.state is RunState.FAILED
    assert "AIM 'idle' failed: no heartbeat" in (result.error or "")
    assert "stopped (SIGSTOP" in (result.error or "")
    assert took < 60


#: A host started by hand (``placement: remote``), as ``aif aim serve`` starts one.
SERVE = (
    "import asyncio, sys; from aif.host.serve import serve_host; "
    "sys.exit(asyncio.run(serve_host(sys.argv[1], sys.argv[2], None, sys.argv[3])))"
)


@pytest.mark.parametrize(
    ("aim", "verdict"),
    [
        ("tests.helpers.liveness_aims:LoopHog", None),  # computes 3 s in its event loop
        ("tests.helpers.aims:Hang", "its host still answers, but its event loop is blocked"),
    ],
    ids=["busy", "hung"],
)
async def test_a_remote_host_reports_its_cpu_so_busy_is_told_from_hung(
    aim: str, verdict: str | None, loaded_machine: int, tmp_path: os.PathLike[str]
) -> None:
    wf = workflow(
        f"""
name: remote
aims:
  far: {{type: "{aim}", placement: remote, heartbeat_timeout: {LIMIT}}}
"""
    )
    async with Controller(tmp_path, tcp="tcp://127.0.0.1:*", stop_grace=1.0) as controller:
        launch = asyncio.create_task(controller.launch(wf))
        host = subprocess.Popen(
            [sys.executable, "-c", SERVE, controller.endpoints["tcp"], "far", aim],
            stderr=subprocess.DEVNULL,
        )
        try:
            run = await launch
            started = time.monotonic()
            result = await controller.wait_run(run, timeout=60)
            took = time.monotonic() - started
        finally:
            host.kill()
            host.wait()
    print(f"\nremote {aim}: {result.state.value} after {took:.1f} s: {result.error}")
    if verdict is None:
        assert result.ok, result.error
    else:
        assert result.state is RunState.FAILED
        assert "AIM 'far' failed: no heartbeat from its remote host" in (result.error or "")
        assert verdict in (result.error or "")
        assert "it is hung" in (result.error or "")
        assert took < 60
