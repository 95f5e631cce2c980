"""``aif aim list`` and ``aif aim show`` as a user runs them: real processes, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import aif

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_aim_list_shows_every_type_and_where_it_comes_from(tmp_path: Path) -> None:
    done = aif("aim", "list", "--json", "--state-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    listed = {info["type"]: info for info in json.loads(done.stdout)}
    assert listed["record-file"]["origin"] == "built-in"
    assert [p["name"] for p in listed["record-file"]["ports"]] == ["in"]
    chip = listed["imc_chip"]
    assert chip["origin"] == "entry point imc_chip from aif"
    assert chip["queues"] == ["imc"] and chip["capabilities"] and chip["technology"] == "Hardware"
    assert listed["analog-simulator"]["queues_from_params"] is True
    assert all(info["error"] is None for info in listed.values())

    text = aif("aim", "list", "--state-dir", str(tmp_path))
    assert text.returncode == 0, text.stderr
    assert "record-file" in text.stdout and "entry point" in text.stdout


def test_aim_show_gives_ports_params_with_defaults_and_queues() -> None:
    done = aif("aim", "show", "record-file")
    assert done.returncode == 0, done.stderr
    assert "from          built-in" in done.stdout
    assert "max_bytes" in done.stdout and "1073741824" in done.stdout
    assert "drain on stop yes" in done.stdout

    done = aif("aim", "show", "imc_chip", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    params = {p["name"]: p for p in info["params"]}
    assert params["chip"]["default"] == "emulate" and params["batch"]["default"] == 1024
    assert info["params_schema"]["properties"]["timeout"]["default"] == 30.0
    assert {(p["name"], p["direction"]) for p in info["ports"]} == {
        ("models", "input"),
        ("results", "output"),
    }


def test_aim_show_takes_a_class_path_and_names_an_unknown_type() -> None:
    done = aif("aim", "show", "aif.aims.builtin:Relay", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["origin"] == "class path"

    done = aif("aim", "show", "recordfile")
    assert done.returncode == 2
    assert "unknown AIM type 'recordfile'" in done.stderr and "aif aim list" in done.stderr


def test_the_markdown_is_the_checked_in_reference() -> None:
    done = aif("aim", "list", "--markdown")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / "docs" / "aims.md").read_text()


def test_aim_help_stays_light() -> None:
    """The parser of `aif aim ...` imports no AIM, pydantic or rich (as `aif --help`)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "aif", "aim", "list", "--help"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "aif.cli.aim_types" in modules
    heavy = ("aif.aims", "pydantic", "rich", "numpy", "torch")
    assert not [m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy)]
