"""``aif run`` imports the heavy modules once per run: its heavy AIMs (a ``process`` one,
and one whose placement is left to the default) are forked from one preloaded worker,
and the controller's own process never imports torch. ``--fresh-processes`` keeps the
old way: each its own ``python -m aif.host``, the default-placed one in the controller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import aif

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = """
name: forks
aims:
  simulator:
    type: tests.helpers.warm_aims:WarmProbe
    placement: process
  validator:
    type: tests.helpers.warm_aims:WarmProbe      # placement left to the default
  witness:
    type: tests.helpers.warm_aims:ControllerWitness
connections:
  - simulator.out -> witness.in
  - validator.out -> witness.in
"""


def aif_run(tmp_path: Path, *options: str) -> dict[str, Any]:
    workflow = tmp_path / "forks.yaml"
    workflow.write_text(WORKFLOW)
    out = tmp_path / "result.json"
    state = str(tmp_path / "state")
    done = aif("run", str(workflow), "-q", "--state-dir", state, "--json", str(out), *options)
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads(out.read_text())["results"]
    return results


@pytest.mark.timeout(300)
def test_heavy_aims_fork_from_one_worker_and_the_controller_stays_light(tmp_path: Path) -> None:
    results = aif_run(tmp_path)
    simulator, validator, witness = (results[n] for n in ("simulator", "validator", "witness"))
    assert simulator["ppid"] == validator["ppid"]  # forked by the same worker ...
    assert simulator["pid"] != validator["pid"]  # ... each its own process
    assert simulator["ppid"] != witness["pid"]  # the worker is not the controller
    assert simulator["torch_was_imported"] and validator["torch_was_imported"]  # preloaded
    assert witness["torch_in_controller"] is False


@pytest.mark.timeout(300)
def test_fresh_processes_keeps_a_python_per_process_aim(tmp_path: Path) -> None:
    results = aif_run(tmp_path, "--fresh-processes")
    simulator, validator, witness = (results[n] for n in ("simulator", "validator", "witness"))
    assert simulator["ppid"] == witness["pid"]  # a child of the controller
    assert validator["pid"] == witness["pid"]  # default placement: in the controller
    assert not simulator["torch_was_imported"]  # nothing preloaded for it
