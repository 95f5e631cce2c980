"""Early stopping, seeds, calibration and the per-layer summary, end to end: a real
workflow with the simulator in its own process, as a user runs one."""

from __future__ import annotations

from pathlib import Path

import pytest

from aif import Controller, RunState
from tests.integration.test_analog_workflows import experiment, jobs, report, workflow

pytestmark = pytest.mark.integration

TORCH_PCM = {"config": "TorchInferenceRPUConfig", "noise_model": "PCMLikeNoiseModel"}


async def test_seeds_stop_early_calibrate_and_summarise_their_layers(tmp_path: Path) -> None:
    stopper = experiment(
        "stopper",
        dataset={
            "name": "digits",
            "batch_size": 32,
            "max_train": 300,
            "max_test": 100,
            "validation_fraction": 0.25,
        },
        rpu=TORCH_PCM,
        training={
            "epochs": 6,
            "seeds": [1, 2],
            # no epoch can beat the first by more than 1.0: the second epoch stops it
            "early_stopping": {"patience": 1, "metric": "val_accuracy", "min_delta": 1.0},
        },
        inference={"drift_times": ["1h"], "repetitions": 1, "calibrate": {"batches": 2}},
    )
    async with Controller(tmp_path / "state") as controller:
        result = await controller.run_workflow(workflow([stopper], tmp_path / "r"), timeout=180)
    assert result.state is RunState.SUCCEEDED, result.error
    done = jobs(tmp_path / "r")
    assert set(done) == {"stopper[seed-1]", "stopper[seed-2]"}
    for job in done.values():
        assert job["status"] == "completed", job.get("error")
        assert job["stopped_epoch"] == 2
        assert len(job["drift_mean"]) == 1
        assert job["layer_tiles"] and all(tiles >= 1 for tiles in job["layer_tiles"])
        assert job["layer_macs"][0] == 64 * 16  # Flatten(8x8) -> Linear(16)
    seeds = report(tmp_path / "r")["seeds"]
    (group,) = seeds.values()
    assert group["seeds"] == [1, 2] and group["metric"] == "accuracy"
    assert 0.0 <= group["accuracy_mean"] <= 1.0 and group["accuracy_std"] >= 0.0
