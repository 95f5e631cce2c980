"""The reporter's file writers and figures, without a controller."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest

from aif.aims.analog import report_plots
from aif.aims.analog.records import METRICS_RECORD, REJECTION_RECORD, RESULT_RECORD
from aif.aims.analog.report_plots import duration_ticks
from aif.aims.analog.reporter import (
    AnalogReporter,
    Report,
    ReporterParams,
    choose_folder,
    json_safe,
    write_json_atomic,
)
from aif.communication.types import parse_type

PNG = b"\x89PNG\r\n\x1a\n"
TIMES = [1.0, 3600.0, 86400.0, 31536000.0]


def metric(job: str, epoch: int, accuracy: float = 0.5, epochs: int = 3) -> dict[str, Any]:
    return {
        "job": job,
        "epoch": epoch,
        "epochs": epochs,
        "loss": 1.0 / epoch,
        "accuracy": accuracy,
        "seconds": 0.25,
        "lr": 0.1,
    }


def result(job: str, accuracy: float = 0.8, status: str = "completed", **kw: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "job": job,
        "experiment": job.split("[")[0],
        "label": "",
        "family": "InferenceRPUConfig",
        "device": "cpu",
        "status": status,
        "error": "" if status != "failed" else "RuntimeError: boom",
        "epochs_done": 3,
        "train_seconds": 1.5,
        "accuracy": accuracy,
        "drift_times": [],
        "drift_mean": [],
        "drift_std": [],
        "drift_mean_compensated": [],
        "drift_std_compensated": [],
        "checkpoint": "",
        "simulator": "simulator",
        "metric": "accuracy",
        "stopped_epoch": 0,
        "layer_names": [],
        "layer_tiles": [],
        "layer_macs": [],
    }
    value.update(kw)
    return value


def strict_json(path: Path) -> Any:
    """Parse as standard JSON: NaN or Infinity literals fail."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{path.name} holds the non-JSON literal {name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


# -- record types -----------------------------------------------------------------------


def test_port_types_are_the_contract_types() -> None:
    assert parse_type(METRICS_RECORD) == parse_type(
        "{string job; int32 epoch; int32 epochs; float64 loss; float64 accuracy; "
        "float64 seconds; float64 lr}"
    )
    assert parse_type(REJECTION_RECORD) == parse_type(
        "{string experiment; string source; string[] problems}"
    )
    fields = [f.strip().split(" ")[1] for f in RESULT_RECORD.strip("{}").split(";")]
    assert fields == list(result("x"))
    specs = AnalogReporter.port_specs()
    assert sorted(specs) == ["metrics", "rejections", "results"]
    assert all(s.direction == "input" for s in specs.values())
    assert specs["results"].type.check(result("x"), "results") is None


def test_params_forbid_unknown_fields() -> None:
    assert ReporterParams().folder is None and ReporterParams().plots is True
    with pytest.raises(pydantic.ValidationError, match="plot"):
        ReporterParams.model_validate({"plot": False})


# -- small writers ---------------------------------------------------------------------


def test_json_safe_turns_nan_and_numpy_into_plain_json() -> None:
    value = {
        "a": math.nan,
        "b": [1.0, math.inf, -math.inf],
        "c": np.array([0.5, np.nan]),
        "d": np.float64("nan"),
        "e": np.int32(3),
        "f": (b"\x01", "s", None, True),
    }
    assert json_safe(value) == {
        "a": None,
        "b": [1.0, None, None],
        "c": [0.5, None],
        "d": None,
        "e": 3,
        "f": ["01", "s", None, True],
    }


def test_write_json_atomic_replaces_whole_files_and_refuses_nan(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json_atomic(path, {"n": 1})
    write_json_atomic(path, {"n": 2})
    assert strict_json(path) == {"n": 2}
    with pytest.raises(ValueError):
        write_json_atomic(path, {"n": math.nan})
    assert strict_json(path) == {"n": 2}  # the old file stands
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left


def test_choose_folder_defaults_sanitises_and_never_reuses(tmp_path: Path) -> None:
    now = dt.datetime(2025, 3, 4, 5, 6, 7)
    first = choose_folder(None, "sweep run/1", now, tmp_path)
    assert first == tmp_path / "results" / "sweep_run_1-20250304-050607"
    assert first.is_dir() and first.is_absolute()
    second = choose_folder(None, "sweep run/1", now, tmp_path)
    third = choose_folder(None, "sweep run/1", now, tmp_path)
    assert (second.name, third.name) == (first.name + "-2", first.name + "-3")
    assert choose_folder(None, "", now, tmp_path).name == "run-20250304-050607"
    nested = choose_folder("out/a", "w", now, tmp_path)
    assert nested == tmp_path / "out" / "a"
    absolute = tmp_path / "abs"
    assert choose_folder(str(absolute), "w", now, Path("/nonexistent")) == absolute


def test_duration_ticks_label_the_log_axis_like_papers() -> None:
    assert duration_ticks([86400.0, 1.0, 3600.0, 31536000.0, 1.0]) == (
        TIMES,
        ["1s", "1h", "1d", "1y"],
    )
    assert duration_ticks([25.0]) == ([25.0], ["25s"])
    many = [2.0**i for i in range(30)]
    ticks, labels = duration_ticks(many)
    assert labels == ["1s", "1min", "1h", "1d", "1w", "1y"]
    assert ticks[0] == 1.0


# -- the report ------------------------------------------------------------------------


def test_metrics_csv_grows_row_by_row_and_results_json_on_every_result(tmp_path: Path) -> None:
    report = Report(tmp_path, workflow="w-1", aim="reporter")
    report.add_metrics(metric("a", 1, accuracy=math.nan))
    report.add_metrics(metric("a", 2, accuracy=0.75))
    with report.metrics_path.open(newline="") as f:  # readable before the end
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["accuracy"] == "nan" and math.isnan(float(rows[0]["accuracy"]))
    assert float(rows[1]["accuracy"]) == 0.75 and rows[1]["lr"] == "0.1"

    report.add_result(result("a", accuracy=math.nan, status="failed"))
    doc = strict_json(report.results_path)
    assert doc["jobs"][0]["accuracy"] is None
    assert doc["run"]["complete"] is False and doc["run"]["workflow"] == "w-1"
    report.add_rejection({"experiment": "bad", "source": "x.yaml", "problems": ["rpu: no"]})
    doc = strict_json(report.results_path)
    assert doc["rejections"] == [{"experiment": "bad", "source": "x.yaml", "problems": ["rpu: no"]}]
    assert doc["summary"]["rejected"] == 1


def test_summary_picks_the_best_completed_job(tmp_path: Path) -> None:
    report = Report(tmp_path)
    assert report.summary()["best"] is None
    report.add_metrics(metric("lost", 1))  # a job that never sent a result
    report.add_result(result("s", accuracy=0.99, status="stopped"))
    assert report.summary()["best"] == "s"  # nothing completed: the best of the rest
    report.add_result(result("a", accuracy=0.7))
    report.add_result(result("b", accuracy=0.9))
    report.add_result(result("f", accuracy=math.nan, status="failed"))
    summary = report.summary()
    assert (summary["best"], summary["best_accuracy"]) == ("b", 0.9)
    assert summary["best_metric"] == "accuracy"
    assert (summary["jobs"], summary["completed"], summary["stopped"], summary["failed"]) == (
        4,
        2,
        1,
        1,
    )
    assert summary["without_result"] == ["lost"]
    report.add_result(result("b", accuracy=0.1))  # a second result replaces the first
    assert report.summary()["best"] == "a" and report.summary()["jobs"] == 4


def test_finish_draws_every_figure_for_a_sweep(tmp_path: Path) -> None:
    report = Report(tmp_path, workflow="w")
    for job in ("sweep[pcm]", "sweep[ideal]"):
        for epoch in (1, 2, 3):
            report.add_metrics(metric(job, epoch, accuracy=math.nan if epoch == 2 else 0.6))
    report.add_result(
        result(
            "sweep[pcm]",
            drift_times=np.array(TIMES),
            drift_mean=np.array([0.8, 0.7, 0.6, math.nan]),
            drift_std=np.array([0.01, 0.02, 0.03, 0.04]),
            drift_mean_compensated=[0.8, 0.8, 0.75, 0.7],
            drift_std_compensated=[0.0, 0.01, 0.01, 0.02],
        )
    )
    report.add_result(result("sweep[ideal]", accuracy=math.nan, status="failed"))
    summary = report.finish("inputs closed")
    assert summary["best"] == "sweep[pcm]"
    for name in ("training.png", "drift.png", "configurations.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG), name
    doc = strict_json(report.results_path)
    assert doc["run"]["complete"] is True and doc["run"]["stop_reason"] == "inputs closed"
    assert doc["files"] == [
        "metrics.csv",
        "results.json",
        "training.png",
        "drift.png",
        "configurations.png",
    ]
    assert doc["plot_errors"] == []
    assert doc["jobs"][0]["drift_mean"][3] is None


def test_an_empty_or_epochless_run_writes_no_empty_figures(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty = Report(tmp_path / "empty")
    assert empty.finish("inputs closed")["jobs"] == 0
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [
        "metrics.csv",
        "results.json",
    ]
    (tmp_path / "one").mkdir()
    one = Report(tmp_path / "one")
    one.add_result(result("a", accuracy=math.nan, status="stopped", epochs_done=0))
    one.finish("stopped")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [
        "metrics.csv",
        "results.json",
    ]
    assert strict_json(one.results_path)["summary"]["best"] is None


def test_a_figure_that_fails_costs_no_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> bool:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(report_plots, "plot_training", broken)
    report = Report(tmp_path)
    report.add_metrics(metric("a", 1))
    report.finish(None)
    doc = strict_json(report.results_path)
    assert doc["plot_errors"] == ["training.png: RuntimeError: no fonts"]
    assert doc["run"]["complete"] is True


def test_plots_off_and_drift_edge_cases(tmp_path: Path) -> None:
    report = Report(tmp_path)
    report.add_metrics(metric("a", 1))
    report.add_result(result("a", drift_times=[60.0], drift_mean=[0.5], drift_std=[0.1]))
    report.add_result(result("b", drift_times=[60.0], drift_mean=[math.nan], drift_std=[0.0]))
    report.finish(None, plots=False)
    assert not list(tmp_path.glob("*.png"))
    # one drift time on a log axis, and a job whose drift is all missing
    assert report_plots.plot_drift(list(report.results.values()), tmp_path / "d.png")
    only_missing = [report.results["b"]]
    assert not report_plots.plot_drift(only_missing, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_a_deployed_job_shares_its_trained_jobs_colour() -> None:
    from aif.aims.analog.report_plots import colours_for

    colours = colours_for(["hwa", "ideal", "hwa@chip", "ideal@chip", "other"])
    assert colours["hwa@chip"] == colours["hwa"] == "C0"
    assert colours["ideal@chip"] == colours["ideal"] == "C1"
    assert colours["other"] == "C2"


def test_figures_name_the_metric_a_regression_run_measures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles: list[str] = []

    def keep_titles(figure: Any, path: Path) -> None:
        titles.extend(axes.get_title() for axes in figure.axes)
        titles.extend(axes.get_ylabel() for axes in figure.axes)

    monkeypatch.setattr(report_plots, "_save", keep_titles)
    report = Report(tmp_path, workflow="w")
    for job in ("a", "b"):
        report.add_metrics(metric(job, 1, accuracy=0.2))
        report.add_result(
            result(
                job,
                accuracy=0.2,
                metric="mse",
                drift_times=[1.0],
                drift_mean=[0.3],
                drift_std=[0.0],
            )
        )
    report.finish()
    assert {"Test mse", "Test mse after drift", "Final test mse", "test mse"} <= set(titles)
    assert not any("accuracy" in t for t in titles), titles


def test_figures_drawn_early_are_redrawn_only_when_their_data_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[str] = []
    real = report_plots.plot_training

    def counting(*args: Any, **kwargs: Any) -> bool:
        drawn.append("training")
        return real(*args, **kwargs)

    monkeypatch.setattr(report_plots, "plot_training", counting)
    report = Report(tmp_path, workflow="w")
    report.add_metrics(metric("a", 1, epochs=1))
    report.draw(["training.png"])  # what the reporter does when a job's training ends
    assert report.plots == ["training.png"] and drawn == ["training"]
    report.add_result(result("a", drift_times=[1.0], drift_mean=[0.7], drift_std=[0.0]))
    report.finish()
    assert drawn == ["training"]  # its data did not change: not drawn again
    assert report.plots == ["training.png", "drift.png"]
    assert strict_json(report.results_path)["files"][2:] == ["training.png", "drift.png"]
    report.add_metrics(metric("b", 1, epochs=1))
    report.add_result(result("b", metric="mse", drift_times=[1.0], drift_mean=[0.1],
                             drift_std=[0.0]))  # fmt: skip
    report.finish()
    assert drawn == ["training", "training"]
