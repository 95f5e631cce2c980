"""The analog reporter in real workflows: records in over channels, a folder of files out.

The sources here stand in for the validator and simulator: they emit the contract's
records, which cross a real channel (one of them from a child process, so through the
codec), and the reporter writes what a person reads after the run.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aif import AIM, Controller, RunState
from aif.aims.analog.records import METRICS_RECORD, REJECTION_RECORD, RESULT_RECORD
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration

REPORTER = "aif.aims.analog.reporter:AnalogReporter"
HERE = "tests.integration.test_reporter_run"
TIMES = [1.0, 3600.0, 86400.0, 31536000.0]


def _result(job: str, label: str, status: str, accuracy: float, **drift: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "job": job,
        "experiment": "sweep",
        "label": label,
        "family": "InferenceRPUConfig",
        "device": "cpu",
        "status": status,
        "error": "RuntimeError: tile exploded" if status == "failed" else "",
        "epochs_done": 2 if status == "completed" else 1,
        "train_seconds": 0.5,
        "accuracy": accuracy,
        "checkpoint": "",
        "simulator": "simulator",
        "metric": "accuracy",
        "stopped_epoch": 0,
        "layer_names": ["0"],
        "layer_tiles": [1],
        "layer_macs": [640],
    }
    for key in ("drift_times", "drift_mean", "drift_std"):
        value[key] = drift.get(key, [])
    for key in ("drift_mean_compensated", "drift_std_compensated"):
        value[key] = drift.get(key, [])
    return value


class SweepSource(AIM):
    """Emits what a validator and a simulator would for a two-job sweep and a rejection."""

    outputs = {"metrics": METRICS_RECORD, "results": RESULT_RECORD, "rejections": REJECTION_RECORD}

    async def run(self) -> None:
        await self.send(
            "rejections",
            {"experiment": "typo", "source": "typo.yaml", "problems": ["rpu.config: unknown"]},
        )
        for job, accuracies in (("sweep[pcm]", [0.4, 0.7]), ("sweep[bad]", [math.nan])):
            for epoch, accuracy in enumerate(accuracies, 1):
                await self.send(
                    "metrics",
                    {
                        "job": job,
                        "epoch": epoch,
                        "epochs": 2,
                        "loss": 1.0 / epoch,
                        "accuracy": accuracy,
                        "seconds": 0.25,
                        "lr": 0.1,
                    },
                )
        drift = {
            "drift_times": np.array(TIMES),
            "drift_mean": np.array([0.7, 0.68, 0.65, 0.6]),
            "drift_std": np.array([0.01, 0.01, 0.02, 0.03]),
            "drift_mean_compensated": np.array([0.7, 0.7, 0.69, 0.68]),
            "drift_std_compensated": np.array([0.01, 0.01, 0.01, 0.02]),
        }
        await self.send("results", _result("sweep[pcm]", "pcm", "completed", 0.7, **drift))
        await self.send("results", _result("sweep[bad]", "bad", "failed", math.nan))


class EndlessTraining(AIM):
    """Reports epochs of one job until it is told to stop, never sending a result."""

    outputs = {"metrics": METRICS_RECORD, "results": RESULT_RECORD, "rejections": REJECTION_RECORD}

    async def run(self) -> None:
        epoch = 0
        while await self.checkpoint():
            epoch += 1
            record = {"job": "long", "epoch": epoch, "epochs": 10**6, "loss": 1.0}
            record.update(accuracy=0.5, seconds=0.01, lr=0.1)
            await self.send("metrics", record)
            await self.progress(epoch=epoch)
            await asyncio.sleep(0.01)


def workflow(source: str, placement: str, folder: Path, plots: bool) -> Any:
    text = f"""
name: report
aims:
  source: {{type: "{HERE}:{source}", placement: {placement}}}
  reporter:
    type: "{REPORTER}"
    params: {{folder: "{folder}", plots: {str(plots).lower()}}}
connections:
  - source.metrics -> reporter.metrics
  - source.results -> reporter.results
  - source.rejections -> reporter.rejections
"""
    return resolve(load_workflow_text(text, "report.yml"))


def strict_json(path: Path) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path.name} holds the non-JSON literal {name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


async def test_a_sweep_crossing_processes_becomes_a_report_folder(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    async with Controller(tmp_path / "state") as controller:
        run = await controller.run_workflow(
            workflow("SweepSource", "process", folder, plots=True), timeout=60
        )
    assert run.ok, run.error
    summary = run.results["reporter"]
    assert summary["folder"] == str(folder) and Path(summary["folder"]).is_absolute()
    assert (summary["jobs"], summary["completed"], summary["rejected"]) == (2, 1, 1)
    assert (summary["best"], summary["best_accuracy"]) == ("sweep[pcm]", 0.7)
    written = {p.name for p in folder.iterdir()}
    assert written == {
        "metrics.csv",
        "results.json",
        "training.png",
        "drift.png",
        "configurations.png",
    }
    assert set(summary["files"]) == written

    with (folder / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["epoch"]) for r in rows] == [
        ("sweep[pcm]", "1"),
        ("sweep[pcm]", "2"),
        ("sweep[bad]", "1"),
    ]
    assert rows[2]["accuracy"] == "nan"

    doc = strict_json(folder / "results.json")
    assert doc["run"]["complete"] is True and doc["run"]["workflow"].startswith("report-")
    assert doc["run"]["stop_reason"] == "all inputs closed"
    jobs = {j["job"]: j for j in doc["jobs"]}
    assert jobs["sweep[bad]"]["accuracy"] is None
    assert jobs["sweep[bad]"]["error"] == "RuntimeError: tile exploded"
    assert jobs["sweep[pcm]"]["drift_times"] == TIMES
    assert jobs["sweep[pcm]"]["drift_mean_compensated"] == [0.7, 0.7, 0.69, 0.68]
    assert doc["rejections"][0]["problems"] == ["rpu.config: unknown"]


async def test_a_stopped_run_keeps_its_epochs_and_never_reuses_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    folder.mkdir()  # an earlier report: must stay untouched
    epochs: list[int] = []

    def on_event(event: Any) -> None:
        if event.topic == "progress" and "epoch" in event.data:
            epochs.append(int(event.data["epoch"]))

    async with Controller(tmp_path / "state") as controller:
        controller.subscribe(on_event)
        run = await controller.launch(workflow("EndlessTraining", "inproc", folder, plots=False))
        deadline = asyncio.get_running_loop().time() + 20
        while len(epochs) < 3:
            assert asyncio.get_running_loop().time() < deadline, "no epochs reported"
            await asyncio.sleep(0.02)
        await run.stop()
        result = await controller.wait_run(run, timeout=20)
    assert result.state is RunState.STOPPED, result.error
    assert not list(folder.iterdir())
    summary = result.results["reporter"]
    written = Path(summary["folder"])
    assert written == tmp_path / "report-2"
    assert summary["jobs"] == 0 and summary["best"] is None
    doc = strict_json(written / "results.json")
    assert doc["run"]["complete"] is True
    assert doc["run"]["stop_reason"] == "stopped by the controller"
    assert doc["summary"]["without_result"] == ["long"]
    with (written / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2 and all(r["job"] == "long" for r in rows)
    assert sorted(p.name for p in written.iterdir()) == ["metrics.csv", "results.json"]
