"""Routing jobs by what simulators declared: capability first, then load."""

from __future__ import annotations

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
