"""EpochRunner, evaluate and seeding on real aihwkit tiles with scikit-learn's digits."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
import torch
from aihwkit.inference import PCMLikeNoiseModel
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

from aif.aims.analog.training import (
    EpochRunner,
    batch_bounds,
    epoch_order,
    evaluate,
    seed_everything,
)

CPU = torch.device("cpu")
ce = torch.nn.functional.cross_entropy


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x[:600], data.target[:600].astype(np.int64)


def torch_noisy() -> Any:
    rpu = TorchInferenceRPUConfig()
    rpu.forward.out_noise = 0.05
    rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
    return rpu


def rpucuda_noise_off() -> Any:
    rpu = InferenceRPUConfig()
    rpu.forward.is_perfect = True
    return rpu


def mlp(rpu: Any, hidden: int = 16, batchnorm: bool = False) -> Any:
    layers: list[Any] = [torch.nn.Flatten(), AnalogLinear(64, hidden, rpu_config=rpu)]
    if batchnorm:
        layers.append(torch.nn.BatchNorm1d(hidden))
    layers += [torch.nn.ReLU(), AnalogLinear(hidden, 10, rpu_config=rpu)]
    return AnalogSequential(*layers)


def sgd(model: Any, lr: float = 0.1) -> Any:
    optimizer = AnalogSGD(model.parameters(), lr=lr)
    optimizer.regroup_param_groups(model)
    return optimizer


def weights(model: Any) -> list[torch.Tensor]:
    out = []
    for layer in model.analog_layers():
        w, b = layer.get_weights()
        out += [w, b] if b is not None else [w]
    return out


def train(
    rpu: Any, data: tuple[np.ndarray, np.ndarray], seed: int, epochs: int = 2, budget: float = 1e9
) -> tuple[list[float], list[torch.Tensor]]:
    seed_everything(seed)
    model = mlp(rpu)
    optimizer = sgd(model)
    losses = []
    for epoch in range(epochs):
        runner = EpochRunner(model, optimizer, ce, *data, 32, seed, epoch, CPU)
        while not runner.step(budget):
            pass
        losses.append(runner.loss)
    return losses, weights(model)


# -- seeding and order -------------------------------------------------------------------


def test_seed_everything_repeats_python_numpy_and_torch() -> None:
    seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(7)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == second[:2]
    assert torch.equal(first[2], second[2])


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    a = epoch_order(100, 3, 1)
    assert np.array_equal(a, epoch_order(100, 3, 1))
    assert sorted(a.tolist()) == list(range(100))
    assert not np.array_equal(a, epoch_order(100, 3, 2))
    assert not np.array_equal(a, epoch_order(100, 4, 1))
    assert len(epoch_order(10, -5, 0)) == 10  # negative seeds are fine


@pytest.mark.parametrize(
    ("samples", "size", "expected"),
    [
        (64, 32, [(0, 32), (32, 64)]),
        (70, 32, [(0, 32), (32, 64), (64, 70)]),
        (65, 32, [(0, 32), (32, 65)]),  # a lone last sample joins the batch before
        (1, 32, [(0, 1)]),
        (0, 32, []),
    ],
)
def test_batch_bounds(samples: int, size: int, expected: list[tuple[int, int]]) -> None:
    assert batch_bounds(samples, size) == expected


def test_batch_bounds_refuses_zero_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batch_bounds(10, 0)


# -- determinism ---------------------------------------------------------------------------


# RPUCuda tiles with cycle noise (InferenceRPUConfig's forward noise, pulsed updates) draw
# it from a clock-seeded C++ generator: only with that noise off do they repeat exactly.
@pytest.mark.parametrize("make_rpu", [torch_noisy, FloatingPointRPUConfig, rpucuda_noise_off])
def test_same_seed_gives_bit_identical_losses_and_weights(
    make_rpu: Any, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    losses_a, weights_a = train(make_rpu(), digits, seed=5)
    losses_b, weights_b = train(make_rpu(), digits, seed=5)
    assert losses_a == losses_b
    assert all(torch.equal(a, b) for a, b in zip(weights_a, weights_b, strict=True))
    losses_c, _ = train(make_rpu(), digits, seed=6)
    assert losses_c != losses_a


def test_slicing_does_not_change_the_result(digits: tuple[np.ndarray, np.ndarray]) -> None:
    whole = train(torch_noisy(), digits, seed=1, epochs=1)
    sliced = train(torch_noisy(), digits, seed=1, epochs=1, budget=0.0)
    assert whole[0] == sliced[0]
    assert all(torch.equal(a, b) for a, b in zip(whole[1], sliced[1], strict=True))


def test_step_runs_whole_batches_and_reports_done(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits[0][:100], digits[1][:100]
    model = mlp(FloatingPointRPUConfig())
    runner = EpochRunner(model, sgd(model), ce, x, y, 32, 0, 0, CPU)
    assert runner.total_batches == 4 and math.isnan(runner.loss) and not runner.done
    assert runner.step(0.0) is False  # a zero budget still runs one batch
    assert (runner.batches, runner.samples) == (1, 32)
    assert runner.step(1e9) is True
    assert (runner.batches, runner.samples, runner.done) == (4, 100, True)
    assert math.isfinite(runner.loss)
    before = weights(model)
    assert runner.step(1e9) is True  # nothing left: no further update
    assert all(torch.equal(a, b) for a, b in zip(before, weights(model), strict=True))


def test_runner_rejects_mismatched_data(digits: tuple[np.ndarray, np.ndarray]) -> None:
    model = mlp(FloatingPointRPUConfig())
    with pytest.raises(ValueError, match="labels"):
        EpochRunner(model, sgd(model), ce, digits[0], digits[1][:10], 32, 0, 0, CPU)


# -- learning on real tiles ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make_rpu",
    [
        lambda: SingleRPUConfig(device=ConstantStepDevice()),
        InferenceRPUConfig,
    ],
    ids=["constant-step", "inference"],
)
def test_rpucuda_tiles_learn(make_rpu: Any, digits: tuple[np.ndarray, np.ndarray]) -> None:
    losses, _ = train(make_rpu(), digits, seed=0, epochs=3)
    assert losses[-1] < losses[0]


def test_conv_model_with_batchnorm_trains_and_evaluates(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    seed_everything(0)
    rpu = torch_noisy()
    model = AnalogSequential(
        AnalogConv2d(1, 4, kernel_size=3, rpu_config=rpu),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        AnalogLinear(36, 10, rpu_config=rpu),
    )
    optimizer = sgd(model)
    x, y = digits[0][:193], digits[1][:193]  # 6 batches of 32 and a lone sample
    losses = []
    for epoch in range(3):
        runner = EpochRunner(model, optimizer, ce, x, y, 32, 0, epoch, CPU)
        runner.step(1e9)
        assert runner.batches == 6 and runner.samples == 193
        losses.append(runner.loss)
    assert losses[-1] < losses[0]
    assert 0.0 <= evaluate(model, x, y, 64, CPU) <= 1.0


# -- evaluate ----------------------------------------------------------------------------------


def test_evaluate_counts_correct_predictions_and_restores_mode(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    seed_everything(0)
    model = mlp(FloatingPointRPUConfig(), batchnorm=True)
    x, y = digits
    model.train()
    accuracy = evaluate(model, x, y, 50, CPU)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = (model(torch.from_numpy(x)).argmax(dim=1).numpy() == y).mean()
    assert accuracy == pytest.approx(expected)
    assert not model.training  # eval stays eval
    assert math.isnan(evaluate(model, x[:0], y[:0], 50, CPU))


def test_evaluate_after_training_beats_chance(digits: tuple[np.ndarray, np.ndarray]) -> None:
    seed_everything(0)
    model = mlp(FloatingPointRPUConfig(), hidden=32)
    optimizer = sgd(model, lr=0.2)
    x, y = digits
    for epoch in range(4):
        EpochRunner(model, optimizer, ce, x, y, 16, 0, epoch, CPU).step(1e9)
    assert evaluate(model, x, y, 128, CPU) > 0.8
