"""Whole workflows through a real controller: real hosts, processes and ZeroMQ sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aif import Controller, RunState
from aif.communication.events import Event
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration


def workflow(text: str):  # type: ignore[no-untyped-def]
    return resolve(load_workflow_text(text, "test.yml"))


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_three_aims_two_processes_typed_records_and_16mib_tensor(tmp_path: Path) -> None:
    wf = workflow(
        """
name: three-stage
aims:
  gen:
    type: tensor-source
    placement: process
    params: {shape: [2048, 2048], count: 2, seed: 7}
  relay:
    type: relay
  sink:
    type: collect
  frames:
    type: tests.helpers.aims:FrameSource
    placement: process
    params: {count: 5}
  check:
    type: tests.helpers.aims:FrameCheck
connections:
  - gen.out -> relay.in
  - relay.out -> sink.in
  - frames.out -> check.in
outputs: [relay.out]
"""
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=120)
    assert result.ok, result.error
    sent = result.results["gen"]["digests"]
    assert len(sent) == 2
    assert result.results["sink"]["digests"] == sent
    from aif.aims.builtin import digest

    collected = result.outputs["relay.out"]
    assert [digest(t) for t in collected] == sent
    assert collected[0].shape == (2048, 2048) and collected[0].nbytes == 16 * 2**20
    assert result.results["check"]["frames"] == [0, 1, 2, 3, 4]


async def test_inputs_feed_ports_and_outputs_are_collected(tmp_path: Path) -> None:
    wf = workflow(
        """
name: feed
aims:
  relay: {type: relay}
inputs:
  relay.in: [1, "two", [3], {"four": 4}]
outputs: [relay.out]
"""
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=30)
    assert result.ok, result.error
    assert result.outputs["relay.out"] == [1, "two", [3], {"four": 4}]


async def test_kill_9_of_a_process_aim_fails_the_run_quickly(tmp_path: Path) -> None:
    wf = workflow(
        """
name: victim
aims:
  ticker: {type: "tests.helpers.aims:Ticker", placement: process}
  sink: {type: collect}
connections: [ticker.out -> sink.in]
"""
    )
    pids: list[int] = []

    def on_event(event: Event) -> None:
        if event.topic == "progress" and "pid" in event.data:
            pids.append(int(event.data["pid"]))

    async with Controller(tmp_path) as controller:
        controller.subscribe(on_event)
        run = await controller.launch(wf)
        await wait_for(lambda: bool(pids))
        os.kill(pids[0], signal.SIGKILL)
        result = await controller.wait_run(run, timeout=10)
    assert result.state is RunState.FAILED
    assert result.error is not None
    assert "AIM 'ticker' failed" in result.error
    assert "killed by SIGKILL" in result.error


async def test_an_aim_that_raises_fails_the_run_naming_aim_and_cause(tmp_path: Path) -> None:
    wf = workflow(
        """
name: crash
aims:
  crasher: {type: "tests.helpers.aims:Crasher", placement: process, params: {after: 2}}
inputs:
  crasher.in: [1, 2, 3]
"""
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=30)
    assert result.state is RunState.FAILED
    assert "AIM 'crasher' failed" in (result.error or "")
    assert "RuntimeError in run: sensor overheated after 2 records" in (result.error or "")


async def test_a_hung_aim_is_failed_by_missing_heartbeats(tmp_path: Path) -> None:
    wf = workflow(
        """
name: hung
aims:
  hang: {type: "tests.helpers.aims:Hang", placement: process, heartbeat_timeout: 1.5}
"""
    )
    async with Controller(tmp_path, stop_grace=1.0) as controller:
        result = await controller.run_workflow(wf, timeout=30)
    assert result.state is RunState.FAILED
    assert "AIM 'hang' failed: no heartbeat" in (result.error or "")


async def test_suspend_resume_stop_keep_partial_results(tmp_path: Path) -> None:
    wf = workflow(
        """
name: lifecycle
aims:
  ticker: {type: "tests.helpers.aims:Ticker", placement: process, params: {interval: 0.01}}
outputs: [ticker.out]
"""
    )
    states: list[tuple[str, str]] = []

    def on_event(event: Event) -> None:
        if event.topic == "state" and "state" in event.data:
            states.append((event.source, str(event.data["state"])))

    async with Controller(tmp_path) as controller:
        controller.subscribe(on_event)
        run = await controller.launch(wf)
        await wait_for(lambda: len(run.outputs["ticker.out"]) >= 5)
        await run.suspend()
        await wait_for(lambda: ("ticker", "suspended") in states)
        paused_at = len(run.outputs["ticker.out"])
        await asyncio.sleep(0.3)
        assert len(run.outputs["ticker.out"]) <= paused_at + 2  # in-flight records only
        await run.resume()
        await wait_for(lambda: len(run.outputs["ticker.out"]) > paused_at + 5)
        await run.stop()
        result = await controller.wait_run(run, timeout=10)
    assert result.state is RunState.STOPPED, result.error
    ticks = result.results["ticker"]["ticks"]
    assert result.outputs["ticker.out"] == list(range(ticks))


async def test_remote_aim_hot_plugs_over_tcp(tmp_path: Path) -> None:
    wf = workflow(
        """
name: hotplug
aims:
  frames: {type: "tests.helpers.aims:FrameSource", placement: remote}
  check: {type: "tests.helpers.aims:FrameCheck"}
connections: [frames.out -> check.in]
"""
    )
    async with Controller(tmp_path, tcp="tcp://127.0.0.1:*") as controller:
        launch = asyncio.create_task(controller.launch(wf))
        await asyncio.sleep(0.2)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aif.cli.main",
                "aim",
                "serve",
                "tests.helpers.aims:FrameSource",
                "--controller",
                controller.endpoints["tcp"],
                "--name",
                "frames",
            ],
        )
        try:
            run = await launch
            result = await controller.wait_run(run, timeout=30)
        finally:
            proc.wait(timeout=20)
    assert result.ok, result.error
    assert result.results["check"]["frames"] == [0, 1, 2]
    assert proc.returncode == 0


async def test_events_are_published_for_outside_subscribers(tmp_path: Path) -> None:
    from aif.communication.events import EventSubscriber

    wf = workflow(
        """
name: watched
aims:
  relay: {type: relay}
inputs:
  relay.in: [1, 2]
"""
    )
    async with Controller(tmp_path) as controller:
        assert controller.ctx is not None
        sub = EventSubscriber(controller.ctx, controller.endpoints["events"], topics=["state"])
        try:
            await asyncio.sleep(0.2)  # let the SUB connect: PUB drops what nobody hears
            result = await controller.run_workflow(wf, timeout=30)
            seen = []
            while not seen or seen[-1] != "succeeded":
                event = await asyncio.wait_for(sub.recv(), 5)
                if event.source == "controller":
                    seen.append(event.data["run"])
        finally:
            sub.close()
    assert result.ok
    assert seen[0] == "starting"
    assert seen[-1] == "succeeded"
