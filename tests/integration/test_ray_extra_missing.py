"""Without the Ray extra, placement: ray and --ray fail at once and name the extra.

Ray is hidden from the child (a ``ray`` package on its path that cannot be imported),
so these run whether or not the extra is installed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_a_ray_aim_needs_a_controller_on_tcp(tmp_path: Path) -> None:
    workflow = tmp_path / "wants-ray.yaml"
    workflow.write_text(WORKFLOW)
    done = aif("run", str(workflow), "-q", "--state-dir", str(tmp_path / "s"), timeout=120)
    assert done.returncode != 0
    assert "does not listen on tcp" in done.stdout + done.stderr, done.stdout + done.stderr


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
