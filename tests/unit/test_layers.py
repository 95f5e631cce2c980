"""The layers of DESIGN.md hold on the import graph, not only in a picture.

The contracts live in pyproject.toml (``[tool.importlinter]``): ``errors`` < ``security``
< ``communication`` | ``storage`` < ``api`` < ``aims`` < ``host`` < ``workflow`` <
``store`` < ``controller`` < ``daemon`` < ``cli``. import-linter reads every import,
lazy ones inside functions and ``TYPE_CHECKING`` ones included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "api",
    "aims",
    "cli",
    "communication",
    "controller",
    "daemon",
    "host",
    "security",
    "storage",
    "store",
    "workflow",
]


def test_the_layer_contracts_are_kept() -> None:
    # In a child process: import-linter configures logging with dictConfig, which would
    # disable every logger this test session already made.
    code = "import sys; from importlinter import cli; sys.exit(cli.lint_imports(no_cache=True))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_import_cycle_between_packages() -> None:
    graph = grimp.build_graph("aif", cache_dir=None)
    for a in PACKAGES:
        for b in PACKAGES:
            if a < b:
                there = graph.find_illegal_dependencies_for_layers(
                    layers=(f"aif.{a}", f"aif.{b}"), containers=set()
                )
                back = graph.find_illegal_dependencies_for_layers(
                    layers=(f"aif.{b}", f"aif.{a}"), containers=set()
                )
                # each direction is "illegal" in one of the two orders; a cycle is both
                assert not (there and back), f"aif.{a} and aif.{b} import each other"
