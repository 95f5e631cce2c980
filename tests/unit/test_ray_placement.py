"""Ray placement as plain logic: resources as Ray counts them, the daemon's Ray
instances, which AIM of a job goes to Ray, and instances that follow the cluster.

The real cluster is in tests/integration/test_ray_cluster.py; nothing here needs Ray.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aif.controller.launchers.ray import RayLauncher, _dialable, _unreachable
from aif.controller.launchers.ray_cluster import (
    NodeResources,
    RayNode,
    actor_options,
    cluster_totals,
    custom_names,
    demand,
    unplaceable,
)
from aif.controller.plan import PlannedAIM, plan_run
from aif.controller.secure_profile import SecureProfile
from aif.controller.wiring import choose_transport
from aif.daemon.on_ray import place_on_ray, queue_resources, ray_instances
from aif.daemon.scheduler import Instance, Scheduler
from aif.errors import ConfigError
from aif.workflow import load_workflow_text, resolve

HEAD = NodeResources(
    RayNode("a" * 56, "10.0.0.1", "head"),
    {"CPU": 2.0, "imc": 1.0, "memory": 8e9, "node:10.0.0.1": 1.0, "node:__internal_head__": 1.0},
)
SECOND = NodeResources(
    RayNode("b" * 56, "10.0.0.2", "second"),
    {"CPU": 4.0, "GPU": 1.0, "memory": 16e9, "node:10.0.0.2": 1.0},
)


def test_resources_are_asked_as_ray_counts_them() -> None:
    assert demand(None) == {"CPU": 1.0}
    assert demand({"num_cpus": 0}) == {}
    assert demand({"num_cpus": 2, "num_gpus": 0.5, "memory": 1024, "custom": {"imc": 1}}) == {
        "CPU": 2.0,
        "GPU": 0.5,
        "memory": 1024.0,
        "imc": 1.0,
    }
    assert actor_options({"custom": {"imc": 1}}) == {
        "num_cpus": 1.0,
        "num_gpus": 0.0,
        "resources": {"imc": 1.0},
    }
    assert actor_options({"memory": 2048})["memory"] == 2048


def test_totals_leave_out_rays_node_markers_and_name_the_custom_resources() -> None:
    totals = cluster_totals([HEAD, SECOND])
    assert totals == {"CPU": 6.0, "GPU": 1.0, "imc": 1.0, "memory": 24e9}
    assert custom_names(totals) == ["imc"]


def test_a_demand_no_live_node_can_hold_says_what_each_node_has() -> None:
    assert unplaceable({"CPU": 1.0, "imc": 1.0}, [HEAD, SECOND]) is None
    assert unplaceable({"CPU": 3.0, "GPU": 1.0}, [HEAD, SECOND]) is None
    why = unplaceable({"CPU": 1.0, "fpga": 1.0}, [HEAD, SECOND])
    assert why is not None
    assert "no live node of the Ray cluster has {CPU: 1, fpga: 1}" in why
    assert "10.0.0.1 (node aaaaaaaaaaaa): CPU 2" in why and "10.0.0.2" in why
    # a resource split over two nodes does not make one node that has it
    assert unplaceable({"CPU": 3.0, "imc": 1.0}, [HEAD, SECOND]) is not None
    assert "no live node" in (unplaceable({"CPU": 1.0}, []) or "")


def test_the_daemons_ray_instances_come_from_the_clusters_resources() -> None:
    instances = {i.name: i for i in ray_instances([HEAD, SECOND], "10.0.0.1:6379")}
    assert {n: (i.queue, i.max_jobs) for n, i in instances.items()} == {
        "ray-cpu": ("cpu", 6),
        "ray-cuda": ("cuda", 1),
        "ray-imc": ("imc", 1),
    }
    nodes = instances["ray-cpu"].capabilities["nodes"]
    assert [n["node_id"] for n in nodes] == ["a" * 56, "b" * 56]
    assert nodes[0]["resources"] == {"CPU": 2.0, "imc": 1.0, "memory": 8e9}
    # a lost node takes its slots with it
    after = {i.name: i.max_jobs for i in ray_instances([SECOND], "10.0.0.1:6379")}
    assert after == {"ray-cpu": 4, "ray-cuda": 1}


def test_resized_instances_keep_their_running_jobs_and_lost_ones_take_no_more() -> None:
    local = Instance("validation-0", "validation", 4)
    scheduler = Scheduler([local, *ray_instances([HEAD, SECOND], "h:1")])
    cpu = next(i for i in scheduler.instances if i.name == "ray-cpu")
    scheduler.assign("job-1", cpu)
    scheduler.resize(ray_instances([SECOND], "h:1"))
    assert cpu.running == {"job-1"} and cpu.max_jobs == 4
    by_name = {i.name: i for i in scheduler.instances}
    assert by_name["ray-imc"].max_jobs == 0  # the board left with the head
    assert by_name["validation-0"].max_jobs == 4  # not the cluster's: untouched
    assert scheduler.place(["imc"]) is None
    assert "0 of 0 slots" in scheduler.waiting_reason(["imc"])
    scheduler.resize(ray_instances([HEAD, SECOND], "h:1"))
    assert by_name["ray-imc"].max_jobs == 1


ANALOG = """
name: sweep
aims:
  experiments: {type: experiment-source, params: {files: [e.yml]}, placement: process}
  validator: {type: analog-validator, placement: process}
  simulator: {type: analog-simulator, placement: process}
  reporter: {type: analog-reporter, placement: process}
connections:
  - experiments.experiments -> validator.experiments
  - validator.jobs -> simulator.jobs
  - validator.rejections -> reporter.rejections
  - simulator.metrics -> reporter.metrics
  - simulator.results -> reporter.results
"""


def test_the_heaviest_process_aim_of_a_job_goes_to_ray_with_the_instances_resource() -> None:
    resolved = resolve(load_workflow_text(ANALOG, "sweep.yml"))
    cpu, imc = ray_instances([HEAD, SECOND], "h:1")[0], ray_instances([HEAD], "h:1")[1]
    placed = place_on_ray(resolved, cpu)
    plan = plan_run(placed)
    assert {n: a.placement for n, a in plan.aims.items()} == {
        "experiments": "process",
        "validator": "process",
        "simulator": "ray",
        "reporter": "process",
    }
    assert plan.aims["simulator"].resources == {"num_cpus": 1.0, "custom": {}}
    assert plan_run(place_on_ray(resolved, imc)).aims["simulator"].resources == {
        "num_cpus": 1.0,
        "custom": {"imc": 1.0},
    }
    # a local instance, or a job that places an AIM on Ray itself, is left as it is
    assert place_on_ray(resolved, Instance("cpu-0", "cpu")) is resolved
    written = ANALOG.replace(
        "simulator: {type: analog-simulator, placement: process}",
        "simulator: {type: analog-simulator, placement: ray, resources: {num_gpus: 1}}",
    )
    own = resolve(load_workflow_text(written, "own.yml"))
    assert place_on_ray(own, cpu) is own
    assert queue_resources("cuda").num_gpus == 1


def test_a_ray_aims_channels_go_over_tcp() -> None:
    assert choose_transport("ray", "process") == "tcp"
    assert choose_transport("controller", "ray") == "tcp"
    assert choose_transport("process", "inproc") == "ipc"


def test_the_host_actor_loads_nothing_of_the_controller() -> None:
    code = textwrap.dedent(
        """
        import sys
        import aif.host.ray_actor
        bad = [m for m in sys.modules if m.startswith(("aif.controller", "aif.daemon",
               "aif.cli", "aif.workflow", "ray"))]
        print(bad)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["aif.controller.launchers.ray", "aif.daemon.on_ray"])
def test_ray_is_imported_only_when_a_ray_placement_is_used(module: str) -> None:
    code = f"import sys, {module}; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_secure_job_stays_off_ray_and_a_secure_ray_aim_is_refused(tmp_path: Path) -> None:
    secure = ANALOG.replace("name: sweep\n", "name: sweep\nprofile: secure\n")
    resolved = resolve(load_workflow_text(secure, "secure.yml"))
    cpu = ray_instances([HEAD, SECOND], "h:1")[0]
    assert place_on_ray(resolved, cpu) is resolved
    written = secure.replace(
        "simulator: {type: analog-simulator, placement: process}",
        "simulator: {type: analog-simulator, placement: ray}",
    )
    on_ray = resolve(load_workflow_text(written, "secure-ray.yml"))
    with pytest.raises(ConfigError, match="placed on Ray \\(simulator\\)"):
        SecureProfile(tmp_path).check(on_ray, curve_api=True)


def test_hosts_dial_the_controller_where_the_cluster_reaches_it() -> None:
    assert _dialable("tcp://0.0.0.0:5555", "127.0.0.1:6379") == "tcp://127.0.0.1:5555"
    assert _dialable("tcp://10.1.2.3:5555", "10.9.9.9:6379") == "tcp://10.1.2.3:5555"
    here = RayNode("c" * 56, "127.0.0.1")
    assert _unreachable("tcp://127.0.0.1:5555", here) is None
    elsewhere = RayNode("d" * 56, "203.0.113.9")  # TEST-NET-3: not this machine
    why = _unreachable("tcp://127.0.0.1:5555", elsewhere)
    assert why is not None and "--listen tcp://IP:*" in why and "node dddddddddddd" in why
    assert _unreachable("tcp://10.1.2.3:5555", elsewhere) is None


async def test_a_host_that_says_hello_before_rays_answer_is_named_all_the_same() -> None:
    aim = PlannedAIM(
        name="sim",
        type="tests.helpers.aims:Ticker",
        class_path="tests.helpers.aims:Ticker",
        placement="ray",
        params={},
        heartbeat_timeout=5.0,
        input_ports=(),
        port_types={},
    )
    launcher = RayLauncher(aim, "tcp://127.0.0.1:5555", "run-1")
    launcher.registered("elsewhere", 42)
    assert launcher.description == "Ray actor (node not known yet, pid 42)"
    launcher.node = RayNode("e" * 56, "10.0.0.5")
    launcher.registered(None, 42)
    assert launcher.description == "Ray actor on node 10.0.0.5 (node eeeeeeeeeeee, pid 42)"


def test_a_local_queue_named_like_a_ray_instance_is_not_the_clusters() -> None:
    local = Instance("ray-0", "ray", 2)
    scheduler = Scheduler([local])
    scheduler.resize(ray_instances([HEAD], "h:1"))
    scheduler.resize(ray_instances([SECOND], "h:1"))
    assert local.max_jobs == 2
    assert {i.name: i.max_jobs for i in scheduler.instances} == {
        "ray-0": 2,
        "ray-cpu": 4,
        "ray-imc": 0,
        "ray-cuda": 1,
    }
