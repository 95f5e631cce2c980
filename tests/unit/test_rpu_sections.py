"""RPU sections by aihwkit's own names, compound devices, compensations, per-layer configs.

Each new field is checked twice: the resolved aihwkit object has the value, and a tiny
model built with it trains one batch of synthetic data.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from aihwkit.inference.compensation.drift import PerColumnDriftCompensation
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import ConstantStepDevice, InferenceRPUConfig, SingleRPUConfig

from aif.aims.analog import build
from aif.aims.analog.aihwkit_names import drift_compensation_classes, section_names
from aif.aims.analog.rpu_configs import rpu_config, tile_kind
from aif.aims.analog.rpu_layers import layer_configs
from aif.aims.analog.spec import ModelSpec, RPUSpec, TrainingSpec
from aif.errors import ExperimentError

MLP = ModelSpec.model_validate(
    {
        "convert": "all",
        "layers": [
            "Flatten",
            {"type": "Linear", "out_features": 8},
            "ReLU",
            {"type": "Linear", "out_features": 3},
        ],
    }
)


def rpu(**fields: Any) -> Any:
    return build.build_rpu_config(RPUSpec.model_validate(fields))


def problems(**fields: Any) -> list[tuple[str, str]]:
    return rpu_config(RPUSpec.model_validate(fields), "rpu")[1]


def train_one_batch(config: Any, model_spec: ModelSpec = MLP) -> torch.nn.Module:
    """Builds the model with ``config`` and takes one optimizer step on synthetic data."""
    torch.manual_seed(0)
    model = build.build_model(model_spec, config, (1, 4, 4), classes=3)
    optimizer = build.build_optimizer(TrainingSpec(), model)
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    assert torch.isfinite(loss)
    return model


# -- sections by their own names ---------------------------------------------------------


def test_sections_come_from_the_config_class_fields() -> None:
    assert {"pre_post", "remap", "runtime", "clip", "modifier"} <= set(
        section_names(InferenceRPUConfig)
    )
    assert "remap" not in section_names(SingleRPUConfig)


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        (
            {"pre_post": {"input_range": {"enable": True, "init_value": 2.0}}},
            lambda r: r.pre_post.input_range.enable and r.pre_post.input_range.init_value == 2.0,
        ),
        (
            {"remap": {"type": "CHANNELWISE_SYMMETRIC"}},
            lambda r: r.remap.type.name == "CHANNELWISE_SYMMETRIC",
        ),
        ({"runtime": {"offload_input": False}}, lambda r: r.runtime.offload_input is False),
        (
            {"clip": {"type": "FIXED_VALUE", "fixed_value": 1.0}},
            lambda r: r.clip.fixed_value == 1.0,
        ),
    ],
)
def test_a_section_is_set_and_trains(fields: dict[str, Any], check: Any) -> None:
    config = rpu(config="TorchInferenceRPUConfig", **fields)
    assert check(config)
    train_one_batch(config)


def test_an_extra_section_only_some_families_have_is_set() -> None:
    config = rpu(config="QuantizedTorchInferenceRPUConfig", act_quant_config={"n_bits": 4})
    assert config.act_quant_config.n_bits == 4


def test_a_wrong_section_lists_the_valid_ones_for_the_config() -> None:
    [(where, message)] = problems(config="SingleRPUConfig", pre_pots={"x": 1})
    assert where == "rpu.pre_pots"
    assert "did you mean 'pre_post'?" in message and "valid for SingleRPUConfig" in message
    [(where, message)] = problems(config="SingleRPUConfig", remap={"type": "NONE"})
    assert where == "rpu.remap" and "SingleRPUConfig has no 'remap'" in message


# -- compound devices --------------------------------------------------------------------


def test_unit_cell_devices_take_mappings_and_dotted_keys() -> None:
    config = rpu(
        config="TikiTakaReRamSBPreset",
        device_params={
            "unit_cell_devices": [{"dw_min": 0.2}, {"type": "ConstantStepDevice"}],
            "unit_cell_devices.1.dw_min": 0.3,
            "transfer_forward.out_noise": 0.0,
        },
    )
    first, second = config.device.unit_cell_devices
    assert first.dw_min == 0.2
    assert isinstance(second, ConstantStepDevice) and second.dw_min == 0.3
    assert config.device.transfer_forward.out_noise == 0.0
    train_one_batch(config)


def test_a_wrong_nested_device_name_is_a_problem_not_a_traceback() -> None:
    found = problems(
        config="TikiTakaReRamSBPreset",
        device_params={"unit_cell_devices": [{"dwmin": 0.2}, {}], "unit_cell_devices.4.dw_min": 1},
    )
    paths = [where for where, _ in found]
    assert paths == [
        "rpu.device_params.unit_cell_devices.0.dwmin",
        "rpu.device_params.unit_cell_devices.4",
    ]
    assert "did you mean 'dw_min'?" in found[0][1]


# -- drift compensation ------------------------------------------------------------------


def test_every_compensation_of_aihwkit_is_found() -> None:
    assert "PerColumnDriftCompensation" in drift_compensation_classes()
    config = rpu(noise_model="PCMLikeNoiseModel", drift_compensation="PerColumnDriftCompensation")
    assert isinstance(config.drift_compensation, PerColumnDriftCompensation)
    model = train_one_batch(config)
    model.eval()
    model.program_analog_weights()
    model.drift_analog_weights(3600.0)


def test_a_conductance_converter_and_a_custom_drift_model_are_set_by_name() -> None:
    table = {"g_lst": [0.0, 10.0, 25.0], "nu_mean_lst": [0.08, 0.05, 0.03]}
    table["nu_std_lst"] = [0.03, 0.02, 0.01]
    converter = {"name": "SinglePairConductanceConverter", "g_min": 0.0, "g_max": 25.0}
    noise = {
        "name": "CustomDriftPCMLikeNoiseModel",
        "params": {"custom_drift_model": table, "g_converter": converter},
    }
    config = rpu(config="TorchInferenceRPUConfig", noise_model=noise)
    assert type(config.noise_model.g_converter).__name__ == "SinglePairConductanceConverter"
    assert config.noise_model.g_converter.g_max == 25.0
    model = train_one_batch(config)
    model.eval()
    model.program_analog_weights()
    model.drift_analog_weights(3600.0)
    wrong = problems(
        config="TorchInferenceRPUConfig",
        noise_model={"name": "PCMLikeNoiseModel", "params": {"g_converter": {"name": "Dual"}}},
    )
    assert wrong[0][0] == "rpu.noise_model.params.g_converter"
    assert "DualPairConductanceConverter" in wrong[0][1] and "valid:" in wrong[0][1]


# -- per-layer configurations ------------------------------------------------------------


def test_layers_get_their_own_configuration() -> None:
    config = rpu(
        config="TorchInferenceRPUConfig",
        layers={"3": {"config": "TorchInferenceRPUConfig", "forward": {"out_noise": 0.0}}},
    )
    assert list(layer_configs(config)) == ["3"]
    model = train_one_batch(config)
    first, last = [m for m in model.modules() if isinstance(m, AnalogLinear)]
    assert first.analog_module.rpu_config.forward.out_noise != 0.0
    assert last.analog_module.rpu_config.forward.out_noise == 0.0
    assert tile_kind(config) == "torch"


def test_a_layer_of_another_simulator_routes_the_job() -> None:
    config = rpu(config="TorchInferenceRPUConfig", layers={"1": "InferenceRPUConfig"})
    assert tile_kind(config) == "rpucuda"


def test_zoo_modules_match_by_name() -> None:
    spec = ModelSpec.model_validate({"zoo": "mlp", "args": {"hidden": [8]}})
    zero = {"config": "TorchInferenceRPUConfig", "forward": {"out_noise": 0.0}}
    config = rpu(config="TorchInferenceRPUConfig", layers={"[3]": zero})
    model = train_one_batch(config, spec)
    noise = {
        n: m.analog_module.rpu_config.forward.out_noise
        for n, m in model.named_modules()
        if isinstance(m, AnalogLinear)
    }
    assert noise["3"] == 0.0 and noise["1"] != 0.0
    with pytest.raises(ExperimentError) as caught:
        build.build_model(spec, rpu(layers={"fc*": "InferenceRPUConfig"}), (1, 4, 4), classes=3)
    assert [w for w, _ in caught.value.problems] == ["rpu.layers.fc*"]


def test_a_pattern_that_matches_no_layer_is_refused() -> None:
    config = rpu(config="TorchInferenceRPUConfig", layers={"2": "TorchInferenceRPUConfig"})
    with pytest.raises(ExperimentError) as caught:
        build.build_model(MLP, config, (1, 4, 4), classes=3)
    [(where, message)] = caught.value.problems
    assert where == "rpu.layers.2" and "the analog layers are 1, 3" in message


def test_a_layer_configuration_is_checked() -> None:
    found = problems(layers={"1": {"forwad": {}}, "3": {"layers": {"1": "PCMPreset"}}})
    assert [w for w, _ in found] == ["rpu.layers.1.forwad", "rpu.layers.3.layers"]
