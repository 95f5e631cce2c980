"""``record-file`` in real ``aif run`` processes: what a user keeps, and what they see.

tensor-source -> record-file, inproc and in a child process; ``--json`` names the
files; the sink's log lines show at INFO with its name, and ``-q`` keeps them out;
a file that exists is not overwritten. The chip workflow keeps the chip's measurements.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aif.aims.record_file import read_records
from tests.helpers.cli import aif

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = """
name: keep-tensors
aims:
  gen: {type: tensor-source, params: {shape: [3, 2], count: 4, seed: 7}}
  meas: {type: source, params: {records: [{volts: 0.5, tag: a}, [1, 2]]}}
  save: {type: record-file}
  side: {type: record-file, placement: process, params: {name: "../side file", folder: kept}}
connections: [gen.out -> save.in, meas.out -> side.in]
"""


def test_records_land_in_files_the_run_names(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    done = aif("run", "wf.yaml", "--json", "out.json", "--state-dir", "state", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    run_folder = tmp_path / "results" / out["id"]
    assert out["files"] == {
        "save": [str(run_folder / "save.jsonl"), str(run_folder / "save.npz")],
        "side": [str(tmp_path / "kept" / "side_file.jsonl")],  # sanitized, in its folder
    }
    assert out["results"]["save"]["records"] == 4 and out["results"]["save"]["arrays"] == 4
    # byte-identical to what tensor-source sent (it reports their digests)
    from aif.aims.builtin import digest

    kept = [r["value"] for r in read_records(run_folder / "save.jsonl")]
    assert [digest(v) for v in kept] == out["results"]["gen"]["digests"]
    assert all(v.dtype == np.float32 and v.shape == (3, 2) for v in kept)
    side = list(read_records(tmp_path / "kept" / "side_file.jsonl"))
    assert [r["value"] for r in side] == [{"volts": 0.5, "tag": "a"}, [1, 2]]
    # the summary says where they went, and the sink's log lines show with its name
    assert f"save wrote {run_folder / 'save.npz'}" in done.stdout
    assert f"save: writing records to {run_folder / 'save.jsonl'}" in done.stdout
    assert "save: kept 4 records (4 arrays" in done.stdout

    # again into the same folder: refused, nothing overwritten
    before = (tmp_path / "kept" / "side_file.jsonl").read_bytes()
    again = aif("run", "wf.yaml", "--state-dir", "state", cwd=tmp_path)
    assert again.returncode == 1
    assert "side_file.jsonl exists; record-file does not overwrite it" in again.stdout
    assert (tmp_path / "kept" / "side_file.jsonl").read_bytes() == before
    told = aif(
        "run", "wf.yaml", "--state-dir", "state", "-q",
        "--set", "aims.side.params.overwrite=true",
        cwd=tmp_path,
    )  # fmt: skip
    assert told.returncode == 0, told.stdout[-3000:] + told.stderr[-3000:]
    assert "save: writing records" not in told.stdout  # -q: no log lines
    assert "INFO [side]" not in told.stderr  # nor from the AIM in its own process
    assert "INFO [side]" in done.stderr  # which logs at INFO without -q
    assert "succeeded" in told.stdout


def test_a_record_past_max_bytes_fails_the_run_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: small\n"
        "aims:\n"
        "  gen: {type: tensor-source, params: {shape: [64, 64], count: 5}}\n"
        "  save: {type: record-file, params: {max_bytes: 40000, folder: out}}\n"
        "connections: [gen.out -> save.in]\n"
    )
    done = aif("run", "wf.yaml", "--state-dir", "state", "-q", cwd=tmp_path)
    assert done.returncode == 1
    assert "past max_bytes (40000); 2 records are kept" in done.stdout
    assert len(list(read_records(tmp_path / "out" / "save.jsonl"))) == 2


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_chip_workflow_keeps_the_chips_measurements(tmp_path: Path) -> None:
    """workflows/chip-deploy.yaml with a record-file on the chip's results, added by --set."""
    connections = (
        "[experiments.experiments -> validator.experiments, validator.jobs -> simulator.jobs, "
        "validator.rejections -> reporter.rejections, simulator.metrics -> reporter.metrics, "
        "simulator.results -> reporter.results, simulator.models -> chip.models, "
        "chip.results -> reporter.results, chip.results -> measurements.in]"
    )
    done = aif(
        "run", str(ROOT / "workflows" / "chip-deploy.yaml"), "--state-dir", "state", "-q",
        "--json", "out.json",
        "--set", "aims.measurements={type: record-file}",
        "--set", f"connections={connections}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    (lines,) = out["files"]["measurements"]
    (record,) = (r["value"] for r in read_records(lines))
    assert record["job"] == "chip-cnn@chip" and record["status"] == "completed"
    measured = out["results"]["chip"]["chip-cnn@chip"]
    assert record["accuracy"] == pytest.approx(measured["accuracy"], abs=1e-3)  # rounded there
    # the whole measurement, not only the summary: every drift time's mean and spread
    assert len(record["drift_times"]) == len(record["drift_mean_compensated"]) == 4
