"""A secure run takes a user's model code only from a signed Store package, checked again
at every validation: trusted, untouched since install, and by a publisher trusted today.

The package is published, trusted and installed through the real ``aif`` command; the
validator's check (``review_experiment(..., trusted_from=STATE_DIR)``) runs here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aif.aims.analog.validator import review_experiment
from aif.security.keys import KeyRing
from tests.helpers.cli import aif as run_aif

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_imports")]

ROOT = Path(__file__).resolve().parents[2]

#: A Store package holds AIMs or workflows; a lab's models travel inside one.
PACKAGE = '''"""Acme's lab package: an AIM, and the models its experiments use."""

from aif import AIM


class Nets(AIM):
    """Publishes nothing; the package exists to carry acme_nets.models."""

    version = "1.0.0"

    async def run(self) -> None:
        return None
'''

MODELS = '''"""Acme's models."""

import torch


def small_net(hidden: int = 16) -> torch.nn.Module:
    layers = [torch.nn.Flatten(), torch.nn.Linear(64, hidden), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(hidden, 10))
'''


def aif(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_aif(*argv, cwd=cwd, timeout=180, env={"AIF_STORE": ""})


def experiment() -> dict[str, Any]:
    return {
        "name": "acme",
        "dataset": {"name": "digits", "batch_size": 64},
        "model": {"torch": "acme_nets.models:small_net", "args": {"hidden": 8}},
        "rpu": "TorchInferenceRPUConfig",
        "training": {"epochs": 1},
    }


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, Path]:
    """``acme_nets`` published by a publisher the user trusts, and installed for the user."""
    src = tmp_path / "src"
    (src / "acme_nets").mkdir(parents=True)
    (src / "acme_nets" / "__init__.py").write_text(PACKAGE)
    (src / "acme_nets" / "models.py").write_text(MODELS)
    publisher, user, store = tmp_path / "publisher", tmp_path / "user", tmp_path / "store"
    KeyRing(publisher).init()
    KeyRing(user).init()
    KeyRing(user).trust("acme", KeyRing(publisher).public().texts()["ed25519"])
    done = aif("store", "publish", str(src), "--aim", "acme_nets:Nets", "--name", "acme-nets",
               "--store", str(store), "--state-dir", str(publisher), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = aif("store", "install", "acme-nets", "--store", str(store), "--state-dir", str(user),
               "--profile", "secure", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    site = user / "packages" / "acme-nets" / "1.0.0" / "site"
    assert (site / "acme_nets" / "models.py").is_file()
    return {"user": user, "site": site}


def test_a_model_from_an_installed_signed_package_is_accepted(installed: dict[str, Path]) -> None:
    verdict = review_experiment(experiment(), ROOT, trusted_from=installed["user"])
    assert verdict.accepted, verdict.problems
    assert "acme_nets.models" in sys.modules


def test_code_edited_in_the_install_cache_is_refused(installed: dict[str, Path]) -> None:
    models = installed["site"] / "acme_nets" / "models.py"
    models.write_text(MODELS + "\nprint('not what was signed')\n")
    verdict = review_experiment(experiment(), ROOT, trusted_from=installed["user"])
    (where, message), *_ = verdict.problems
    assert where == "model.torch"
    assert "changed since" in message and "install it again" in message
    assert "acme_nets.models" not in sys.modules


def test_a_publisher_no_longer_trusted_is_refused(installed: dict[str, Path]) -> None:
    KeyRing(installed["user"]).untrust("acme")
    verdict = review_experiment(experiment(), ROOT, trusted_from=installed["user"])
    (where, message), *_ = verdict.problems
    assert where == "model.torch" and "not trusted" in message
    assert "acme_nets.models" not in sys.modules
