"""Capabilities declared at registration reach the senders, which route records by them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aif import Controller, RunState
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration

ROUTED = """
name: routed
aims:
  router:
    type: tests.helpers.aims:ColourRouter
  red:
    type: tests.helpers.aims:CapableSink
    placement: process
    params: {colour: red, pid_in_capabilities: true}
  blue:
    type: tests.helpers.aims:CapableSink
    params: {colour: blue}
connections:
  - router.out -> red.in
  - router.out -> blue.in
"""


async def test_records_go_only_to_the_peer_named_by_capability(tmp_path: Path) -> None:
    wf = resolve(load_workflow_text(ROUTED, "routed.yml"))
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=60)
    assert result.state is RunState.SUCCEEDED, result.error
    assert result.results["router"]["peers"] == ["blue", "red"]
    assert result.results["red"]["got"] == [0, 2, 4]
    assert result.results["blue"]["got"] == [1, 3, 5]


async def test_capabilities_are_measured_in_the_aims_own_process(tmp_path: Path) -> None:
    wf = resolve(load_workflow_text(ROUTED, "routed.yml"))
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=60)
    assert result.state is RunState.SUCCEEDED, result.error
    pids = result.results["router"]["pids"]
    assert pids["red"] not in (0, os.getpid())  # declared in its child process
    assert pids["blue"] == 0  # declared nothing beyond its colour


UNKNOWN_PEER = """
name: misrouted
aims:
  src:
    type: tests.helpers.aims:Misrouter
  sink:
    type: collect
connections:
  - src.out -> sink.in
"""


async def test_sending_to_an_aim_the_port_does_not_reach_fails_naming_the_peers(
    tmp_path: Path,
) -> None:
    wf = resolve(load_workflow_text(UNKNOWN_PEER, "misrouted.yml"))
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=60)
    assert result.state is RunState.FAILED
    assert "not connected to AIM 'nowhere'" in (result.error or "")
    assert "it reaches: sink" in (result.error or "")
