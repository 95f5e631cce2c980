"""Routing jobs by what simulators declared: capability first, then load."""

from __future__ import annotations

import pytest

from aif.aims.analog.capabilities import (
    SimulatorCapabilities,
    choose_simulator,
    declare,
    simulators,
)
from aif.aims.base import Peer

ALL = ["InferenceRPUConfig", "SingleRPUConfig", "TorchInferenceRPUConfig"]


def caps(devices: dict[str, list[str]], families: list[str] = ALL) -> SimulatorCapabilities:
    return SimulatorCapabilities.model_validate(declare(devices, families))


CPU = caps({"cpu": ["torch", "rpucuda"]})
GPU = caps({"cpu": ["torch", "rpucuda"], "cuda": ["torch", "rpucuda"]})
TORCH_ONLY = caps({"cpu": ["torch", "rpucuda"]}, ["TorchInferenceRPUConfig"])


def test_the_least_loaded_able_simulator_gets_the_job() -> None:
    pick = choose_simulator(
        {"a": CPU, "b": CPU},
        {"a": 2, "b": 1},
        family="SingleRPUConfig",
        kind="rpucuda",
        device="cpu",
    )
    assert pick == ("b", "cpu")


def test_a_family_only_one_simulator_runs_goes_there_whatever_the_load() -> None:
    pick = choose_simulator(
        {"torch": TORCH_ONLY, "full": CPU},
        {"full": 9},
        family="SingleRPUConfig",
        kind="rpucuda",
        device="auto",
    )
    assert pick == ("full", "cpu")


def test_auto_prefers_a_gpu_and_cuda_needs_one() -> None:
    both = {"cpu-box": CPU, "gpu-box": GPU}
    assert choose_simulator(
        both, {}, family="InferenceRPUConfig", kind="rpucuda", device="auto"
    ) == ("gpu-box", "cuda")
    assert choose_simulator(
        both, {}, family="InferenceRPUConfig", kind="rpucuda", device="cpu"
    ) == ("cpu-box", "cpu")
    refused = choose_simulator(
        {"cpu-box": CPU}, {}, family="InferenceRPUConfig", kind="rpucuda", device="cuda"
    )
    assert isinstance(refused, str) and "cpu-box" in refused  # names what is connected


def test_a_family_no_simulator_runs_is_refused_naming_the_simulators() -> None:
    refused = choose_simulator(
        {"torch": TORCH_ONLY}, {}, family="SingleRPUConfig", kind="rpucuda", device="auto"
    )
    assert isinstance(refused, str)
    assert "SingleRPUConfig" in refused and "TorchInferenceRPUConfig" in refused


def test_only_peers_declaring_a_valid_simulator_role_count() -> None:
    peers = [
        Peer("sim", "jobs", declare({"cpu": ["torch"]}, ALL)),
        Peer("sink", "in", {}),
        Peer("garbled", "jobs", {"role": "analog-simulator", "devices": "lots"}),
    ]
    assert list(simulators(peers)) == ["sim"]


# -- a GPU whose aihwkit was built without CUDA (no GPU needed: declared, or faked) ------

GPU_NO_BUILD = caps({"cpu": ["torch", "rpucuda"], "cuda": ["torch"]})


def test_torch_tiles_take_a_gpu_that_lacks_a_cuda_build_of_aihwkit() -> None:
    for device in ("cuda", "auto"):
        pick = choose_simulator(
            {"cpu-box": CPU, "gpu-box": GPU_NO_BUILD},
            {"gpu-box": 5},
            family="TorchInferenceRPUConfig",
            kind="torch",
            device=device,
        )
        assert pick == ("gpu-box", "cuda"), device


def test_rpucuda_tiles_on_such_a_gpu_run_on_its_cpu_or_are_refused_on_cuda() -> None:
    auto = choose_simulator(
        {"gpu-box": GPU_NO_BUILD}, {}, family="InferenceRPUConfig", kind="rpucuda", device="auto"
    )
    assert auto == ("gpu-box", "cpu")
    refused = choose_simulator(
        {"gpu-box": GPU_NO_BUILD},
        {},
        family="InferenceRPUConfig",
        kind="rpucuda",
        device="cuda",
        torch_families=["TorchInferenceRPUConfig", "QuantizedTorchInferenceRPUConfig"],
    )
    assert isinstance(refused, str)
    assert "gpu-box has a GPU but its aihwkit was built without CUDA" in refused
    assert "only torch-tile families (TorchInferenceRPUConfig) run on cuda there" in refused
    assert "use a torch-tile family on cuda" in refused


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, compiled: bool) -> None:
    import torch
    from aihwkit.simulator.rpu_base import cuda

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "is_compiled", lambda: compiled)


def test_a_simulator_offers_torch_tiles_on_a_gpu_its_aihwkit_cannot_drive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aif.aims.analog.simulator import available_devices

    _fake_gpu(monkeypatch, compiled=False)
    assert available_devices("auto") == {"cpu": ["torch", "rpucuda"], "cuda": ["torch"]}
    assert available_devices("cuda") == {"cuda": ["torch"]}
    _fake_gpu(monkeypatch, compiled=True)
    assert available_devices("auto")["cuda"] == ["torch", "rpucuda"]


def test_cuda_asked_of_a_simulator_without_a_gpu_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from aif.aims.analog.simulator import available_devices
    from aif.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert available_devices("auto") == {"cpu": ["torch", "rpucuda"]}
    with pytest.raises(ConfigError, match="torch sees no GPU"):
        available_devices("cuda")


def test_the_torch_tile_families_are_read_from_aihwkit() -> None:
    from aif.aims.analog.build import torch_families

    found = torch_families()
    assert {"TorchInferenceRPUConfig", "TorchInferenceRPUConfigIRDropT"} <= set(found)
    assert not {"InferenceRPUConfig", "SingleRPUConfig", "FloatingPointRPUConfig"} & set(found)
