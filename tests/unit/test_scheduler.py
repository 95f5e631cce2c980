"""Queues and instances: placement, fairness across queues, waiting reasons, job queues."""

from __future__ import annotations

from types import SimpleNamespace

import pydantic
import pytest

from aif import AIM
from aif.daemon.scheduler import (
    Instance,
    Scheduler,
    default_instances,
    job_queues,
    parse_instances,
)
from aif.errors import ConfigError


def test_parse_instances_counts_and_jobs_per_instance() -> None:
    instances = parse_instances(["cpu=2", "validation=1x4,cuda=1"])
    assert [(i.name, i.queue, i.max_jobs) for i in instances] == [
        ("cpu-0", "cpu", 1),
        ("cpu-1", "cpu", 1),
        ("validation-0", "validation", 4),
        ("cuda-0", "cuda", 1),
    ]
    assert instances[0].capabilities["device"] == "cpu"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cpu", "QUEUE=COUNT"),
        ("cpu=two", "QUEUE=COUNT"),
        ("CPU=1", "QUEUE=COUNT"),
        ("cpu=1,cpu=2", "twice"),
        ("cpu=1x0", "at least 1"),
    ],
)
def test_parse_instances_refuses_malformed_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_instances([spec])


def test_default_instances_serve_validation_cpu_and_a_chip() -> None:
    queues = {i.queue for i in default_instances()}
    assert {"validation", "cpu", "imc"} <= queues


def test_place_prefers_the_least_loaded_instance() -> None:
    a, b = Instance("cpu-0", "cpu", 2), Instance("cpu-1", "cpu", 2)
    scheduler = Scheduler([a, b])
    scheduler.assign("j1", a)
    assert scheduler.place(("cpu",)) is b
    scheduler.assign("j2", b)
    scheduler.assign("j3", a)
    assert scheduler.place(("cpu",)) is b
    scheduler.assign("j4", b)
    assert scheduler.place(("cpu",)) is None
    scheduler.release("j1")
    assert scheduler.place(("cpu",)) is a
    assert scheduler.instance_of("j4") is b


def test_place_avoids_the_instance_a_job_failed_on_when_it_can() -> None:
    a, b = Instance("cpu-0", "cpu"), Instance("cpu-1", "cpu")
    scheduler = Scheduler([a, b])
    assert scheduler.place(("cpu",), avoid="cpu-0") is b
    scheduler.assign("other", b)
    assert scheduler.place(("cpu",), avoid="cpu-0") is None  # waits for the other one
    only = Scheduler([Instance("cpu-0", "cpu")])
    assert only.place(("cpu",), avoid="cpu-0") is not None  # the only one: retry there


def test_auto_takes_a_gpu_instance_where_there_is_one_and_a_cpu_one_elsewhere() -> None:
    with_gpu = Scheduler([Instance("cuda-0", "cuda"), Instance("cpu-0", "cpu")])
    placed = with_gpu.place(("cuda", "cpu"))
    assert placed is not None and placed.queue == "cuda"
    without = Scheduler([Instance("cpu-0", "cpu")])
    placed = without.place(("cuda", "cpu"))
    assert placed is not None and placed.queue == "cpu"


def test_waiting_reasons_say_what_to_do() -> None:
    scheduler = Scheduler([Instance("cpu-0", "cpu")])
    reason = scheduler.waiting_reason(("cuda",))
    assert "no instance serves queue 'cuda'" in reason
    assert "--instances cuda=1" in reason and "serves: cpu" in reason
    scheduler.assign("j", scheduler.instances[0])
    assert scheduler.waiting_reason(("cpu",)) == "waiting for a cpu instance (1 of 1 slots busy)"


def test_instance_state_and_json() -> None:
    inst = Instance("cpu-0", "cpu", 2, {"device": "cpu"})
    assert inst.state == "idle"
    inst.running.add("a")
    assert inst.state == "busy"
    inst.running.add("b")
    assert inst.to_json() == {
        "name": "cpu-0",
        "queue": "cpu",
        "state": "full",
        "load": "2/2",
        "running": ["a", "b"],
        "capabilities": {"device": "cpu"},
    }


def test_duplicate_instance_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="unique"):
        Scheduler([Instance("x", "cpu"), Instance("x", "cuda")])


def _queues(*aims: tuple[type[AIM], pydantic.BaseModel | None]) -> tuple[str, ...]:
    # job_queues reads only each AIM's class and parameters
    fake = SimpleNamespace(
        aims={f"a{i}": SimpleNamespace(cls=c, params=p) for i, (c, p) in enumerate(aims)}
    )
    return job_queues(fake)  # type: ignore[arg-type]


def test_job_queues_follow_the_heaviest_aim() -> None:
    from aif.aims.analog.imc_chip.driver import IMCChip
    from aif.aims.analog.simulator import AnalogSimulator, SimulatorParams
    from aif.aims.analog.validator import AnalogValidator
    from aif.aims.builtin import Source

    def sim(device: str) -> tuple[type[AIM], pydantic.BaseModel]:
        return AnalogSimulator, SimulatorParams(device=device)  # type: ignore[arg-type]

    assert _queues((Source, None)) == ("cpu",)
    assert _queues((AnalogValidator, None)) == ("validation",)
    assert _queues(sim("cpu")) == ("cpu",)
    assert _queues(sim("cuda")) == ("cuda",)
    assert _queues(sim("auto")) == ("cuda", "cpu")
    assert _queues((AnalogValidator, None), sim("cpu")) == ("cpu",)
    assert _queues(sim("cpu"), (IMCChip, None), (AnalogValidator, None)) == ("imc",)
