"""The daemon on a real local Ray cluster: a head and a second node on loopback.

The head has 2 CPUs and the custom resource ``imc``; the second node 2 CPUs and no
``imc``. A daemon started with ``--ray`` takes its instances from them, runs each job's
heavy AIM as a Ray actor, and records the node each ran on. The cluster is started
once for the module (``ray start``, as a user would) and its processes are killed at
the end, whatever happened; the test that kills the second node comes last.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aif.daemon.client import Client
from aif.daemon.records import JobRecord, JobState
from tests.helpers.cli import aif
from tests.helpers.daemon import ROOT, DaemonProcess, gone, wait_for
from tests.helpers.ray_cluster import RAY_ENV, LocalRayCluster

pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'aif[ray]')")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MLP: dict[str, Any] = {
    "dataset": {"name": "digits", "batch_size": 32, "max_train": 128, "max_test": 64},
    "model": {
        "convert": "all",
        "layers": ["Flatten", {"type": "Linear", "out_features": 10}],
    },
    "training": {"epochs": 1, "seed": 1},
}


def ticker(folder: Path, name: str, limit: int, **aim: Any) -> Path:
    """A job whose one AIM ticks ``limit`` times, 50 ms apart (``aim``: more settings)."""
    decl = {
        "type": "tests.helpers.aims:Ticker",
        "placement": "process",
        "params": {"interval": 0.05, "limit": limit},
        **aim,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "aims": {"tick": decl}, "outputs": ["tick.out"]}))
    return path


def analog(folder: Path, name: str, simulator: dict[str, Any]) -> Path:
    """A one-experiment analog job: validator, simulator (``simulator``), reporter."""
    aims = {
        "experiments": {
            "type": "experiment-source",
            "params": {"experiments": [{"name": name, **MLP}]},
        },
        "validator": {"type": "analog-validator"},
        "simulator": {"type": "analog-simulator", **simulator},
        "reporter": {"type": "analog-reporter", "params": {"folder": str(folder / name)}},
    }
    connections = [
        "experiments.experiments -> validator.experiments",
        "validator.jobs -> simulator.jobs",
        "validator.rejections -> reporter.rejections",
        "simulator.metrics -> reporter.metrics",
        "simulator.results -> reporter.results",
    ]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "aims": aims, "connections": connections}))
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    started = LocalRayCluster(head_cpus=2, second_cpus=2, head_resources={"imc": 1})
    try:
        yield started.start()
    finally:
        started.stop()
        assert started.leftovers() == [], "processes of the Ray cluster outlived it"


@pytest.fixture
def daemon(tmp_path: Path, cluster: LocalRayCluster) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(tmp_path / "state", "--ray", cluster.address, env=dict(RAY_ENV))
    proc.start(timeout=90)
    try:
        yield proc
    finally:
        proc.stop(timeout=60)


def nodes_by_resource(client: Client) -> dict[str, set[str]]:
    """Node ids of the cluster by resource name, as the daemon's Ray instances list them."""
    instance = next(i for i in client.aims().instances if i.name == "ray-cpu")
    found: dict[str, set[str]] = {}
    for node in instance.capabilities["nodes"]:
        for resource in node["resources"]:
            found.setdefault(resource, set()).add(node["node_id"])
    return found


def cluster_port(daemon: DaemonProcess) -> str:
    """The port of the cluster the daemon was started on (``--ray HOST:PORT``)."""
    return daemon.args[daemon.args.index("--ray") + 1].rpartition(":")[2]


def state_of(client: Client, job: str) -> JobState:
    return client.status(job).job.state


def node_of(record: JobRecord, aim: str) -> str:
    assert record.result is not None, record
    node: str = record.result["nodes"][aim]["node_id"]
    return node


def test_a_sweep_spreads_over_both_nodes_and_imc_lands_where_the_board_is(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    with daemon.client(timeout=30) as client:
        assert (client.ping().ray or "").endswith(f":{cluster_port(daemon)}")
        instances = {i.name: i for i in client.aims().instances}
        assert instances["ray-cpu"].load.endswith("/4")  # 2 + 2 CPUs
        assert instances["ray-imc"].load.endswith("/1")  # the head's board
        by_resource = nodes_by_resource(client)
        assert len(by_resource["CPU"]) == 2
        (imc_node,) = by_resource["imc"]
        sweep = [
            client.submit(analog(tmp_path, f"sweep-{i}", {"placement": "process"})).id
            for i in range(8)
        ]
        board = client.submit(
            analog(tmp_path, "on-board", {"placement": "ray", "resources": {"custom": {"imc": 1}}})
        ).id
        records = [client.wait(job, timeout=240) for job in [*sweep, board]]
    for record in records:
        assert record.state is JobState.SUCCEEDED, record
    used = {node_of(r, "simulator") for r in records[:8]}
    assert used == by_resource["CPU"], "the sweep did not use both nodes"
    assert node_of(records[8], "simulator") == imc_node
    trained = records[8].result
    assert trained is not None and trained["results"]["reporter"], trained
    shown = aif("status", board, "--state-dir", str(daemon.state_dir), timeout=60)
    assert "ran on     simulator: Ray node " in shown.stdout, shown.stdout + shown.stderr
    assert imc_node in shown.stdout


def test_aif_run_places_a_ray_aim_and_says_on_which_node(
    cluster: LocalRayCluster, tmp_path: Path
) -> None:
    workflow = ticker(tmp_path, "one-run", limit=5, placement="ray", resources={"num_cpus": 1})
    out = tmp_path / "result.json"
    done = aif(
        "run",
        str(workflow),
        "-q",
        "--state-dir",
        str(tmp_path / "state"),
        "--listen",
        "tcp://127.0.0.1:*",
        "--json",
        str(out),
        env={**RAY_ENV, "RAY_ADDRESS": cluster.address, "PYTHONPATH": str(ROOT)},
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["results"]["tick"] == {"ticks": 5}
    node = result["nodes"]["tick"]
    assert len(node["node_id"]) == 56 and node["ip"], node


def test_resources_no_node_has_fail_the_job_at_once_naming_the_nodes(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    path = ticker(
        tmp_path, "wants-fpga", limit=5, placement="ray", resources={"custom": {"fpga": 1}}
    )
    with daemon.client(timeout=30) as client:
        record = client.wait(client.submit(path).id, timeout=120)
    assert record.state is JobState.FAILED
    assert "no live node of the Ray cluster has {CPU: 1, fpga: 1}" in record.detail, record.detail
    assert record.detail.count("(node ") == 2, record.detail  # what each of the two nodes has


def test_a_job_waiting_for_a_busy_board_is_cancelled_at_once(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    board = {"placement": "ray", "resources": {"custom": {"imc": 1}}}
    with daemon.client(timeout=30) as client:
        first = client.submit(ticker(tmp_path, "board-1", limit=400, **board)).id
        wait_for(lambda: state_of(client, first) is JobState.RUNNING, 120, "the first on the board")
        second = client.submit(ticker(tmp_path, "board-2", limit=5, **board)).id
        wait_for(lambda: state_of(client, second) is JobState.STARTING, 60, "the second starting")
        time.sleep(2.0)  # Ray holds the second's actor back: the one board is busy
        assert state_of(client, second) is JobState.STARTING
        client.cancel(second)
        record = client.wait(second, timeout=30)
        assert record.state is JobState.CANCELLED, record
        assert state_of(client, first) is JobState.RUNNING
        client.cancel(first)
        assert client.wait(first, timeout=60).state is JobState.CANCELLED


def test_a_lost_node_fails_its_run_naming_it_and_the_job_retries_on_the_other(
    daemon: DaemonProcess, cluster: LocalRayCluster, tmp_path: Path
) -> None:
    retry = {"restart": "on-failure", "max_restarts": 2, "restart_backoff": 0.5}
    with daemon.client(timeout=30) as client:
        by_resource = nodes_by_resource(client)
        (head,) = by_resource["imc"]
        (second,) = by_resource["CPU"] - {head}
        # Three long jobs at once: Ray spreads them, so the second node runs one or two.
        jobs = [
            client.submit(ticker(tmp_path, f"long-{i}", limit=200, **retry)).id for i in range(3)
        ]

        def placed() -> list[tuple[str, str]]:
            found = []
            for job in jobs:
                for event in client.logs(job):
                    if event.data.get("aim") == "tick" and "node_id" in event.data:
                        found.append((job, str(event.data["node_id"])))
            return found if len(found) == len(jobs) else []

        on = dict(wait_for(placed, timeout=120, what="the jobs placed on Ray nodes"))
        assert second in on.values(), f"Ray put none of 3 jobs on the second node: {on}"
        victim = next(job for job, node in on.items() if node == second)
        host_pids = [
            a.pid for a in client.status(victim).aims if a.pid is not None and a.name == "tick"
        ]
        killed = cluster.kill_second_node()
        record = client.wait(victim, timeout=240)
        assert record.state is JobState.SUCCEEDED, record
        assert record.attempts == 2
        assert node_of(record, "tick") == head
        failures = [
            str(e.data.get("message", ""))
            for e in client.logs(victim)
            if e.topic == "log" and "restart 1 of 2" in str(e.data.get("message", ""))
        ]
        assert failures, "no retry was logged"
        assert second[:12] in failures[0], failures[0]
        for job in jobs:
            assert client.wait(job, timeout=240).state is JobState.SUCCEEDED

        def cpu_slots() -> str:
            return next(i.load for i in client.aims().instances if i.name == "ray-cpu")

        # the daemon follows the cluster: the lost node's CPUs are no longer slots
        wait_for(lambda: cpu_slots().endswith("/2"), timeout=60, what="ray-cpu to shrink to 2")
    for pid in killed + host_pids:
        wait_for(lambda pid=pid: gone(pid), timeout=30, what=f"process {pid} of the lost node")
