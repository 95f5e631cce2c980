"""Analog sweeps whose jobs diverge, as ``aif run`` runs them: a real process, real aihwkit.

A job whose loss turns infinite fails with the reason and the simulator goes on to the
next job; a run in which no job completed exits 1 and says so, one with a completed job
exits 0. Through the daemon such a job ends ``failed`` with the same words, so
``aif submit --wait`` and ``aif logs --follow`` exit 1 too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from aif.daemon.records import JobState
from tests.helpers.cli import aif
from tests.helpers.daemon import DaemonProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

MODEL = {"convert": "all", "layers": ["Flatten", {"type": "Linear", "out_features": 1}]}


def regression(name: str, lr: float, data: str) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": {"name": "npz", "path": data, "batch_size": 8},
        "model": MODEL,
        "rpu": "TorchInferenceRPUConfig",
        "training": {"epochs": 5, "loss": "mse", "optimizer": {"lr": lr}},
    }


def sweep(folder: Path, experiments: list[dict[str, Any]]) -> Path:
    """A workflow of the experiments beside two data sets: ``ok.npz`` and ``huge.npz``
    (inputs a thousand times larger, on which a large learning rate diverges)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4)).astype(np.float32)
    w = np.array([0.5, -0.25, 0.1, 0.0], np.float32)
    np.savez(folder / "ok.npz", x=x, y=x @ w)
    np.savez(folder / "huge.npz", x=x * 1000, y=(x * 1000) @ w)
    aims = {
        "experiments": {"type": "experiment-source", "params": {"experiments": experiments}},
        "validator": {"type": "analog-validator"},
        "simulator": {"type": "analog-simulator", "placement": "process"},
        "reporter": {"type": "analog-reporter", "params": {"folder": str(folder / "report")}},
    }
    connections = [
        "experiments.experiments -> validator.experiments",
        "validator.jobs -> simulator.jobs",
        "validator.rejections -> reporter.rejections",
        "simulator.metrics -> reporter.metrics",
        "simulator.results -> reporter.results",
    ]
    path = folder / "sweep.yml"
    path.write_text(yaml.safe_dump({"name": "sweep", "aims": aims, "connections": connections}))
    return path


def aif_run(workflow: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Any]:
    out = tmp_path / "result.json"
    args = ("run", str(workflow), "--state-dir", str(tmp_path / "s"), "-q", "--json", str(out))
    done = aif(*args)
    return done, json.loads(out.read_text())


def jobs(tmp_path: Path) -> dict[str, dict[str, Any]]:
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    return {job["job"]: job for job in report["jobs"]}


@pytest.mark.timeout(300)
def test_a_diverging_job_fails_and_the_next_job_still_runs(tmp_path: Path) -> None:
    workflow = sweep(
        tmp_path, [regression("diverges", 100.0, "huge.npz"), regression("fine", 0.05, "ok.npz")]
    )
    done, result = aif_run(workflow, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no job completed" not in done.stdout
    by_name = jobs(tmp_path)
    diverged, fine = by_name["diverges"], by_name["fine"]
    assert diverged["status"] == "failed"
    assert "ExperimentError: training diverged: the loss is " in diverged["error"]
    assert f"at epoch {diverged['epochs_done'] + 1}, batch " in diverged["error"]
    assert "lower training.optimizer.lr (now 100)" in diverged["error"]
    assert "check the data for NaN" in diverged["error"]
    assert fine["status"] == "completed" and fine["epochs_done"] == 5
    assert result["state"] == "succeeded" and result["exit_code"] == 0
    assert result["problem"] is None
    counts = {k: result["jobs"][k] for k in ("completed", "failed", "stopped", "rejected")}
    assert counts == {"completed": 1, "failed": 1, "stopped": 0, "rejected": 0}
    reporter = result["results"]["reporter"]
    assert (reporter["completed"], reporter["failed"]) == (1, 1)
    # the run's table shows the failed job's reason
    assert "training diverged" in done.stdout


@pytest.mark.timeout(300)
def test_a_run_in_which_no_job_completed_exits_1_and_says_so(tmp_path: Path) -> None:
    rejected = regression("refused", 0.05, "ok.npz")
    rejected["training"]["loss"] = "cross_entropy"  # regression data: the validator refuses
    workflow = sweep(tmp_path, [regression("diverges", 100.0, "huge.npz"), rejected])
    done, result = aif_run(workflow, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    folder = tmp_path / "report"
    said = f"no job completed: 1 failed, 1 rejected; see {folder}/results.json"
    assert said in " ".join(done.stdout.split())  # rich may wrap a long path
    assert result["state"] == "succeeded"  # every AIM ended cleanly ...
    assert result["exit_code"] == 1  # ... but the run produced nothing
    assert result["problem"] == said
    assert result["jobs"]["completed"] == 0 and result["jobs"]["folders"] == [str(folder)]
    assert jobs(tmp_path)["diverges"]["status"] == "failed"


@pytest.mark.timeout(300)
def test_a_daemon_job_in_which_no_job_completed_fails_and_submit_wait_exits_1(
    tmp_path: Path,
) -> None:
    rejected = regression("refused", 0.05, "ok.npz")
    rejected["training"]["loss"] = "cross_entropy"
    workflow = sweep(tmp_path, [regression("diverges", 100.0, "huge.npz"), rejected])
    daemon = DaemonProcess(tmp_path / "state", "--instances", "cpu=1").start()
    try:
        target = ("--state-dir", str(daemon.state_dir))
        done = aif("submit", str(workflow), "--wait", *target, timeout=240)
        assert done.returncode == 1, done.stdout + done.stderr
        job = done.stdout.split()[0]
        with daemon.client() as client:
            record = client.status(job).job
        assert record.state is JobState.FAILED, record
        folder = tmp_path / "report"
        assert record.detail == f"no job completed: 1 failed, 1 rejected; see {folder}/results.json"
        follow = aif("logs", job, "--follow", *target, timeout=60)
        assert follow.returncode == 1
        assert "no job completed" in follow.stdout
    finally:
        daemon.stop()
