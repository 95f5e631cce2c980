"""The venv that ``scripts/setup.sh`` makes keeps its torch through a plug-in's install.

Issue 16: ``pip install ./my-plugin`` (a plug-in depending on ``aif``) re-resolved aif's
dependencies, replaced torch 2.13.0+cpu with a CUDA torch, torchvision, triton and the
nvidia wheels, and aihwkit broke silently. setup.sh now pins torch and aihwkit in a
constraints file named by the venv's own ``pip.conf`` and installs aihwkit without its
``torchvision`` requirement (setup.sh, step 4).

Each check runs this venv's pip exactly as a plug-in author does, with no extra option
but ``--dry-run --report``: the same configuration files and the same resolver as a
real install (before the guard, this very command listed torch 2.14.1, torchvision,
triton and 17 nvidia wheels), yet nothing in the venv changes, so it is safe beside
the tests that install the plug-in for real (``test_plugins.py``) or import torch.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        sys.prefix == sys.base_prefix or not (Path(sys.prefix) / "aif-requirements.txt").exists(),
        reason="not running in a venv made by scripts/setup.sh (its aif-requirements.txt "
        "is missing): the install guard is what setup.sh adds to its venv",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "aif-int8-accelerator"
VENV = Path(sys.prefix)
PIP = [sys.executable, "-m", "pip"]
#: What a CPU venv must never be given: CUDA torch's company.
CUDA = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIP, *args], capture_output=True, text=True, timeout=50, check=False)


def pinned_torch() -> str:
    """The torch version the venv's constraints file pins (``torch==...``)."""
    text = (VENV / "aif-constraints.txt").read_text()
    found = re.search(r"^torch==(\S+)$", text, re.MULTILINE)
    assert found, f"no torch pin in {VENV / 'aif-constraints.txt'}:\n{text}"
    return found.group(1)


def test_the_venvs_pip_conf_names_the_constraints() -> None:
    conf = VENV / "pip.conf"
    assert conf.exists(), f"{conf} is missing: re-run scripts/setup.sh"
    assert str(VENV / "aif-constraints.txt") in conf.read_text()
    assert importlib.metadata.version("torch") == pinned_torch()
    assert importlib.metadata.version("aihwkit") == "1.2.0"


def test_a_plain_plugin_install_keeps_torch_and_pulls_nothing_cuda(tmp_path: Path) -> None:
    # A copy, so the build of its metadata leaves no egg-info in the repository.
    source = tmp_path / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    report_file = tmp_path / "report.json"
    torch_before = importlib.metadata.version("torch")

    done = pip("install", "--dry-run", "--report", str(report_file), str(source))

    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(report_file.read_text())
    would_install = {
        item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]
    }
    assert "aif-int8-accelerator" in would_install, would_install  # it did resolve the plug-in
    pulled = {name: v for name, v in would_install.items() if CUDA.match(name)}
    assert not pulled, f"a plain `pip install` of a plug-in would install {pulled}"
    assert "aihwkit" not in would_install, would_install
    assert importlib.metadata.version("torch") == torch_before == pinned_torch()


def test_asking_for_another_torch_is_refused() -> None:
    # Any torch but the installed build: without the guard pip would pick the newest
    # (CUDA) release; with it the request conflicts with the pin and nothing changes.
    done = pip("install", "--dry-run", f"torch!={pinned_torch()}")

    assert done.returncode != 0, done.stdout
    assert "ResolutionImpossible" in done.stderr, done.stderr
    assert importlib.metadata.version("torch") == pinned_torch()


def test_aihwkit_requires_no_torchvision_and_pip_check_is_clean() -> None:
    requires = importlib.metadata.requires("aihwkit") or []
    assert not [r for r in requires if r.lower().startswith("torchvision")], requires

    done = pip("check")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "No broken requirements found." in done.stdout
