"""Typed event payloads: what each event's data map reads as, and what a malformed one gives.

The wire keeps the plain ``data`` map; ``Event.payload`` reads it once. Whatever an AIM
sends, reading never raises, and the run display and the daemon carry on.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from aif.cli.progress import RunDisplay
from aif.communication.event_payloads import (
    AIM_STATES,
    JOB_STATES,
    RUN_STATES,
    AIMStateChanged,
    JobStateChanged,
    LogLine,
    Payload,
    ProgressUpdate,
    ResultReport,
    RunStateChanged,
    Unrecognized,
    parse_payload,
)
from aif.communication.events import CONTROLLER, Event
from aif.controller.run import AIMState, RunState
from aif.daemon.jobs import JobManager
from aif.daemon.state import JobState, JobStore, NewJob

# -- what well-formed data reads as ------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "data", "payload"),
    [
        ("state", {"run": "running"}, RunStateChanged("running")),
        ("state", {"run": "failed", "error": "boom"}, RunStateChanged("failed", "boom")),
        ("state", {"run": "failed", "error": None}, RunStateChanged("failed")),
        ("state", {"state": "done"}, AIMStateChanged("done")),
        (
            "state",
            {"state": "registered", "pid": 42, "host": "lab-1"},
            AIMStateChanged("registered", 42, "lab-1"),
        ),
        ("state", {"job": "failed", "detail": "why"}, JobStateChanged("failed", "why")),
        (
            "state",
            {"job": "queued", "queues": ["cuda", "cpu"]},
            JobStateChanged("queued", queues=("cuda", "cpu")),
        ),
        (
            "progress",
            {"step": 3, "total": 10, "loss": 0.21},
            ProgressUpdate(3, 10, {"loss": 0.21}),
        ),
        ("progress", {"epoch": 2}, ProgressUpdate(values={"epoch": 2})),
        ("progress", {"step": 0.5}, ProgressUpdate(step=0.5)),
        ("log", {"message": "hello"}, LogLine("hello")),
        (
            "log",
            {"level": "warning", "message": "hot", "line": 3},
            LogLine("hot", "warning", {"line": 3}),
        ),
        (
            "result",
            {"accuracy": 0.9, "jobs": {"a": {}}},
            ResultReport({"accuracy": 0.9, "jobs": {"a": {}}}),
        ),
        ("result", {}, ResultReport()),
    ],
)
def test_data_reads_as_its_payload(topic: Any, data: dict[str, Any], payload: Payload) -> None:
    assert parse_payload(topic, data) == payload
    assert Event(topic, "x", "run-1", data).payload == payload


@pytest.mark.parametrize(
    "payload",
    [
        RunStateChanged("failed", "AIM 'a' failed: boom"),
        RunStateChanged("succeeded"),
        AIMStateChanged("registered", 7, "lab-2"),
        AIMStateChanged("running"),
        JobStateChanged("queued", queues=("cpu",)),
        JobStateChanged("interrupted", "the daemon stopped"),
        ProgressUpdate(1, 4, {"loss": 0.5}),
        LogLine("hello", "error", {"aim": "a"}),
        ResultReport({"accuracy": 0.75}),
    ],
)
def test_a_payload_round_trips_through_its_data_and_the_wire(payload: Payload) -> None:
    assert parse_payload(payload.topic, payload.to_data()) == payload
    event = Event.of(payload, "src", "run-1")
    assert event.topic == payload.topic
    assert event.payload is payload
    again = Event.from_frames(event.to_frames())
    assert again == event
    assert again.payload == payload


def test_the_controller_constructors_write_the_maps_it_always_wrote() -> None:
    failed = Event.run_state("run-1", RunState.FAILED.value, "boom")
    assert (failed.topic, failed.source, failed.workflow) == ("state", CONTROLLER, "run-1")
    assert failed.data == {"run": "failed", "error": "boom"}
    assert Event.run_state("run-1", "running").data == {"run": "running"}
    registered = Event.aim_state("a", "run-1", "registered", pid=12, host="lab-1")
    assert (registered.topic, registered.source) == ("state", "a")
    assert list(registered.data.items()) == [
        ("state", "registered"),
        ("pid", 12),
        ("host", "lab-1"),
    ]
    assert Event.aim_state("a", "run-1", "done").data == {"state": "done"}


def test_job_and_log_payloads_write_the_maps_the_daemon_always_stored() -> None:
    assert JobStateChanged.named("queued", queues=("cpu",)).to_data() == {
        "job": "queued",
        "queues": ["cpu"],
    }
    assert JobStateChanged.named("running", "").to_data() == {"job": "running"}
    assert JobStateChanged.named("failed", "boom").to_data() == {"job": "failed", "detail": "boom"}
    assert list(LogLine("hot", "warning").to_data().items()) == [
        ("level", "warning"),
        ("message", "hot"),
    ]


def test_the_cached_payload_does_not_take_part_in_equality() -> None:
    a = Event("progress", "a", None, {"step": 1}, 1.0)
    b = Event("progress", "a", None, {"step": 1}, 1.0)
    assert a.payload == ProgressUpdate(1)
    assert a == b
    assert "payload" not in repr(a)


def test_state_names_match_the_enums_they_mirror() -> None:
    assert tuple(s.value for s in RunState) == RUN_STATES
    assert tuple(s.value for s in AIMState) == AIM_STATES
    assert tuple(s.value for s in JobState) == JOB_STATES


@pytest.mark.parametrize(
    "build",
    [
        lambda: Event.run_state("run-1", "exploded"),
        lambda: Event.aim_state("a", "run-1", "sleeping"),
        lambda: JobStateChanged.named("lost"),
    ],
)
def test_a_constructor_refuses_an_unknown_state_naming_the_known_ones(build: Any) -> None:
    with pytest.raises(ValueError, match=r"unknown .* state .* states are"):
        build()


# -- malformed data ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "data", "reason"),
    [
        ("state", {"run": "exploded"}, "unknown run state 'exploded'"),
        ("state", {"run": 3}, "unknown run state 3"),
        ("state", {"run": "failed", "error": 3}, "a run's 'error' must be a str, got 3"),
        ("state", {"state": "sleeping"}, "unknown AIM state 'sleeping'"),
        ("state", {"state": "registered", "pid": "12"}, "an AIM's 'pid' must be an int"),
        ("state", {"state": "registered", "pid": True}, "an AIM's 'pid' must be an int"),
        ("state", {"state": "registered", "host": 1}, "an AIM's 'host' must be a str"),
        ("state", {"job": "lost"}, "unknown job state 'lost'"),
        ("state", {"job": "failed", "detail": 1}, "a job's 'detail' must be a str"),
        ("state", {"job": "queued", "queues": "cpu"}, "a job's 'queues' must be strs"),
        ("state", {"job": "queued", "queues": [1]}, "a job's 'queues' must be strs"),
        ("state", {}, "a state event names a 'run', 'job' or AIM 'state'"),
        ("state", {"epoch": 1}, "a state event names a 'run', 'job' or AIM 'state'"),
        ("log", {}, "a log event needs a str 'message', got None"),
        ("log", {"message": 42}, "a log event needs a str 'message', got 42"),
        ("log", {"message": "m", "level": 2}, "a log event's 'level' must be a str, got 2"),
    ],
)
def test_malformed_data_reads_as_unrecognized_keeping_it_and_saying_why(
    topic: Any, data: dict[str, Any], reason: str
) -> None:
    payload = Event(topic, "a", "run-1", data).payload
    assert isinstance(payload, Unrecognized)
    assert (payload.topic, payload.data) == (topic, data)
    assert reason in payload.reason
    assert payload.to_data() == data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"step": "3", "total": 10}, ProgressUpdate(None, 10, {"step": "3"})),
        ({"step": True, "total": False}, ProgressUpdate(values={"step": True, "total": False})),
        ({"step": 1, "total": math.inf}, ProgressUpdate(1, None, {"total": math.inf})),
        ({"step": None, "total": [1]}, ProgressUpdate(values={"step": None, "total": [1]})),
    ],
)
def test_progress_fields_that_are_no_numbers_stay_among_the_values(
    data: dict[str, Any], expected: ProgressUpdate
) -> None:
    payload = parse_payload("progress", data)
    assert payload == expected
    assert payload.to_data() == data


def test_a_nan_step_is_no_step() -> None:
    payload = parse_payload("progress", {"step": math.nan})
    assert isinstance(payload, ProgressUpdate)
    assert payload.step is None
    assert math.isnan(payload.values["step"])


def test_data_that_is_not_a_map_reads_as_unrecognized() -> None:
    event = Event("result", "a", None, [1, 2])  # type: ignore[arg-type]
    assert event.payload == Unrecognized("result", {}, "event data must be a map, got list")


def test_the_payload_is_read_once() -> None:
    event = Event("log", "a", None, {"message": "first"})
    first = event.payload
    event.data["message"] = "second"
    assert event.payload is first


# -- the consumers: the run display and the daemon -------------------------------------


#: What an AIM or a confused peer could put on the wire: plain values, fitting no payload.
MALFORMED = [
    Event("state", CONTROLLER, "run-1", {"run": 7}),
    Event("state", "a", "run-1", {"state": ["x"]}),
    Event("state", "a", "run-1", {}),
    Event("progress", "a", "run-1", {"step": "x", "total": math.nan, "[/x]": "[/y]"}),
    Event("log", "a", "run-1", {"message": {"nested": 1}}),
    Event("log", "a", "run-1", {"message": "[/bold] closes nothing", "level": "info"}),
]
#: What only an in-process caller could hand over.
ODD = [
    Event("progress", "a", "run-1", {1: 2}),  # type: ignore[dict-item]
    Event("result", "a", "run-1", {"x": object()}),
    Event("result", "a", "run-1", None),  # type: ignore[arg-type]
]


def test_the_run_display_shows_what_fits_and_never_raises_on_what_does_not() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    with RunDisplay(console) as display:
        display.on_event(Event.run_state("run-1", "running"))
        display.on_event(Event.aim_state("a", "run-1", "running"))
        display.on_event(Event("progress", "a", "run-1", {"step": 2, "total": 4, "loss": 0.5}))
        for event in MALFORMED + ODD:
            display.on_event(event)
        display.on_event(Event.run_state("run-1", "failed", "AIM 'a' [/red] failed"))
    text = out.getvalue()
    assert "run run-1: running" in text
    assert "a: running" in text
    assert "a: [/bold] closes nothing" in text
    assert "a: {'message': {'nested': 1}}" in text
    assert "run run-1: failed: AIM 'a' [/red] failed" in text


class _Scheduler:
    def serves(self, queue: str) -> bool:
        return True


def _manager(tmp_path: Path) -> tuple[JobManager, JobStore]:
    store = JobStore(tmp_path / JobStore.FILE_NAME)
    controller = SimpleNamespace(state_dir=tmp_path, subscribe=lambda listener: lambda: None)
    manager = JobManager(store, controller, _Scheduler())  # type: ignore[arg-type]
    store.add(
        NewJob(
            id="wf-1",
            workflow="wf",
            source="wf.yml",
            text="name: wf\n",
            overrides=(),
            base_dir=str(tmp_path),
            work_dir=str(tmp_path),
            queues=("cpu",),
        )
    )
    store.update("wf-1", state=JobState.RUNNING)
    manager._attempts["wf-1"] = SimpleNamespace()  # type: ignore[assignment]
    return manager, store


def test_the_daemon_stores_malformed_events_as_they_came_and_follows_only_run_states(
    tmp_path: Path,
) -> None:
    manager, store = _manager(tmp_path)
    for event in MALFORMED:
        manager._on_event(dataclasses.replace(event, workflow="wf-1"))
    assert store.get("wf-1").state is JobState.RUNNING
    manager._on_event(Event("state", "a", "wf-1", {"run": "suspended"}))  # not the controller
    assert store.get("wf-1").state is JobState.RUNNING
    manager._on_event(Event.run_state("wf-1", "suspended"))
    assert store.get("wf-1").state is JobState.SUSPENDED
    manager.events.flush()
    stored = [(r.topic, r.source, r.data) for r in store.events("wf-1")]
    assert (
        stored[: len(MALFORMED)]
        == [(e.topic, e.source, e.data) for e in MALFORMED[:3]]
        + [
            ("progress", "a", {"step": "x", "total": None, "[/x]": "[/y]"}),  # JSON has no NaN
            *((e.topic, e.source, e.data) for e in MALFORMED[4:]),
        ]
    )


def test_the_daemon_records_job_states_and_warnings_as_it_always_did(tmp_path: Path) -> None:
    manager, store = _manager(tmp_path)
    manager._set("wf-1", JobState.FAILED, "boom")
    manager._set("wf-1", JobState.QUEUED, "")
    manager._record("wf-1", LogLine("retrying in 2 s", "warning"))
    manager.events.flush()
    assert [(r.topic, r.source, r.data) for r in store.events("wf-1")] == [
        ("state", "controller", {"job": "failed", "detail": "boom"}),
        ("state", "controller", {"job": "queued"}),
        ("log", "controller", {"level": "warning", "message": "retrying in 2 s"}),
    ]
