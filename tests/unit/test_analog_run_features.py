"""Regression (loss: mse), gradient clipping, early stopping, seeds, input-range
calibration and the per-layer summary: tiny, seeded, and timing-free."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aif.aims.analog import spec as s
from aif.aims.analog.early_stopping import EarlyStopper, early_stopper
from aif.aims.analog.reporter import Report
from aif.aims.analog.runs import JobOutcome, JobRunner
from aif.aims.analog.seeds import job_specs, seed_group
from aif.aims.analog.task_metrics import mse_loss
from aif.aims.analog.training import EpochRunner
from aif.aims.analog.validator import review_experiment
from aif.storage.local import LocalStorage

MLP = {"convert": "all", "layers": ["Flatten", {"type": "Linear", "out_features": 1}]}


def regression_set(folder: Path, samples: int = 24) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 4)).astype(np.float32)
    y = (x @ np.array([0.5, -0.25, 0.1, 0.0], np.float32)).astype(np.float32)
    np.savez(folder / "reg.npz", x=x, y=y)


def experiment(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "reg",
        "dataset": {"name": "npz", "path": "reg.npz", "batch_size": 8},
        "model": MLP,
        "rpu": "TorchInferenceRPUConfig",
        "training": {"epochs": 2, "loss": "mse", "optimizer": {"lr": 0.05}},
    }
    base.update(fields)
    return base


def prepared(tmp_path: Path, raw: dict[str, Any]) -> Any:
    job = s.Experiment.model_validate(raw)
    job = s.Experiment.model_validate_json(job_specs(job)[""][1].model_dump_json())
    runner = JobRunner(LocalStorage(tmp_path / "store"), tmp_path)
    return runner.prepare(job, JobOutcome("j", job.name, "", "cpu"))


def train(job: Any, epochs: int) -> None:
    for epoch in range(1, epochs + 1):
        runner = job.epoch(epoch)
        while not runner.step(1e9):
            pass
        job.outcome.epoch_done(job.evaluate(), 0.0)


# -- regression ---------------------------------------------------------------------------


def test_regression_is_accepted_with_mse_and_refused_with_a_classification_loss(
    tmp_path: Path,
) -> None:
    regression_set(tmp_path)
    assert review_experiment(experiment(), tmp_path).accepted
    refused = review_experiment(
        experiment(training={"epochs": 1, "loss": "cross_entropy"}), tmp_path
    )
    assert "use loss: mse" in dict(refused.problems)["dataset.task"]


def test_regression_trains_and_drifts_reporting_mse(tmp_path: Path) -> None:
    regression_set(tmp_path)
    job = prepared(tmp_path, experiment(inference={"drift_times": ["1h"], "repetitions": 2}))
    assert job.outcome.metric == "mse"
    before = job.evaluate()
    train(job, 2)
    assert math.isfinite(job.outcome.accuracy) and job.outcome.accuracy < before
    assert not job.drift(lambda: False)
    assert all(m >= 0 for m in job.outcome.drift_mean)
    summary = job.outcome.summary()
    assert "mse" in summary and "accuracy" not in summary and "mse@1h" in summary
    assert job.outcome.record()["metric"] == "mse"


def test_mse_on_class_labels_compares_one_hot() -> None:
    out = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(mse_loss(out, torch.tensor([0, 1]))) == 0.0
    assert float(mse_loss(out[:, :1], torch.tensor([1.0, 0.0]))) == pytest.approx(0.0)


# -- gradient clipping ----------------------------------------------------------------------


def _one_step(clip: float | None) -> tuple[torch.Tensor, float]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    x = np.full((4, 3), 100.0, np.float32)
    runner = EpochRunner(
        model,
        optimizer,
        torch.nn.functional.cross_entropy,
        x,
        np.array([0, 1, 0, 1]),
        4,
        seed=0,
        epoch=1,
        device=torch.device("cpu"),
        clip_grad_norm=clip,
    )
    before = model.weight.detach().clone()
    runner.step(1e9)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
    return model.weight.detach() - before, norm


def test_clip_grad_norm_bounds_the_step() -> None:
    _, unclipped = _one_step(None)
    _, clipped = _one_step(0.5)
    assert unclipped > 0.5 and clipped == pytest.approx(0.5, rel=1e-4)


# -- early stopping --------------------------------------------------------------------------


def test_early_stopper_counts_epochs_without_improvement() -> None:
    spec = s.EarlyStoppingSpec(patience=2, min_delta=0.01)
    stopper = EarlyStopper(spec, higher_is_better=True)
    assert [stopper.update(e, v) for e, v in enumerate([0.5, 0.6, 0.605, 0.59], 1)] == [
        False,
        False,
        False,
        True,
    ]
    assert stopper.best_epoch == 2
    lower = early_stopper(s.EarlyStoppingSpec(patience=1, metric="val_loss"), "accuracy")
    assert lower is not None and not lower.higher_is_better
    assert not lower.update(1, 1.0) and lower.update(2, 1.5)
    assert early_stopper(None, "accuracy") is None


def test_early_stopping_needs_a_validation_split(tmp_path: Path) -> None:
    regression_set(tmp_path)
    raw = experiment(training={"epochs": 2, "loss": "mse", "early_stopping": {"patience": 1}})
    problems = dict(review_experiment(raw, tmp_path).problems)
    assert "dataset.validation_fraction" in problems["training.early_stopping"]
    raw["dataset"]["validation_fraction"] = 0.25
    assert review_experiment(raw, tmp_path).accepted


# -- seeds ------------------------------------------------------------------------------------


def test_seeds_fan_out_with_a_sweep_as_a_product() -> None:
    exp = s.Experiment.model_validate(
        {
            "name": "x",
            "model": MLP,
            "sweep": {"a": "TorchInferenceRPUConfig", "b": "InferenceRPUConfig"},
            "training": {"seeds": [3, 1]},
        }
    )
    jobs = job_specs(exp)
    assert list(jobs) == ["a.seed-3", "a.seed-1", "b.seed-3", "b.seed-1"]
    label, job = jobs["b.seed-1"]
    assert label == "b" and job.training.seed == 1 and job.training.seeds is None
    assert job.sweep is None and job.rpu is not None and job.rpu.config == "InferenceRPUConfig"
    assert seed_group(s.job_name("x", "b.seed-1")) == ("x[b]", 1)
    assert seed_group("x[seed-2]@chip") == ("x@chip", 2)
    assert seed_group("x[b]") == ("x[b]", None)
    with pytest.raises(ValueError, match="repeat"):
        s.TrainingSpec(seeds=[1, 1])


def test_a_job_without_seeds_is_the_same_as_before() -> None:
    exp = s.Experiment.model_validate({"name": "x", "model": MLP, "training": {"seed": 7}})
    assert list(job_specs(exp)) == [""]
    assert job_specs(exp)[""][1] == exp.job("")


def test_reporter_gives_mean_and_std_across_seeds_and_picks_the_lowest_mse(
    tmp_path: Path,
) -> None:
    report = Report(tmp_path)
    for seed, acc, drift in ((0, 0.8, [0.7, 0.6]), (1, 0.6, [0.5, 0.4])):
        report.add_result(
            {
                "job": f"x[seed-{seed}]",
                "status": "completed",
                "accuracy": acc,
                "metric": "accuracy",
                "drift_times": [1.0, 3600.0],
                "drift_mean": drift,
                "drift_mean_compensated": [],
                "layer_names": ["0"],
                "layer_tiles": [1],
                "layer_macs": [40],
            }
        )
    doc = report.document()
    stats = doc["seeds"]["x"]
    assert stats["seeds"] == [0, 1]
    assert stats["accuracy_mean"] == pytest.approx(0.7)
    assert stats["accuracy_std"] == pytest.approx(0.1)
    assert stats["drift_mean"] == pytest.approx([0.6, 0.5])
    assert stats["drift_std"] == pytest.approx([0.1, 0.1])
    assert doc["jobs"][0]["layers"] == [{"name": "0", "tiles": 1, "macs": 40}]

    (tmp_path / "mse").mkdir()
    errors = Report(tmp_path / "mse")
    for job, value in (("a", 0.3), ("b", 0.1)):
        errors.add_result({"job": job, "status": "completed", "accuracy": value, "metric": "mse"})
    assert errors.summary()["best"] == "b"


# -- calibration and the layer summary ---------------------------------------------------------


def test_calibration_sets_input_ranges_and_is_refused_without_them(tmp_path: Path) -> None:
    regression_set(tmp_path)
    raw = experiment(inference={"drift_times": ["1h"], "repetitions": 1, "calibrate": {}})
    raw["inference"]["calibrate"] = {"batches": 2, "type": "max"}
    job = prepared(tmp_path, raw)
    train(job, 1)
    assert job.calibrate() == 2
    tiles = list(job.model.analog_tiles())
    assert all(t.rpu_config.pre_post.input_range.enable for t in tiles)
    ranges = [float(t.input_range) for t in tiles]
    assert all(r > 0 for r in ranges)
    assert not job.drift(lambda: False)

    raw["rpu"] = "FloatingPointRPUConfig"
    problems = dict(review_experiment(raw, tmp_path).problems)
    assert "no input ranges" in problems["inference.calibrate"]


def test_results_list_tiles_and_macs_per_analog_layer(tmp_path: Path) -> None:
    regression_set(tmp_path)
    raw = experiment()
    raw["model"] = {
        "convert": "all",
        "layers": [
            "Flatten",
            {"type": "Linear", "out_features": 3},
            "ReLU",
            {"type": "Linear", "out_features": 1},
        ],
    }
    job = prepared(tmp_path, raw)
    job.summarise_layers()
    record = job.outcome.record()
    assert record["layer_tiles"] == [1, 1]
    assert record["layer_macs"] == [4 * 3, 3 * 1]
    assert len(record["layer_names"]) == 2


def test_half_precision_trains_in_bfloat16_and_drifts_in_float32(tmp_path: Path) -> None:
    regression_set(tmp_path)
    raw = experiment(
        rpu={"config": "TorchInferenceRPUConfig", "runtime": {"data_type": "half"}},
        training={"epochs": 1, "loss": "mse", "precision": "bfloat16"},
        inference={"drift_times": [1.0], "repetitions": 1},
    )
    assert review_experiment(raw, tmp_path).accepted
    job = prepared(tmp_path, raw)
    weights = [p for p in job.model.parameters() if p.is_floating_point()]
    assert weights and all(p.dtype == torch.bfloat16 for p in weights)
    train(job, 1)
    assert math.isfinite(job.outcome.accuracy)
    job.full_precision()
    assert all(p.dtype == torch.float32 for p in job.model.parameters())
    assert not job.drift(lambda: False)
    assert math.isfinite(job.outcome.drift_mean[0])


def test_half_precision_is_refused_on_cpp_tiles_and_half_tiles_in_float32(
    tmp_path: Path,
) -> None:
    regression_set(tmp_path)
    cpp = review_experiment(
        experiment(training={"loss": "mse", "precision": "float16"}, rpu="InferenceRPUConfig"),
        tmp_path,
    )
    assert any(
        field == "training.precision" and "TorchInferenceRPUConfig" in message
        for field, message in cpp.problems
    ), cpp.problems
    half_tiles = review_experiment(
        experiment(rpu={"config": "TorchInferenceRPUConfig", "runtime": {"data_type": "half"}}),
        tmp_path,
    )
    assert ("rpu.runtime.data_type") in dict(half_tiles.problems), half_tiles.problems
