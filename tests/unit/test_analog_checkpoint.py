"""Tensor-only checkpoints of aihwkit models: round trips, portability and mismatches."""

from __future__ import annotations

import io
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

from aif.aims.analog.checkpoint import digital_weights, load_weights, save_weights, weights_dict
from aif.aims.analog.training import EpochRunner, seed_everything
from aif.errors import ExperimentError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x[:256], data.target[:256].astype(np.int64)


def pcm_inference() -> Any:
    rpu = InferenceRPUConfig()
    rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
    return rpu


CONFIGS = {
    "floating-point": FloatingPointRPUConfig,
    "inference": pcm_inference,
    "torch-inference": TorchInferenceRPUConfig,
    # Pulsed devices draw device-to-device variation (weight bounds) when a tile is
    # built; set_weights clips to the new devices' bounds unless they are the same
    # devices, i.e. built with the same nonzero construction_seed.
    "constant-step": lambda: SingleRPUConfig(device=ConstantStepDevice(construction_seed=7)),
}


def cnn(rpu: Any, hidden: int = 16, seed: int = 0) -> Any:
    """Conv, BatchNorm2d (buffers), Linear without bias, BatchNorm1d, Linear."""
    seed_everything(seed)
    return AnalogSequential(
        AnalogConv2d(1, 4, kernel_size=3, rpu_config=rpu),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        AnalogLinear(144, hidden, bias=False, rpu_config=rpu),
        torch.nn.BatchNorm1d(hidden),
        torch.nn.ReLU(),
        AnalogLinear(hidden, 10, rpu_config=rpu),
    )


def train(model: Any, data: tuple[np.ndarray, np.ndarray]) -> Any:
    optimizer = AnalogSGD(model.parameters(), lr=0.1)
    optimizer.regroup_param_groups(model)
    ce = torch.nn.functional.cross_entropy
    EpochRunner(model, optimizer, ce, *data, 32, 0, 0, CPU).step(1e9)
    return model


def analog_weights(model: Any) -> list[torch.Tensor]:
    return [w for layer in model.analog_layers() for w in layer.get_weights() if w is not None]


def digital_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if "analog_module" not in k}


# -- the format ----------------------------------------------------------------------------------


def test_bytes_hold_only_named_tensors(digits: tuple[np.ndarray, np.ndarray]) -> None:
    model = train(cnn(pcm_inference()), digits)
    loaded = torch.load(io.BytesIO(save_weights(model)), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in loaded.values())
    assert set(loaded) == {
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "4.weight",  # no bias: the layer has none
        "5.weight",
        "5.bias",
        "5.running_mean",
        "5.running_var",
        "5.num_batches_tracked",
        "7.weight",
        "7.bias",
    }
    assert loaded["0.weight"].shape == (4, 9)
    assert loaded["1.num_batches_tracked"].item() == 8  # 256 samples in batches of 32


def test_a_bare_analog_layer_has_unprefixed_keys() -> None:
    layer = AnalogLinear(3, 2, rpu_config=FloatingPointRPUConfig())
    assert set(weights_dict(layer)) == {"weight", "bias"}


# -- round trips ----------------------------------------------------------------------------------


def test_floating_point_round_trip_gives_the_same_outputs(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    model = train(cnn(FloatingPointRPUConfig()), digits)
    fresh = cnn(FloatingPointRPUConfig(), seed=1)
    load_weights(fresh, save_weights(model))
    model.eval()
    fresh.eval()
    x = torch.from_numpy(digits[0][:64])
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))
    assert all(
        torch.equal(a, b) for a, b in zip(analog_weights(model), analog_weights(fresh), strict=True)
    )
    for key, value in digital_state(model).items():
        assert torch.equal(value, digital_state(fresh)[key]), key


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_analog_round_trip_gives_the_same_weights(
    name: str, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    model = train(cnn(CONFIGS[name]()), digits)
    fresh = cnn(CONFIGS[name](), seed=1)
    assert not torch.equal(analog_weights(model)[0], analog_weights(fresh)[0])
    load_weights(fresh, save_weights(model))
    assert all(
        torch.equal(a, b) for a, b in zip(analog_weights(model), analog_weights(fresh), strict=True)
    )
    for key, value in digital_state(model).items():
        assert torch.equal(value, digital_state(fresh)[key]), key


def test_other_pulsed_devices_clip_to_their_own_bounds(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    model = train(cnn(SingleRPUConfig(device=ConstantStepDevice(construction_seed=7))), digits)
    other = cnn(SingleRPUConfig(device=ConstantStepDevice(construction_seed=8)), seed=1)
    load_weights(other, save_weights(model))
    pairs = list(zip(analog_weights(model), analog_weights(other), strict=True))
    assert not all(torch.equal(a, b) for a, b in pairs)
    assert all(b.abs().max() <= a.abs().max() for a, b in pairs)
    same = sum(int((a == b).sum()) for a, b in pairs) / sum(a.numel() for a, _ in pairs)
    assert same > 0.95


def test_weights_move_between_configurations(digits: tuple[np.ndarray, np.ndarray]) -> None:
    model = train(cnn(FloatingPointRPUConfig()), digits)
    pcm = cnn(pcm_inference(), seed=1)
    load_weights(pcm, save_weights(model))
    assert all(
        torch.equal(a, b) for a, b in zip(analog_weights(model), analog_weights(pcm), strict=True)
    )


def test_scaled_and_split_tiles_round_trip_logical_weights() -> None:
    def scaled() -> Any:
        rpu = InferenceRPUConfig()
        rpu.forward.is_perfect = True
        rpu.mapping.weight_scaling_omega = 0.8
        rpu.mapping.learn_out_scaling = True
        rpu.mapping.max_input_size = 16  # 40 inputs: three tiles per row
        rpu.mapping.max_output_size = 8
        rpu.pre_post.input_range.enable = True
        return rpu

    seed_everything(0)
    model = AnalogSequential(AnalogLinear(40, 20, rpu_config=scaled()))
    for tile in model.analog_tiles():
        tile.set_learned_out_scales(torch.full((1,), 1.5))
        tile.set_input_range(2.5)
    seed_everything(1)
    fresh = AnalogSequential(AnalogLinear(40, 20, rpu_config=scaled()))
    load_weights(fresh, save_weights(model))
    (w, b), (w2, b2) = model[0].get_weights(), fresh[0].get_weights()
    torch.testing.assert_close(w2, w)
    torch.testing.assert_close(b2, b)
    assert [t.input_range.item() for t in fresh.analog_tiles()] == [2.5] * 9
    model.eval()
    fresh.eval()
    x = torch.rand(5, 40)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))
    # Input ranges belong to the configuration: a model without them still loads.
    plain = AnalogSequential(AnalogLinear(40, 20, rpu_config=FloatingPointRPUConfig()))
    load_weights(plain, save_weights(model))
    torch.testing.assert_close(plain[0].get_weights()[0], w)


# -- mismatches ------------------------------------------------------------------------------------


def problems_of(model: Any, data: bytes) -> list[tuple[str, str]]:
    with pytest.raises(ExperimentError, match="same model") as info:
        load_weights(model, data)
    return info.value.problems


def test_wrong_shapes_are_named_and_nothing_is_written() -> None:
    data = save_weights(cnn(FloatingPointRPUConfig(), hidden=16))
    other = cnn(FloatingPointRPUConfig(), hidden=12, seed=1)
    before = analog_weights(other)
    problems = problems_of(other, data)
    messages = [m for _, m in problems]
    assert all(path == "load_checkpoint" for path, _ in problems)
    assert "4.weight: the checkpoint has shape [16, 144], the model [12, 144]" in messages
    assert any(m.startswith("5.running_mean:") for m in messages)
    assert any(m.startswith("7.weight:") for m in messages)
    assert all(torch.equal(a, b) for a, b in zip(before, analog_weights(other), strict=True))


def test_missing_and_unexpected_keys_are_named() -> None:
    rpu = FloatingPointRPUConfig()
    small = AnalogSequential(torch.nn.Flatten(), AnalogLinear(64, 10, rpu_config=rpu))
    with_bn = AnalogSequential(
        torch.nn.Flatten(), AnalogLinear(64, 10, rpu_config=rpu), torch.nn.BatchNorm1d(10)
    )
    messages = [m for _, m in problems_of(with_bn, save_weights(small))]
    assert "2.weight: missing from the checkpoint" in messages
    assert "2.running_var: missing from the checkpoint" in messages
    messages = [m for _, m in problems_of(small, save_weights(with_bn))]
    assert "2.bias: in the checkpoint but not in the model" in messages
    no_bias = AnalogSequential(torch.nn.Flatten(), AnalogLinear(64, 10, False, rpu_config=rpu))
    messages = [m for _, m in problems_of(with_bn, save_weights(no_bias))]
    assert "1.bias: missing from the checkpoint" in messages


@pytest.mark.parametrize(
    "payload",
    [b"not a checkpoint", b""],
)
def test_bytes_that_are_not_a_checkpoint(payload: bytes) -> None:
    model = cnn(FloatingPointRPUConfig())
    with pytest.raises(ExperimentError, match="does not load") as info:
        load_weights(model, payload)
    assert info.value.problems[0][0] == "load_checkpoint"


def test_a_checkpoint_of_other_things_is_refused() -> None:
    buffer = io.BytesIO()
    torch.save({"weight": 1.0}, buffer)
    with pytest.raises(ExperimentError, match="does not load") as info:
        load_weights(cnn(FloatingPointRPUConfig()), buffer.getvalue())
    assert "names to tensors" in info.value.problems[0][1]


def test_aihwkit_state_dicts_are_refused_without_unpickling_them() -> None:
    """aihwkit's own state_dict holds the RPU config objects: weights_only refuses it."""
    model = cnn(pcm_inference())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    with pytest.raises(ExperimentError, match="does not load"):
        load_weights(cnn(pcm_inference()), buffer.getvalue())


def test_digital_weights_make_a_digital_twin_that_computes_the_same() -> None:
    """What a deployment target gets: the analog model's weights in digital shapes."""
    torch.manual_seed(0)
    fp = FloatingPointRPUConfig()
    analog = AnalogSequential(
        AnalogConv2d(1, 4, 3, padding=1, rpu_config=fp),
        torch.nn.ReLU(),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        AnalogLinear(256, 10, rpu_config=fp),
    ).eval()
    twin = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(256, 10),
    ).eval()
    weights = digital_weights(analog)
    assert weights["0.weight"].shape == (4, 1, 3, 3)
    twin.load_state_dict(weights, strict=True)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), analog(x), atol=1e-5, rtol=1e-5)
