"""A job whose training loss turns NaN or infinite fails, saying where and what to do;
``aif run``'s verdict on a sweep in which no job completed; ``tensor-source``'s bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import torch

from aif.aims.analog import spec as s
from aif.aims.analog.run_outcome import no_job_completed
from aif.aims.analog.runs import JobOutcome, JobRunner
from aif.aims.analog.seeds import job_specs
from aif.aims.analog.training import EpochRunner, batch_bounds, epoch_order
from aif.aims.builtin import (
    MAX_TENSOR_BYTES,
    MAX_TENSOR_COUNT,
    MAX_TENSOR_DIMS,
    TensorSourceParams,
)
from aif.errors import ExperimentError, WorkflowError
from aif.storage.local import LocalStorage
from aif.workflow import load_workflow_text, resolve

# -- the training loop ------------------------------------------------------------------------


def _runner(x: np.ndarray, clip: float | None = None) -> EpochRunner:
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 2)
    return EpochRunner(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        torch.nn.functional.cross_entropy,
        x,
        np.arange(len(x)) % 2,
        batch_size=4,
        seed=3,
        epoch=2,
        device=torch.device("cpu"),
        clip_grad_norm=clip,
    )


def test_a_nan_in_the_data_fails_the_batch_that_meets_it_naming_epoch_batch_and_fixes() -> None:
    x = np.ones((12, 3), np.float32)
    x[7, 1] = np.nan
    # the batch that holds sample 7 in epoch 2's shuffled order (1-based)
    order = list(epoch_order(12, 3, 2))
    bad = next(i for i, (lo, hi) in enumerate(batch_bounds(12, 4), 1) if 7 in order[lo:hi])
    runner = _runner(x)
    with pytest.raises(ExperimentError) as caught:
        while not runner.step(0):
            pass
    message = str(caught.value)
    assert f"the loss is nan at epoch 2, batch {bad} of 3" in message
    assert "lower training.optimizer.lr (now 0.01)" in message
    assert "set training.clip_grad_norm (e.g. 1.0)" in message
    assert "check the data for NaN or infinite values" in message
    # the batches before it were counted, the diverged one was not
    assert runner.batches == bad - 1 and not runner.done


def test_the_fix_names_the_clip_already_set() -> None:
    x = np.full((8, 3), np.inf, np.float32)
    with pytest.raises(ExperimentError, match=r"batch 1 of 2; .*a smaller training"):
        _runner(x, clip=5.0).step(1e9)
    with pytest.raises(ExperimentError, match=r"clip_grad_norm \(now 5\)"):
        _runner(x, clip=5.0).step(1e9)


def test_finite_training_is_untouched() -> None:
    runner = _runner(np.ones((12, 3), np.float32))
    assert runner.step(1e9) and np.isfinite(runner.loss) and runner.samples == 12


# -- a real job that diverges -----------------------------------------------------------------


def _regression_set(folder: Path, scale: float) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(24, 4)) * scale).astype(np.float32)
    y = (x @ np.array([0.5, -0.25, 0.1, 0.0], np.float32)).astype(np.float32)
    np.savez(folder / "reg.npz", x=x, y=y)


def _prepared(tmp_path: Path, lr: float) -> Any:
    raw = {
        "name": "reg",
        "dataset": {"name": "npz", "path": "reg.npz", "batch_size": 8},
        "model": {"convert": "all", "layers": ["Flatten", {"type": "Linear", "out_features": 1}]},
        "rpu": "TorchInferenceRPUConfig",
        "training": {"epochs": 5, "loss": "mse", "optimizer": {"lr": lr}},
    }
    job = s.Experiment.model_validate(raw)
    job = s.Experiment.model_validate_json(job_specs(job)[""][1].model_dump_json())
    runner = JobRunner(LocalStorage(tmp_path / "store"), tmp_path)
    return runner.prepare(job, JobOutcome("j", job.name, "", "cpu"))


def test_a_job_with_an_absurd_learning_rate_fails_in_the_epoch_it_diverges(
    tmp_path: Path,
) -> None:
    _regression_set(tmp_path, scale=1000.0)
    job = _prepared(tmp_path, lr=100.0)
    finished = 0
    with pytest.raises(ExperimentError) as caught:
        for epoch in range(1, 6):
            runner = job.epoch(epoch)
            while not runner.step(1e9):
                pass
            finished = epoch
    message = str(caught.value)
    assert f"at epoch {finished + 1}, batch " in message
    assert "the loss is inf" in message or "the loss is nan" in message
    assert "lower training.optimizer.lr (now 100)" in message


# -- the verdict of aif run -------------------------------------------------------------------


def _counts(**counts: int) -> dict[str, Any]:
    base: dict[str, Any] = {"completed": 0, "failed": 0, "stopped": 0, "rejected": 0}
    return {**base, **counts, "folders": ["/r/run"]}


@pytest.mark.parametrize(
    ("jobs", "ok", "said"),
    [
        (_counts(failed=2, rejected=1), True, "no job completed: 2 failed, 1 rejected; see "),
        (_counts(rejected=3), True, "no job completed: 0 failed, 3 rejected"),
        (_counts(failed=1, stopped=2), True, "no job completed: 1 failed, 0 rejected, 2 stopped"),
        (_counts(completed=1, failed=5, rejected=1), True, None),
        (_counts(), True, None),  # nothing to run is not a failure
        (_counts(stopped=2), True, None),  # stopped jobs: the run's state says so
        (_counts(failed=2), False, None),  # the run failed anyway: its own error says why
        (None, True, None),  # no analog reporter
    ],
)
def test_a_run_fails_when_no_job_completed_and_some_failed_or_were_rejected(
    jobs: dict[str, Any] | None, ok: bool, said: str | None
) -> None:
    problem = no_job_completed(jobs, ok)
    if said is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(said)
        assert problem.endswith("see /r/run/results.json")


# -- tensor-source's bounds -------------------------------------------------------------------


def test_tensor_source_takes_a_record_of_exactly_the_limit() -> None:
    params = TensorSourceParams(shape=[MAX_TENSOR_BYTES // 4], count=MAX_TENSOR_COUNT)
    assert params.shape == [2**28] and params.count == 100_000


@pytest.mark.parametrize(
    ("params", "field", "said"),
    [
        ({"shape": [2**28 + 1]}, "shape", "takes 1,073,741,828 bytes, over the limit of"),
        ({"shape": [10**6, 10**6, 10**3]}, "shape", "use a smaller shape"),
        ({"shape": [1] * (MAX_TENSOR_DIMS + 1)}, "shape", "at most 32 items"),
        ({"count": MAX_TENSOR_COUNT + 1}, "count", "less than or equal to 100000"),
        ({"count": -1}, "count", "greater than or equal to 0"),
    ],
)
def test_tensor_source_refuses_what_it_cannot_allocate_or_report(
    params: dict[str, Any], field: str, said: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        TensorSourceParams(**params)
    (error,) = caught.value.errors()
    assert error["loc"] == (field,) and said in error["msg"]


def test_a_workflow_asking_for_a_petabyte_tensor_does_not_load() -> None:
    text = (
        "name: big\naims:\n"
        "  gen: {type: tensor-source, params: {shape: [1000000, 1000000, 1000]}}\n"
        "  sink: {type: collect}\n"
        "connections: [gen.out -> sink.in]\n"
    )
    with pytest.raises(WorkflowError) as caught:
        resolve(load_workflow_text(text, "big.yml"))
    message = str(caught.value)
    assert "big.yml:3: aims.gen.params.shape: a float32 tensor of shape" in message
    assert "4,000,000,000,000,000 bytes, over the limit of 1,073,741,824 bytes (1 GiB)" in message


# -- the report -------------------------------------------------------------------------------


def test_a_failed_job_is_never_the_best_of_a_report(tmp_path: Path) -> None:
    from aif.aims.analog.reporter import Report

    report = Report(tmp_path)
    job = {"experiment": "e", "label": "", "device": "cpu", "metric": "mse"}
    report.add_result({**job, "job": "diverged", "status": "failed", "accuracy": 7e32})
    summary = report.summary()
    assert (summary["best"], summary["completed"], summary["failed"]) == (None, 0, 1)
    report.add_result({**job, "job": "s", "status": "stopped", "accuracy": 0.5})
    assert report.summary()["best"] == "s"
