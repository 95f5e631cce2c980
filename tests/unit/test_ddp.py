"""Data-parallel parts that need no second process: where a rank is, how a batch is
shared, what the validator refuses, and the messages ranks and simulator exchange."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import torch

from aif.aims.analog.ddp.link import RankPlace, encode, field, read, torch_environment
from aif.aims.analog.ddp.supervisor import threads_per_rank
from aif.aims.analog.training import EpochRunner
from aif.aims.analog.validator import review_experiment
from aif.errors import ConfigError, MalformedMessage

MLP = {"convert": "all", "layers": ["Flatten", {"type": "Linear", "out_features": 10}]}


# -- where a rank is ---------------------------------------------------------------------


def test_a_rank_reads_torchs_variables_first_and_slurms_otherwise() -> None:
    torch_env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert RankPlace.from_environ(torch_env) == RankPlace(3, 8, 1, 4)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "2"}
    place = RankPlace.from_environ(slurm)
    assert (place.rank, place.world, place.local_rank) == (5, 6, 2)
    assert place.local_world >= 3  # srun did not say how many tasks share the node
    assert RankPlace.from_environ({**slurm, "RANK": "0"}).rank == 0


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({}, "WORLD_SIZE is not set"),
        ({"WORLD_SIZE": "2"}, "RANK is not set"),
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not a whole number"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "rank 2 of 2"),
    ],
)
def test_a_rank_refuses_an_environment_that_does_not_place_it(
    environ: dict[str, str], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        RankPlace.from_environ(environ)


def test_the_simulators_ranks_join_its_store_as_clients() -> None:
    env = torch_environment(RankPlace(1, 2, 1, 2), "127.0.0.1", 29500)
    assert env["MASTER_PORT"] == "29500" and env["RANK"] == "1"
    assert env["TORCHELASTIC_USE_AGENT_STORE"] == "True"
    assert RankPlace.from_environ(env) == RankPlace(1, 2, 1, 2)


def test_threads_are_shared_out_unless_asked_for() -> None:
    assert threads_per_rank(4, 3) == 3
    assert threads_per_rank(10_000, None) == 1


# -- sharing a batch ----------------------------------------------------------------------


class _Recorder(torch.nn.Module):
    """A model that remembers the labels of every batch it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(4, 2))
        self.seen: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append([int(v) for v in x[:, 0]])
        out: torch.Tensor = x @ self.weight
        return out


def _batches(shard: tuple[int, int], samples: int = 37, batch: int = 8) -> list[list[int]]:
    model = _Recorder()
    x = np.zeros((samples, 4), np.float32)
    x[:, 0] = np.arange(samples)
    runner = EpochRunner(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        torch.nn.functional.cross_entropy,
        x,
        np.arange(samples) % 2,
        batch,
        seed=7,
        epoch=3,
        device=torch.device("cpu"),
        shard=shard,
    )
    while not runner.step(1e9):
        pass
    return model.seen


@pytest.mark.parametrize("ranks", [2, 3])
def test_the_ranks_share_every_global_batch_of_one_rank(ranks: int) -> None:
    whole = _batches((0, 1))
    parts = [_batches((rank, ranks)) for rank in range(ranks)]
    assert all(len(p) == len(whole) for p in parts), "every rank runs every batch"
    for index, batch in enumerate(whole):
        shared = sorted(sample for part in parts for sample in part[index])
        assert shared == sorted(batch)
        assert all(part[index] for part in parts), "no rank has an empty share"


# -- what the validator refuses ----------------------------------------------------------


def _experiment(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "ddp",
        "dataset": {"name": "digits", "batch_size": 16},
        "model": MLP,
        "rpu": {"config": "InferenceRPUConfig", "noise_model": "PCMLikeNoiseModel"},
        "training": {"epochs": 1, "distributed": {"ranks": 2}},
    }
    base.update(fields)
    return base


def test_distributed_inference_training_is_accepted(tmp_path: Path) -> None:
    review = review_experiment(_experiment(), tmp_path)
    assert review.accepted, review.problems
    torch_tiles = _experiment(rpu="TorchInferenceRPUConfig")
    assert review_experiment(torch_tiles, tmp_path).accepted


def test_distributed_training_on_pulsed_devices_is_refused_naming_the_families(
    tmp_path: Path,
) -> None:
    raw = _experiment(rpu={"config": "SingleRPUConfig", "device": "ConstantStepDevice"})
    problems = dict(review_experiment(raw, tmp_path).problems)
    assert "InferenceRPUConfig" in problems["training.distributed"]
    assert "SingleRPUConfig" in problems["training.distributed"]


def test_a_batch_too_small_to_share_and_nccl_on_the_cpu_are_refused(tmp_path: Path) -> None:
    raw = _experiment(
        dataset={"name": "digits", "batch_size": 2},
        training={"epochs": 1, "distributed": {"ranks": 4, "backend": "nccl"}},
        device="cpu",
    )
    problems = dict(review_experiment(raw, tmp_path).problems)
    assert "at least 4" in problems["dataset.batch_size"]
    assert "device: cuda" in problems["training.distributed.backend"]


@pytest.mark.parametrize(
    ("distributed", "words"),
    [
        ({"ranks": 0}, "greater than or equal to 1"),
        ({"ranks": 2, "backend": "mpi"}, "'gloo' or 'nccl'"),
        ({"ranks": 2, "restarts": -1}, "greater than or equal to 0"),
        ({"ranks": 2, "nodes": 2}, "unknown field 'nodes' (valid: ranks, backend, restarts)"),
    ],
)
def test_a_malformed_distributed_section_names_the_field(
    tmp_path: Path, distributed: dict[str, Any], words: str
) -> None:
    raw = _experiment(training={"epochs": 1, "distributed": distributed})
    problems = review_experiment(raw, tmp_path).problems
    assert any(path.startswith("training.distributed") and words in m for path, m in problems), (
        problems
    )


# -- the messages ---------------------------------------------------------------------------


def test_messages_are_msgpack_maps_with_a_kind_and_checked_fields() -> None:
    message = read(encode("epoch", epoch=2, loss=0.5), "rank 0")
    assert field(message, "epoch", int) == 2
    with pytest.raises(MalformedMessage, match="'loss' is float, expected int"):
        field(message, "loss", int)
    with pytest.raises(MalformedMessage, match="'epoch' is bool"):
        field({"kind": "epoch", "epoch": True}, "epoch", int)
    with pytest.raises(MalformedMessage, match="without a 'kind'"):
        read(msgpack.packb({"epoch": 1}), "rank 0")
    with pytest.raises(MalformedMessage, match=r"not msgpack|not a map"):
        read(b"\xc1garbage", "rank 0")
