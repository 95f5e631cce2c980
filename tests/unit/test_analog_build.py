"""Experiment specs turned into real aihwkit objects, and the no-training check of them all."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from aihwkit.inference import GlobalDriftCompensation, ReRamWan2022NoiseModel
from aihwkit.nn import AnalogConv2d, AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogAdam, AnalogSGD
from aihwkit.simulator.configs import (
    BoundManagementType,
    ConstantStepDevice,
    MixedPrecisionCompound,
    NoiseManagementType,
    SoftBoundsDevice,
    TransferCompound,
    WeightModifierType,
)

from aif.aims.analog import build
from aif.aims.analog.aihwkit_names import config_classes
from aif.aims.analog.spec import Experiment, ModelSpec, RPUSpec, TrainingSpec
from aif.errors import ExperimentError

MLP = [
    "Flatten",
    {"type": "Linear", "out_features": 16},
    "ReLU",
    {"type": "Linear", "out_features": 10},
]


def rpu(**fields: Any) -> Any:
    return build.build_rpu_config(RPUSpec.model_validate(fields))


def problems_of(**fields: Any) -> dict[str, str]:
    with pytest.raises(ExperimentError) as info:
        rpu(**fields)
    return dict(info.value.problems)


def experiment(**fields: Any) -> Experiment:
    fields.setdefault("model", {"convert": "all", "layers": MLP})
    return Experiment.model_validate({"name": "t", **fields})


# -- RPU configurations ---------------------------------------------------------------------


def test_overrides_are_converted_by_field_type() -> None:
    config = rpu(
        config="InferenceRPUConfig",
        forward={"out_noise": 0, "noise_management": "abs_max", "bound_management": "Iterative"},
        mapping={"max_input_size": 256.0, "digital_bias": False},
        modifier={"type": "ADD_NORMAL", "std_dev": 0.05},
        noise_model={"name": "ReRamWan2022NoiseModel", "params": {"g_max": 40}},
        drift_compensation="none",
    )
    assert config.forward.out_noise == 0.0 and isinstance(config.forward.out_noise, float)
    assert config.forward.noise_management is NoiseManagementType.ABS_MAX
    assert config.forward.bound_management is BoundManagementType.ITERATIVE
    assert config.mapping.max_input_size == 256 and isinstance(config.mapping.max_input_size, int)
    assert config.modifier.type is WeightModifierType.ADD_NORMAL
    assert isinstance(config.noise_model, ReRamWan2022NoiseModel) and config.noise_model.g_max == 40
    assert config.drift_compensation is None
    assert isinstance(
        rpu(drift_compensation="GlobalDriftCompensation").drift_compensation,
        GlobalDriftCompensation,
    )


def test_unknown_names_list_the_valid_ones_with_a_close_match() -> None:
    found = problems_of(config="InferenceRPUConfg")
    message = found["rpu.config"]
    assert "(did you mean 'InferenceRPUConfig'?)" in message
    assert "families: DigitalRankUpdateRPUConfig, FloatingPointRPUConfig," in message
    assert "presets: AGADCapacitorPreset," in message and "ReRamSBPreset" in message
    found = problems_of(
        config="SingleRPUConfig",
        device="ConstStepDevice",
        forward={"out_nois": 0.1},
    )
    assert "did you mean 'ConstantStepDevice'" in found["rpu.device"]
    assert "did you mean 'out_noise'" in found["rpu.forward.out_nois"]
    assert "inp_res" in found["rpu.forward.out_nois"]  # the valid fields are listed
    found = problems_of(noise_model="PCMLikeNoiseModl", drift_compensation="Global")
    assert "did you mean 'PCMLikeNoiseModel'" in found["rpu.noise_model"]
    assert "GlobalDriftCompensation" in found["rpu.drift_compensation"]


def test_every_fault_is_collected_with_the_expected_type() -> None:
    found = problems_of(
        config="InferenceRPUConfig",
        forward={"out_noise": "low", "is_perfect": 1, "noise_management": "loud"},
        mapping={"max_input_size": 12.5, "max_output_size": -5},
        backward={"out_noise": 0.1},
        device="ConstantStepDevice",
        noise_model={"name": "PCMLikeNoiseModel", "params": {"g_max": "high", "prog": 1}},
    )
    assert "expected a number, got 'low'" in found["rpu.forward.out_noise"]
    assert "expected true or false" in found["rpu.forward.is_perfect"]
    assert "ABS_MAX" in found["rpu.forward.noise_management"]
    assert "expected an integer" in found["rpu.mapping.max_input_size"]
    assert "must be 0 (no limit) or more, got -5" in found["rpu.mapping.max_output_size"]
    assert "InferenceRPUConfig has no settable 'backward'" in found["rpu.backward"]
    assert "SingleRPUConfig" in found["rpu.backward"]
    assert "InferenceRPUConfig has no settable 'device'" in found["rpu.device"]
    assert "expected" in found["rpu.noise_model.params.g_max"]
    assert "did you mean 'prog_coeff'" in found["rpu.noise_model.params.prog"]


def test_numbers_yaml_reads_as_text_are_numbers_for_float_fields() -> None:
    config = rpu(config="InferenceRPUConfig", forward={"out_noise": "1e-3", "w_noise": "2E-2"})
    assert config.forward.out_noise == 1e-3 and config.forward.w_noise == 0.02
    found = problems_of(config="InferenceRPUConfig", mapping={"max_input_size": "1e3"})
    assert "write the number with a dot" in found["rpu.mapping.max_input_size"]


def test_torch_families_are_the_ones_with_torch_tiles() -> None:
    families = build.torch_families()
    assert "TorchInferenceRPUConfig" in families and "InferenceRPUConfig" not in families
    assert all(build.tile_kind(rpu(config=name)) == "torch" for name in families)


def test_short_forms_of_a_configuration_and_of_no_noise_model() -> None:
    short = experiment(rpu="ReRamSBPreset", sweep=None)
    assert short.rpu is not None and short.rpu.config == "ReRamSBPreset"
    swept = experiment(sweep={"a": "InferenceRPUConfig", "b": {"config": "PCMPreset"}})
    assert swept.sweep is not None and swept.sweep["a"].config == "InferenceRPUConfig"
    assert RPUSpec.model_validate({"noise_model": "none"}).noise_model is None
    assert build.family_of(rpu(noise_model="None")) == "InferenceRPUConfig"


def test_sections_a_family_lacks_name_the_families_that_have_them() -> None:
    found = problems_of(
        config="ReRamSBPreset",
        modifier={"std_dev": 0.1},
        noise_model="PCMLikeNoiseModel",
        drift_compensation="GlobalDriftCompensation",
    )
    assert found["rpu.modifier"].startswith("SingleRPUConfig has no 'modifier'")
    assert "InferenceRPUConfig" in found["rpu.modifier"]
    assert "TorchInferenceRPUConfig" in found["rpu.noise_model"]
    assert "rpu.drift_compensation" in found
    fp = problems_of(config="FloatingPointRPUConfig", forward={"out_noise": 0.0})
    assert "FloatingPointRPUConfig has no 'forward'" in fp["rpu.forward"]


def test_devices_compounds_and_nested_parameters() -> None:
    single = rpu(
        config="SingleRPUConfig",
        device="ConstantStepDevice",
        device_params={"dw_min": 0.01, "drift": {"nu": 0.05}},
        update={"pulse_type": "STOCHASTIC"},
    )
    assert isinstance(single.device, ConstantStepDevice) and single.device.dw_min == 0.01
    assert single.device.drift.nu == 0.05
    tiki = rpu(
        config="UnitCellRPUConfig",
        device="TransferCompound",
        device_params={
            "unit_cell_devices": ["SoftBoundsDevice", "SoftBoundsDevice"],
            "transfer_every": 2,
            "transfer_forward": {"out_noise": 0.0},
        },
    )
    assert isinstance(tiki.device, TransferCompound) and tiki.device.transfer_every == 2.0
    assert [type(d) for d in tiki.device.unit_cell_devices] == [SoftBoundsDevice] * 2
    mixed = rpu(
        config="DigitalRankUpdateRPUConfig",
        device="MixedPrecisionCompound",
        device_params={"device": "SoftBoundsDevice", "n_x_bins": 5},
    )
    assert isinstance(mixed.device, MixedPrecisionCompound)
    assert isinstance(mixed.device.device, SoftBoundsDevice)


def test_device_mismatches_and_empty_unit_cells_are_problems() -> None:
    found = problems_of(config="UnitCellRPUConfig", device="SoftBoundsDevice")
    assert "SoftBoundsDevice does not fit UnitCellRPUConfig" in found["rpu.device"]
    assert "TransferCompound" in found["rpu.device"]
    bare = problems_of(config="UnitCellRPUConfig")
    assert "has no usable default device" in bare["rpu.device"] and "Preset" in bare["rpu.device"]
    empty = problems_of(config="UnitCellRPUConfig", device="VectorUnitCell")
    assert "a list of device names" in empty["rpu.device_params.unit_cell_devices"]
    bad = problems_of(
        config="UnitCellRPUConfig",
        device="TransferCompound",
        device_params={"unit_cell_devices": ["SoftBoundDevice"]},
    )
    assert "did you mean 'SoftBoundsDevice'" in bad["rpu.device_params.unit_cell_devices"]


@pytest.mark.parametrize(
    ("config", "family", "kind", "inference", "pulsed"),
    [
        ("InferenceRPUConfig", "InferenceRPUConfig", "rpucuda", True, False),
        ("TorchInferenceRPUConfig", "TorchInferenceRPUConfig", "torch", True, False),
        (
            "QuantizedTorchInferenceRPUConfig",
            "QuantizedTorchInferenceRPUConfig",
            "torch",
            True,
            False,
        ),
        ("FloatingPointRPUConfig", "FloatingPointRPUConfig", "rpucuda", False, False),
        ("FloatingPointPreset", "TorchInferenceRPUConfig", "torch", True, False),
        ("StandardHWATrainingPreset", "InferenceRPUConfig", "rpucuda", True, False),
        ("SingleRPUConfig", "SingleRPUConfig", "rpucuda", False, True),
        ("ReRamSBPreset", "SingleRPUConfig", "rpucuda", False, True),
        ("TikiTakaReRamSBPreset", "UnitCellRPUConfig", "rpucuda", False, True),
        ("MixedPrecisionPCMPreset", "DigitalRankUpdateRPUConfig", "rpucuda", False, True),
    ],
)
def test_family_tile_kind_and_training_style(
    config: str, family: str, kind: str, inference: bool, pulsed: bool
) -> None:
    built = rpu(config=config)
    assert build.family_of(built) == family
    assert build.tile_kind(built) == kind
    assert build.is_inference_family(built) is inference
    assert build.pulsed_training(built) is pulsed


def test_pulsed_training_follows_device_and_pulse_type() -> None:
    assert not build.pulsed_training(rpu(config="SingleRPUConfig", update={"pulse_type": "NONE"}))
    assert not build.pulsed_training(rpu(config="SingleRPUConfig", device="IdealDevice"))


def test_every_exported_config_and_preset_resolves() -> None:
    families = build.config_families()
    assert {"InferenceRPUConfig", "SingleRPUConfig", "TorchInferenceRPUConfig"} <= set(families)
    assert all(not name.endswith("Preset") for name in families)
    for name in config_classes():
        if name not in ("UnitCellRPUConfig", "DigitalRankUpdateRPUConfig"):  # abstract cells
            assert build.family_of(rpu(config=name)) in families


# -- models -----------------------------------------------------------------------------


def test_mlp_sizes_are_inferred_and_digital_layers_stay_digital() -> None:
    spec = ModelSpec.model_validate(
        {
            "convert": "all",
            "layers": [
                "Flatten",
                {"type": "Linear", "out_features": 12, "in_features": 64},
                "BatchNorm1d",
                "Tanh",
                {"type": "Dropout", "p": 0.1},
                {"type": "Linear", "out_features": 10, "analog": False},
                "LogSoftmax",
            ],
        }
    )
    model = build.build_model(spec, rpu(), (1, 8, 8))
    assert isinstance(model, AnalogSequential)
    layers = list(model.children())
    assert isinstance(layers[1], AnalogLinear) and layers[1].in_features == 64
    assert type(layers[5]) is torch.nn.Linear and layers[5].in_features == 12
    assert layers[2].num_features == 12
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_cnn_shapes_flow_through_conv_pool_and_norm() -> None:
    spec = ModelSpec.model_validate(
        {
            "convert": "none",
            "layers": [
                {
                    "type": "Conv2d",
                    "out_channels": 4,
                    "kernel_size": 3,
                    "padding": 1,
                    "analog": True,
                },
                "BatchNorm2d",
                "ReLU",
                {"type": "MaxPool2d", "kernel_size": 2},
                {"type": "Conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2},
                {"type": "AvgPool2d", "kernel_size": 1},
                "Flatten",
                {"type": "Linear", "out_features": 3, "analog": True},
            ],
        }
    )
    model = build.build_model(spec, rpu(config="TorchInferenceRPUConfig"), (1, 9, 9))
    layers = list(model.children())
    assert isinstance(layers[0], AnalogConv2d) and type(layers[4]) is torch.nn.Conv2d
    assert layers[7].in_features == 6 * 1 * 1  # 9 -> pool 4 -> conv stride 2 -> 1
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 9, 9)).shape == (2, 3)


def test_shape_faults_say_the_actual_shape_and_the_fix() -> None:
    spec = ModelSpec.model_validate(
        {
            "convert": "all",
            "layers": [
                {"type": "Linear", "out_features": 4},
                {"type": "BatchNorm2d"},
                {"type": "Linear", "out_features": 4, "in_features": 7},
                {"type": "Conv2d", "out_channels": 2, "kernel_size": 2},
                {"type": "MaxPool2d", "kernel_size": 3, "padding": 2},
            ],
        }
    )
    with pytest.raises(ExperimentError) as info:
        build.build_model(spec, rpu(), (1, 8, 8))
    found = dict(info.value.problems)
    assert found["model.layers.0"] == (
        "Linear gets a 1x8x8 (channels x height x width) image; add Flatten before it"
    )
    assert "BatchNorm2d gets 4 features; use BatchNorm1d after Flatten" in found["model.layers.1"]
    assert "is 7 but the layer before gives 4" in found["model.layers.2.in_features"]
    assert "Conv2d needs an image but gets 4 features" in found["model.layers.3"]
    assert "at most half of kernel_size 3" in found["model.layers.4.padding"]
    small = ModelSpec.model_validate(
        {"convert": "all", "layers": [{"type": "Conv2d", "out_channels": 2, "kernel_size": 5}]}
    )
    with pytest.raises(ExperimentError, match="kernel_size: is 5 but its input is a 1x4x4"):
        build.build_model(small, rpu(), (1, 4, 4))


def test_tiles_aihwkit_refuses_are_reported_at_the_rpu_path() -> None:
    config = rpu(config="TorchInferenceRPUConfig", mapping={"digital_bias": False})
    with pytest.raises(ExperimentError) as info:
        build.build_model(
            ModelSpec.model_validate({"convert": "all", "layers": MLP}),
            config,
            (1, 8, 8),
            rpu_path="sweep.torch",
        )
    ((path, message),) = info.value.problems
    assert path == "sweep.torch"
    assert "model.layers.1, model.layers.3 as TorchInferenceRPUConfig" in message
    assert "AnalogBiasConfigError" in message


# -- training parts ---------------------------------------------------------------------------


def _model() -> Any:
    return build.build_model(
        ModelSpec.model_validate({"convert": "all", "layers": MLP}), rpu(), (1, 8, 8)
    )


def test_optimizers_take_checked_torch_parameters() -> None:
    sgd = build.build_optimizer(
        TrainingSpec.model_validate({"optimizer": {"lr": 0.05, "params": {"momentum": 0.9}}}),
        _model(),
    )
    assert isinstance(sgd, AnalogSGD) and sgd.param_groups[0]["momentum"] == 0.9
    assert sgd.param_groups[0]["lr"] == 0.05
    adam = build.build_optimizer(
        TrainingSpec.model_validate(
            {"optimizer": {"name": "AnalogAdam", "params": {"betas": [0.8, 0.9], "eps": 1}}}
        ),
        _model(),
    )
    assert isinstance(adam, AnalogAdam) and adam.param_groups[0]["betas"] == (0.8, 0.9)
    bad = TrainingSpec.model_validate(
        {"optimizer": {"name": "AnalogAdam", "params": {"momentum": 0.9, "lr": 1, "eps": "x"}}}
    )
    with pytest.raises(ExperimentError) as info:
        build.build_optimizer(bad, _model())
    found = dict(info.value.problems)
    assert "set training.optimizer.lr instead" in found["training.optimizer.params.lr"]
    assert "unknown parameter 'momentum'" in found["training.optimizer.params.momentum"]
    assert "expected a number" in found["training.optimizer.params.eps"]
    negative = TrainingSpec.model_validate({"optimizer": {"params": {"momentum": -1}}})
    with pytest.raises(ExperimentError, match="Invalid momentum value"):
        build.build_optimizer(negative, _model())


def test_any_torch_optimizer_is_wrapped_in_analog_optimizer_and_trains() -> None:
    from aihwkit.optim import AnalogOptimizer

    model = _model()
    spec = TrainingSpec.model_validate(
        {"optimizer": {"name": "AdamW", "lr": 0.01, "params": {"weight_decay": 0.05}}}
    )
    adamw = build.build_optimizer(spec, model)
    assert isinstance(adamw, AnalogOptimizer) and isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["weight_decay"] == 0.05
    before = [t.get_weights()[0].clone() for t in model.analog_tiles()]
    model(torch.ones(2, 1, 8, 8)).sum().backward()
    adamw.step()
    after = [t.get_weights()[0] for t in model.analog_tiles()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_unknown_and_unusable_optimizers_are_refused_with_the_valid_names() -> None:
    from aif.aims.analog.optimizers import optimizer_problems

    typo = optimizer_problems(TrainingSpec.model_validate({"optimizer": {"name": "AdamV"}}))
    assert typo[0][0] == "training.optimizer.name"
    assert "did you mean 'Adam'" in typo[0][1] and "RMSprop" in typo[0][1]
    lbfgs = optimizer_problems(TrainingSpec.model_validate({"optimizer": {"name": "LBFGS"}}))
    assert "needs a closure" in lbfgs[0][1]
    rms = optimizer_problems(
        TrainingSpec.model_validate(
            {"optimizer": {"name": "RMSprop", "params": {"alpha": -1, "betas": [0.9, 0.9]}}}
        )
    )
    found = dict(rms)
    assert "at least 0" in found["training.optimizer.params.alpha"]
    assert "unknown parameter 'betas'" in found["training.optimizer.params.betas"]


def test_schedules_and_losses() -> None:
    optimizer = build.build_optimizer(TrainingSpec(), _model())
    assert build.build_scheduler(TrainingSpec(), optimizer) is None
    for name, cls in [
        ("step", torch.optim.lr_scheduler.StepLR),
        ("exponential", torch.optim.lr_scheduler.ExponentialLR),
        ("cosine", torch.optim.lr_scheduler.CosineAnnealingLR),
    ]:
        spec = TrainingSpec.model_validate({"epochs": 4, "schedule": {"name": name}})
        assert isinstance(build.build_scheduler(spec, optimizer), cls)
    logits, target = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    assert build.loss_function(TrainingSpec()) is torch.nn.functional.cross_entropy
    assert build.loss_function(TrainingSpec(loss="nll"))(logits.log_softmax(1), target) > 0


# -- the check ----------------------------------------------------------------------------


def test_a_valid_experiment_has_no_problems_and_is_checked_fast() -> None:
    valid = experiment(
        sweep={
            "pcm": {"noise_model": "PCMLikeNoiseModel", "forward": {"out_noise": 0.02}},
            "torch": {"config": "TorchInferenceRPUConfig"},
            "cmo": {"noise_model": "ReRamCMONoiseModel"},  # its drift warns under NumPy 2
        },
        inference={"drift_times": ["1s", "1d"]},
    )
    assert build.check_experiment(valid, Path(".")) == []
    start = time.perf_counter()
    assert build.check_experiment(valid, Path(".")) == []
    assert time.perf_counter() - start < 1.0


def test_the_check_never_steps_an_optimizer(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("check_experiment must not train")

    monkeypatch.setattr(AnalogSGD, "step", refuse)
    monkeypatch.setattr(AnalogSGD, "zero_grad", refuse)
    assert build.check_experiment(experiment(rpu={"config": "ReRamSBPreset"}), Path(".")) == []


def test_every_configuration_of_a_sweep_is_checked() -> None:
    bad = experiment(
        model={
            "convert": "all",
            "layers": ["Flatten", {"type": "Linear", "out_features": 7}, "BatchNorm1d"],
        },
        dataset={"name": "synthetic", "samples": 41, "classes": 3, "batch_size": 29},
        training={"loss": "nll"},
        sweep={
            "ok": {"config": "InferenceRPUConfig"},
            "typo": {"config": "InferenceRPUConfig", "forward": {"out_nois": 0.1}},
            "single": {"config": "SingleRPUConfig"},
            "torch": {"config": "TorchInferenceRPUConfig", "forward": {"w_noise": 0.1}},
            "wan": {"noise_model": "ReRamWan2022NoiseModel"},
        },
        inference={"drift_times": ["1s", "1h", "1d"]},
    )
    found = build.check_experiment(bad, Path("."))
    paths = [path for path, _ in found]
    assert "sweep.typo.forward.out_nois" in paths
    assert "sweep.torch" in paths  # torch tiles refuse forward.w_noise when built
    # in a sweep, a configuration without a noise model just skips drift inference
    assert not [m for p, m in found if p == "inference"]
    assert any("1h fails with sweep.wan" in m for p, m in found if p == "inference.drift_times.1")
    assert "training.loss" in paths and "dataset.batch_size" in paths
    width = [m for p, m in found if p == "model.layers.2"]
    assert width == [
        "the model ends with 7 features but the dataset has 3 classes; "
        "end with a Linear of out_features: 3"
    ]  # once, not once per configuration


def test_model_faults_are_reported_when_no_configuration_builds() -> None:
    bad = experiment(
        model={"convert": "all", "layers": [{"type": "Linear", "out_features": 10}]},
        rpu={"config": "SingleRPUConfig", "forward": {"out_nois": 0.1}},
    )
    found = dict(build.check_experiment(bad, Path(".")))
    assert set(found) == {"rpu.forward.out_nois", "model.layers.0"}


def test_an_unreadable_dataset_still_checks_the_model(tmp_path: Path) -> None:
    bad = experiment(
        dataset={"name": "idx", "path": "missing"},
        model={"convert": "all", "layers": [{"type": "Linear", "out_features": 10}]},
    )
    found = dict(build.check_experiment(bad, tmp_path))
    assert "is not a folder" in found["dataset.path"]
    assert "Linear gets a 1x28x28" in found["model.layers.0"]
