"""Data-parallel training end to end: real rank processes, real gloo, real aihwkit tiles.

A workflow's simulator starts ``training.distributed.ranks`` processes; these tests
compare 2 ranks with 1, kill a rank mid-epoch, and suspend, resume and stop a job whose
ranks must all hear it. Every test ends by checking that no rank is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aif import Controller, RunState, WorkflowRun
from aif.communication.events import Event
from tests.integration.test_analog_workflows import experiment, jobs, wait_for, workflow

pytestmark = pytest.mark.integration

#: Noise-free forward passes, so 1 and 2 ranks differ only by how they sum gradients.
EXACT_PCM = {
    "config": "InferenceRPUConfig",
    "noise_model": "PCMLikeNoiseModel",
    "forward": {"is_perfect": True},
}
DIGITS = {"name": "digits", "batch_size": 32, "max_train": 600, "max_test": 300}


def rank_processes() -> dict[int, int]:
    """pid -> rank of every data-parallel rank descended from this test process."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"aif.aims.analog.ddp" not in cmdline or not _descends(int(entry.name)):
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(entry.name)] = int(item[5:])
    return found


def _descends(pid: int) -> bool:
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def progress_recorder() -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """(epochs, every progress event) of the simulator, and the subscriber filling them."""
    epochs: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []

    def on_event(event: Event) -> None:
        if event.topic == "progress" and event.source == "simulator":
            seen.append(dict(event.data))
            if "step" in event.data:
                epochs.append(dict(event.data))

    return epochs, seen, on_event


async def test_two_ranks_train_to_the_accuracy_of_one_with_the_same_global_batch(
    tmp_path: Path,
) -> None:
    one = experiment(
        "one",
        dataset=DIGITS,
        rpu=EXACT_PCM,
        training={"epochs": 4, "seed": 5, "optimizer": {"lr": 0.2}},
        inference={"drift_times": ["1d"], "repetitions": 1},
    )
    two = experiment(
        "two",
        dataset=DIGITS,
        rpu=EXACT_PCM,
        training={
            "epochs": 4,
            "seed": 5,
            "optimizer": {"lr": 0.2},
            "distributed": {"ranks": 2, "backend": "gloo"},
        },
        inference={"drift_times": ["1d"], "repetitions": 1},
        checkpoint="two-ranks",
    )
    async with Controller(tmp_path / "state") as controller:
        result = await controller.run_workflow(workflow([one, two], tmp_path / "r"), timeout=600)
    assert result.state is RunState.SUCCEEDED, result.error
    done = jobs(tmp_path / "r")
    for job in done.values():
        assert job["status"] == "completed", job["error"]
        assert job["epochs_done"] == 4
        assert len(job["drift_mean"]) == 1  # drift inference ran once, in the simulator
    assert done["one"]["accuracy"] > 0.5, "the baseline did not learn"
    gap = abs(done["one"]["accuracy"] - done["two"]["accuracy"])
    print(f"1 rank {done['one']['accuracy']:.4f}, 2 ranks {done['two']['accuracy']:.4f}")
    assert gap <= 0.02, f"1 rank {done['one']['accuracy']}, 2 ranks {done['two']['accuracy']}"
    assert done["two"]["checkpoint"] == "two-ranks"
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[1:]
    assert sum(1 for row in rows if row.startswith("two,")) == 4
    assert rank_processes() == {}


@contextlib.asynccontextmanager
async def training_on_two_ranks(
    tmp_path: Path, epochs: int = 1000, restarts: int = 0
) -> AsyncIterator[tuple[Controller, WorkflowRun, list[dict[str, Any]], list[dict[str, Any]]]]:
    """A 2-rank job, launched and past its first epoch: (controller, run, epochs, events)."""
    long = experiment(
        "long",
        dataset={**DIGITS, "batch_size": 8},
        rpu=EXACT_PCM,
        training={"epochs": epochs, "distributed": {"ranks": 2, "restarts": restarts}},
    )
    done, events, on_event = progress_recorder()
    async with Controller(tmp_path / "state") as controller:
        controller.subscribe(on_event)
        run = await controller.launch(workflow([long], tmp_path / "r"))
        await wait_for(lambda: len(done) >= 1, timeout=300)
        yield controller, run, done, events


async def test_a_rank_killed_mid_epoch_fails_the_job_naming_it(tmp_path: Path) -> None:
    async with training_on_two_ranks(tmp_path) as (controller, run, _, _):
        ranks = {rank: pid for pid, rank in rank_processes().items()}
        assert set(ranks) == {0, 1}
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.monotonic()
        result = await controller.wait_run(run, timeout=300)
        ended = time.monotonic() - killed
    assert result.state is RunState.SUCCEEDED, result.error  # the simulator went on
    job = jobs(tmp_path / "r")["long"]
    assert job["status"] == "failed"
    assert f"rank 1 of 2 (pid {ranks[1]}) killed by SIGKILL in epoch" in job["error"]
    assert job["epochs_done"] < 1000
    print(f"the run ended {ended:.2f} s after the kill: {job['error']}")
    assert ended < 10.0, f"the run ended {ended:.1f} s after the kill"
    assert rank_processes() == {}


async def test_a_job_with_restarts_starts_its_ranks_again_from_the_last_epoch(
    tmp_path: Path,
) -> None:
    async with training_on_two_ranks(tmp_path, epochs=6, restarts=1) as (controller, run, _, seen):
        ranks = {rank: pid for pid, rank in rank_processes().items()}
        os.kill(ranks[1], signal.SIGKILL)
        result = await controller.wait_run(run, timeout=600)
    assert result.state is RunState.SUCCEEDED, result.error
    job = jobs(tmp_path / "r")["long"]
    assert job["status"] == "completed", job["error"]
    assert job["epochs_done"] == 6
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[1]) for row in rows] == [1, 2, 3, 4, 5, 6], rows
    (restart,) = [event for event in seen if "ranks_restarted" in event]
    assert f"rank 1 of 2 (pid {ranks[1]}) killed by SIGKILL" in restart["cause"]
    assert 2 <= restart["from_epoch"] <= 6
    assert rank_processes() == {}


async def test_suspend_resume_and_stop_reach_every_rank(tmp_path: Path) -> None:
    async with training_on_two_ranks(tmp_path) as (controller, run, epochs, _):
        await run.suspend()
        await asyncio.sleep(2.0)  # the ranks pause at their next batch; an epoch may end
        paused_at = len(epochs)
        await asyncio.sleep(2.0)
        assert len(epochs) == paused_at, "epochs went on while suspended"
        assert set(rank_processes().values()) == {0, 1}, "a pause must not end a rank"
        await run.resume()
        await wait_for(lambda: len(epochs) > paused_at, timeout=300)
        await run.stop()
        result = await controller.wait_run(run, timeout=120)
    assert result.state is RunState.STOPPED, result.error
    job = jobs(tmp_path / "r")["long"]
    assert job["status"] == "stopped", job["error"]
    assert paused_at < job["epochs_done"] < 1000
    assert rank_processes() == {}


# -- ranks started by hand or by torchrun, with no simulator ---------------------------


def _experiment_file(folder: Path, ranks: int) -> Path:
    import yaml

    spec = experiment(
        "by-hand",
        dataset=DIGITS,
        rpu=EXACT_PCM,
        training={
            "epochs": 3,
            "seed": 5,
            "optimizer": {"lr": 0.2},
            "distributed": {"ranks": ranks},
        },
        inference={"drift_times": ["1d"], "repetitions": 1},
        checkpoint="hand",
    )
    path = folder / "experiment.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rank_command(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", *args]


def test_ranks_started_by_hand_find_each_other_from_torchs_environment(tmp_path: Path) -> None:
    import json
    import subprocess

    path = _experiment_file(tmp_path, 2)
    port = str(_free_port())
    ranks = [
        subprocess.Popen(
            _rank_command("aif.aims.analog.ddp", str(path), "--out", str(tmp_path / "out")),
            env={
                **os.environ,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "RANK": str(rank),
                "WORLD_SIZE": "2",
            },
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [process.communicate(timeout=600)[1] for process in ranks]
    assert [process.returncode for process in ranks] == [0, 0], logs
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["status"] == "completed" and result["epochs_done"] == 3
    assert result["accuracy"] > 0.3 and len(result["drift_mean"]) == 1
    assert (tmp_path / "out" / "checkpoints" / "hand.pt").is_file()
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert "epoch 3:" in logs[0] and "epoch 3:" not in logs[1], "rank 0 alone reports"


def test_torchrun_starts_the_same_experiment_and_a_wrong_world_size_is_refused(
    tmp_path: Path,
) -> None:
    import json
    import subprocess

    path = _experiment_file(tmp_path, 2)
    torchrun = _rank_command(
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "aif.aims.analog.ddp",
        str(path),
        "--out",
        str(tmp_path / "out"),
    )
    done = subprocess.run(torchrun, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["status"] == "completed"
    alone = subprocess.run(
        _rank_command("aif.aims.analog.ddp", str(path), "--out", str(tmp_path / "x")),
        env={**os.environ, "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert alone.returncode == 2
    assert "asks for 2 ranks but WORLD_SIZE is 1" in alone.stderr
    assert "training.distributed.ranks: set it to 1, or start 2 ranks" in alone.stderr
