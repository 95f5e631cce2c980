"""An AIM's process loads what runs one AIM, never the controller's side of the house.

DESIGN.md: "the host (an AIM's process) never loads the controller, the daemon or the
CLI". The layer contract (tests/unit/test_layers.py) keeps the imports pointing down;
this checks what a real ``placement: process`` child has in ``sys.modules`` while its
AIM runs, lazy imports included.
"""

from __future__ import annotations

import os
from pathlib import Path

from aif import Controller, RunState, load_workflow_text, resolve

FORBIDDEN = ("aif.controller", "aif.daemon", "aif.workflow", "aif.cli", "aif.store")

WORKFLOW = """
name: census
aims:
  census: {type: "tests.helpers.aims:ModuleCensus", placement: process}
"""


async def test_a_process_child_loads_no_controller_daemon_workflow_cli_or_store(
    tmp_path: Path,
) -> None:
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(resolve(load_workflow_text(WORKFLOW)), timeout=60)
    assert result.state is RunState.SUCCEEDED, result.error
    report = result.results["census"]
    assert report["pid"] != os.getpid()  # it really ran in a child
    modules: list[str] = report["modules"]
    assert "aif.host.host" in modules and "aif.api.aim" in modules
    leaked = [m for m in modules if m.startswith(FORBIDDEN)]
    assert not leaked, f"an AIM's process loaded the controller's side: {leaked}"
