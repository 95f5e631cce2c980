"""Without the Ray extra, placement: ray and --ray fail at once and name the extra.

Ray is hidden from the child (a ``ray`` package on its path that cannot be imported),
so these run whether or not the extra is installed here. A controller that does not
listen on tcp cannot run a Ray AIM either, and says so before it asks Ray.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aif import Controller, RunState
from aif.workflow import load_workflow_text, resolve
from tests.helpers.cli import aif
from tests.helpers.daemon import ROOT

pytestmark = pytest.mark.integration

WORKFLOW = """
name: wants-ray
aims:
  tick:
    type: tests.helpers.aims:Ticker
    placement: ray
    resources: {num_cpus: 1}
    params: {interval: 0.01, limit: 3}
outputs: [tick.out]
"""


def hidden_ray(tmp_path: Path) -> dict[str, str]:
    package = tmp_path / "hide" / "ray"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    return {"PYTHONPATH": f"{package.parent}:{ROOT}", "RAY_ADDRESS": "127.0.0.1:1"}


def test_a_ray_aim_without_ray_fails_naming_the_extra(tmp_path: Path) -> None:
    workflow = tmp_path / "wants-ray.yaml"
    workflow.write_text(WORKFLOW)
    state = str(tmp_path / "state")
    done = aif(
        "run",
        str(workflow),
        "-q",
        "--state-dir",
        state,
        "--listen",
        "tcp://127.0.0.1:*",
        env=hidden_ray(tmp_path),
        timeout=120,
    )
    assert done.returncode != 0
    assert "pip install 'aif[ray]'" in done.stdout + done.stderr, done.stdout + done.stderr


async def test_a_controller_not_on_tcp_fails_a_ray_aim_saying_so(tmp_path: Path) -> None:
    resolved = resolve(load_workflow_text(WORKFLOW, "wants-ray.yml"))
    async with Controller(tmp_path / "state") as controller:
        result = await controller.run_workflow(resolved, timeout=60)
    assert result.state is RunState.FAILED
    assert result.error is not None and "does not listen on tcp" in result.error, result.error


def test_a_daemon_on_ray_without_ray_refuses_to_start_naming_the_extra(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    done = aif(
        "controller",
        "start",
        "--state-dir",
        state,
        "--ray",
        "auto",
        env=hidden_ray(tmp_path),
        timeout=120,
    )
    assert done.returncode != 0
    assert "pip install 'aif[ray]'" in done.stderr, done.stdout + done.stderr
