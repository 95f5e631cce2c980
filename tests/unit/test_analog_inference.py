"""drift_inference on real aihwkit inference tiles: determinism, compensation, restoration."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from aihwkit.inference import PCMLikeNoiseModel
from aihwkit.inference.compensation.drift import (
    GlobalDriftCompensation,
    PerColumnDriftCompensation,
)
from aihwkit.nn import AnalogConv2d, AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import (
    FloatingPointRPUConfig,
    InferenceRPUConfig,
    SingleRPUConfig,
    TorchInferenceRPUConfig,
)
from aihwkit.simulator.configs.devices import ConstantStepDevice
from sklearn.datasets import load_digits

from aif.aims.analog.inference import DriftPoint, drift_inference, inference_tiles
from aif.aims.analog.training import EpochRunner, seed_everything
from aif.errors import ExperimentError

CPU = torch.device("cpu")
YEAR = 31_536_000.0
Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def digits() -> Data:
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    return x[:1200], y[:1200], x[1200:1500], y[1200:1500]


def pcm(family: Any = TorchInferenceRPUConfig, compensation: Any = "default") -> Any:
    rpu = family()
    rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
    if compensation != "default":
        rpu.drift_compensation = compensation
    return rpu


def trained(rpu: Any, data: Data, epochs: int = 3, conv: bool = False) -> Any:
    seed_everything(0)
    if conv:
        model = AnalogSequential(
            AnalogConv2d(1, 4, kernel_size=3, rpu_config=rpu),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            AnalogLinear(144, 10, rpu_config=rpu),
        )
    else:
        model = AnalogSequential(
            torch.nn.Flatten(),
            AnalogLinear(64, 32, rpu_config=rpu),
            torch.nn.ReLU(),
            AnalogLinear(32, 10, rpu_config=rpu),
        )
    optimizer = AnalogSGD(model.parameters(), lr=0.1)
    optimizer.regroup_param_groups(model)
    for epoch in range(epochs):
        runner = EpochRunner(
            model, optimizer, torch.nn.functional.cross_entropy, data[0], data[1], 32, 0, epoch, CPU
        )
        runner.step(1e9)
    return model


@pytest.fixture(scope="module")
def torch_model(digits: Data) -> Any:
    return trained(pcm(), digits)


@pytest.fixture(scope="module")
def rpucuda_model(digits: Data) -> Any:
    return trained(pcm(InferenceRPUConfig), digits, epochs=2)


def run(model: Any, data: Data, **kwargs: Any) -> list[DriftPoint]:
    options: dict[str, Any] = {
        "times": [1.0, YEAR],
        "repetitions": 3,
        "compensation": "both",
        "seed": 0,
        "batch_size": 100,
        "device": CPU,
    }
    options.update(kwargs)
    return drift_inference(model, data[2], data[3], **options)


def by_mode(points: list[DriftPoint], compensated: bool) -> dict[float, DriftPoint]:
    return {p.seconds: p for p in points if p.compensated == compensated}


def snapshot(model: Any) -> dict[str, Any]:
    tiles = inference_tiles(model)
    return {
        "weights": [w for layer in model.analog_layers() for w in layer.get_weights()],
        "alpha": [t.alpha.clone() for t in tiles],
        "compensation": [t.rpu_config.drift_compensation for t in tiles],
        "reference": [t.reference_combined_weights for t in tiles],
        "programmed": [t.programmed_weights for t in tiles],
        "training": model.training,
        "rng": torch.get_rng_state(),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert all(torch.equal(a, b) for a, b in zip(before["weights"], after["weights"], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before["alpha"], after["alpha"], strict=True))
    assert all(a is b for a, b in zip(before["compensation"], after["compensation"], strict=True))
    assert before["reference"] == after["reference"]
    assert before["programmed"] == after["programmed"]
    assert before["training"] == after["training"]
    assert torch.equal(before["rng"], after["rng"])


# -- results ----------------------------------------------------------------------------------


def test_points_come_per_time_and_mode(torch_model: Any, digits: Data) -> None:
    points = run(torch_model, digits, times=[1.0, 3600.0, YEAR], repetitions=2)
    assert [(p.seconds, p.compensated) for p in points] == [
        (1.0, False),
        (1.0, True),
        (3600.0, False),
        (3600.0, True),
        (YEAR, False),
        (YEAR, True),
    ]
    for p in points:
        assert len(p.accuracies) == 2
        assert p.mean == pytest.approx(np.mean(p.accuracies))
        assert p.std == pytest.approx(np.std(p.accuracies))
    assert all(p.compensated for p in run(torch_model, digits, compensation="with"))
    assert not any(p.compensated for p in run(torch_model, digits, compensation="without"))


@pytest.mark.parametrize("model_name", ["torch_model", "rpucuda_model"])
def test_accuracy_is_high_at_one_second_and_compensation_helps_after_a_year(
    model_name: str, digits: Data, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(model_name)
    points = run(model, digits, repetitions=4)
    without, with_ = by_mode(points, False), by_mode(points, True)
    assert without[1.0].mean > 0.6 and with_[1.0].mean > 0.6
    assert without[YEAR].mean < without[1.0].mean  # PCM drift costs accuracy ...
    assert with_[YEAR].mean >= without[YEAR].mean  # ... and compensation wins some back


# -- determinism ------------------------------------------------------------------------------


def test_same_seed_same_points_on_torch_tiles(torch_model: Any, digits: Data) -> None:
    first = run(torch_model, digits, seed=3)
    assert first == run(torch_model, digits, seed=3)
    other = run(torch_model, digits, seed=4)
    assert [p.accuracies for p in other] != [p.accuracies for p in first]


def test_a_mode_measures_the_same_alone_or_with_the_other(torch_model: Any, digits: Data) -> None:
    both = run(torch_model, digits)
    assert by_mode(both, False) == by_mode(run(torch_model, digits, compensation="without"), False)
    assert by_mode(both, True) == by_mode(run(torch_model, digits, compensation="with"), True)


# -- the trained model is left alone -----------------------------------------------------------


@pytest.mark.parametrize("model_name", ["torch_model", "rpucuda_model"])
@pytest.mark.parametrize("compensation", ["with", "without", "both"])
def test_weights_and_tile_state_are_restored(
    model_name: str, compensation: str, digits: Data, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(model_name)
    model.train()
    before = snapshot(model)
    run(model, digits, repetitions=1, compensation=compensation)
    assert_same(before, snapshot(model))


def test_restored_even_when_evaluation_fails(torch_model: Any, digits: Data) -> None:
    before = snapshot(torch_model)
    bad = (digits[0], digits[1], digits[2][:, :, :4, :4], digits[3])  # wrong input shape
    with pytest.raises(RuntimeError):
        run(torch_model, bad)
    assert_same(before, snapshot(torch_model))


def another_epoch(model: Any, data: Data) -> list[torch.Tensor]:
    seed_everything(1)
    optimizer = AnalogSGD(model.parameters(), lr=0.1)
    optimizer.regroup_param_groups(model)
    ce = torch.nn.functional.cross_entropy
    EpochRunner(model, optimizer, ce, data[0], data[1], 32, 0, 1, CPU).step(1e9)
    return [w for layer in model.analog_layers() for w in layer.get_weights()]


def test_drift_inference_leaves_no_trace_on_later_training(digits: Data) -> None:
    """Training on after a drift run gives exactly what training straight on gives."""
    interrupted = trained(pcm(), digits, epochs=1)
    run(interrupted, digits, repetitions=2)
    straight = trained(pcm(), digits, epochs=1)
    after = another_epoch(interrupted, digits)
    expected = another_epoch(straight, digits)
    assert all(torch.equal(a, b) for a, b in zip(after, expected, strict=True))
    # ... and a later drift run programs the new weights, not the earlier ones.
    assert run(interrupted, digits, seed=9) == run(straight, digits, seed=9)


def test_programs_the_current_weights_not_a_stale_reference(digits: Data) -> None:
    clean = trained(pcm(), digits, epochs=1)
    stale = trained(pcm(), digits, epochs=1)
    for tile in inference_tiles(stale):  # as left by an earlier program_weights()
        tile.reference_combined_weights = torch.zeros_like(tile.tile.get_weights())
    assert run(stale, digits) == run(clean, digits)
    assert all(t.reference_combined_weights.abs().sum() == 0 for t in inference_tiles(stale))


# -- compensation choices ---------------------------------------------------------------------


def test_without_a_configured_compensation_with_uses_the_global_one(digits: Data) -> None:
    model = trained(pcm(compensation=None), digits, epochs=1)
    points = run(model, digits, repetitions=2)
    assert {p.compensated for p in points} == {False, True}
    assert all(t.rpu_config.drift_compensation is None for t in inference_tiles(model))
    # The same weights with GlobalDriftCompensation configured measure the same.
    configured = trained(pcm(compensation=GlobalDriftCompensation()), digits, epochs=1)
    assert run(configured, digits, repetitions=2) == points


def test_a_configured_per_column_compensation_is_used(digits: Data) -> None:
    model = trained(pcm(compensation=PerColumnDriftCompensation()), digits, epochs=1)
    per_column = by_mode(run(model, digits, repetitions=2), True)
    global_ = by_mode(run(trained(pcm(), digits, epochs=1), digits, repetitions=2), True)
    assert per_column != global_


def test_conv_model_drifts(digits: Data) -> None:
    model = trained(pcm(), digits, epochs=1, conv=True)
    points = run(model, digits, repetitions=1)
    assert len(points) == 4 and all(0.0 <= p.mean <= 1.0 for p in points)


# -- stopping and refusing -----------------------------------------------------------------------


def test_should_stop_is_asked_between_repetitions(torch_model: Any, digits: Data) -> None:
    asked: list[int] = []

    def stop_after_one() -> bool:
        asked.append(1)
        return len(asked) > 1

    points = run(torch_model, digits, repetitions=5, should_stop=stop_after_one)
    assert len(asked) == 2
    assert all(len(p.accuracies) == 1 for p in points) and len(points) == 4
    assert run(torch_model, digits, should_stop=lambda: True) == []


@pytest.mark.parametrize(
    "rpu", [FloatingPointRPUConfig(), SingleRPUConfig(device=ConstantStepDevice())]
)
def test_non_inference_model_is_refused_at_inference(rpu: Any, digits: Data) -> None:
    model = AnalogSequential(torch.nn.Flatten(), AnalogLinear(64, 10, rpu_config=rpu))
    with pytest.raises(ExperimentError) as info:
        run(model, digits)
    assert info.value.problems[0][0] == "inference"
    assert "InferenceRPUConfig" in info.value.problems[0][1]


def test_bad_arguments(torch_model: Any, digits: Data) -> None:
    with pytest.raises(ValueError, match="compensation"):
        run(torch_model, digits, compensation="sometimes")
    with pytest.raises(ValueError, match="repetition"):
        run(torch_model, digits, repetitions=0)
    with pytest.raises(ValueError, match="time"):
        run(torch_model, digits, times=[])
