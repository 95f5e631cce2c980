"""Typed payloads of events: what a ``state``, ``progress``, ``log`` or ``result`` event says.

On the wire and in the daemon's event log an event's ``data`` stays a plain map (see
``aif.communication.events``); these types are a view over it, read once::

    topic       data                                        payload
    state       {"run": state, "error"?: str}               RunStateChanged
    state       {"job": state, "detail"?: str,              JobStateChanged
                 "queues"?: [str]}
    state       {"state": state, "pid"?: int, "host"?: str} AIMStateChanged
    progress    {"step"?: number, "total"?: number, ...}    ProgressUpdate
    log         {"level"?: str, "message": str, ...}        LogLine
    result      {...}                                       ResultReport
    any         what fits none of the above                 Unrecognized

Only the controller (and the daemon, for jobs) publishes ``state`` events; AIMs publish
``progress``, ``log`` and ``result`` with fields of their own choosing, which stay
reachable as ``values``. A known field of the wrong type never raises: in progress it is
not read as a step or total (it stays among ``values``); elsewhere the whole payload is
``Unrecognized``, which keeps the data and says why. Each payload has a ``Literal``
``kind`` tag, so ``match`` statements and type checkers tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeGuard, get_args

__all__ = [
    "AIM_STATES",
    "JOB_STATES",
    "RUN_STATES",
    "TOPICS",
    "AIMStateChanged",
    "AIMStateName",
    "JobStateChanged",
    "JobStateName",
    "LogLine",
    "Payload",
    "ProgressUpdate",
    "ResultReport",
    "RunStateChanged",
    "RunStateName",
    "Topic",
    "Unrecognized",
    "parse_payload",
]

Topic = Literal["state", "progress", "log", "result"]
TOPICS: tuple[Topic, ...] = get_args(Topic)

#: A workflow run's states (the values of ``aif.controller.run.RunState``).
RunStateName = Literal[
    "starting", "running", "suspended", "stopping", "succeeded", "stopped", "failed"
]
#: An AIM's states as the controller sees them (``aif.controller.run.AIMState``).
AIMStateName = Literal[
    "launching",
    "registered",
    "ready",
    "wired",
    "running",
    "suspended",
    "stopping",
    "done",
    "failed",
]
#: A daemon job's states (``aif.daemon.records.JobState``).
JobStateName = Literal[
    "queued",
    "held",
    "starting",
    "running",
    "suspended",
    "stopping",
    "succeeded",
    "failed",
    "cancelled",
    "stopped",
    "interrupted",
]
RUN_STATES: tuple[RunStateName, ...] = get_args(RunStateName)
AIM_STATES: tuple[AIMStateName, ...] = get_args(AIMStateName)
JOB_STATES: tuple[JobStateName, ...] = get_args(JobStateName)


@dataclass(frozen=True, slots=True)
class RunStateChanged:
    """A workflow run entered ``state``; ``error`` says why when it failed."""

    topic: ClassVar[Topic] = "state"
    state: RunStateName
    error: str | None = None
    kind: Literal["run-state"] = "run-state"

    @classmethod
    def named(cls, state: str, error: str | None = None) -> RunStateChanged:
        """From a state's name (``RunState.value``); ``ValueError`` for an unknown one."""
        if not _is_run_state(state):
            raise ValueError(f"unknown run state {state!r}; run states are {list(RUN_STATES)}")
        return cls(state, error)

    def to_data(self) -> dict[str, Any]:
        """The event's ``data`` map."""
        data: dict[str, Any] = {"run": self.state}
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass(frozen=True, slots=True)
class AIMStateChanged:
    """An AIM entered ``state``; on registering, its host's ``pid`` and ``host`` name."""

    topic: ClassVar[Topic] = "state"
    state: AIMStateName
    pid: int | None = None
    host: str | None = None
    kind: Literal["aim-state"] = "aim-state"

    @classmethod
    def named(cls, state: str, pid: int | None = None, host: str | None = None) -> AIMStateChanged:
        """From a state's name (``AIMState.value``); ``ValueError`` for an unknown one."""
        if not _is_aim_state(state):
            raise ValueError(f"unknown AIM state {state!r}; AIM states are {list(AIM_STATES)}")
        return cls(state, pid, host)

    def to_data(self) -> dict[str, Any]:
        """The event's ``data`` map."""
        data: dict[str, Any] = {"state": self.state}
        if self.pid is not None:
            data["pid"] = self.pid
        if self.host is not None:
            data["host"] = self.host
        return data


@dataclass(frozen=True, slots=True)
class JobStateChanged:
    """A daemon job entered ``state``: why (``detail``), and when queued, its ``queues``."""

    topic: ClassVar[Topic] = "state"
    state: JobStateName
    detail: str = ""
    queues: tuple[str, ...] = ()
    kind: Literal["job-state"] = "job-state"

    @classmethod
    def named(cls, state: str, detail: str = "", queues: tuple[str, ...] = ()) -> JobStateChanged:
        """From a state's name (``JobState.value``); ``ValueError`` for an unknown one."""
        if not _is_job_state(state):
            raise ValueError(f"unknown job state {state!r}; job states are {list(JOB_STATES)}")
        return cls(state, detail, queues)

    def to_data(self) -> dict[str, Any]:
        """The event's ``data`` map."""
        data: dict[str, Any] = {"job": self.state}
        if self.detail:
            data["detail"] = self.detail
        if self.queues:
            data["queues"] = list(self.queues)
        return data


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """How far an AIM got: ``step`` of ``total`` when it says, and its other ``values``."""

    topic: ClassVar[Topic] = "progress"
    step: float | None = None
    total: float | None = None
    values: dict[str, Any] = field(default_factory=dict)
    kind: Literal["progress"] = "progress"

    def to_data(self) -> dict[str, Any]:
        """The event's ``data`` map."""
        data = dict(self.values)
        if self.step is not None:
            data["step"] = self.step
        if self.total is not None:
            data["total"] = self.total
        return data


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line for the log, at ``level`` (``info`` unless said), with any other ``values``."""

    topic: ClassVar[Topic] = "log"
    message: str
    level: str = "info"
    values: dict[str, Any] = field(default_factory=dict)
    kind: Literal["log"] = "log"

    def to_data(self) -> dict[str, Any]:
        """The event's ``data`` map."""
        return {**self.values, "level": self.level, "message": self.message}


@dataclass(frozen=True, slots=True)
class ResultReport:
    """Values an AIM reports as its results (the run keeps the latest of each)."""

    topic: ClassVar[Topic] = "result"
    values: dict[str, Any] = field(default_factory=dict)
    kind: Literal["result"] = "result"

    def to_data(self) -> dict[str, Any]:
        """The event's ``data`` map."""
        return dict(self.values)


@dataclass(frozen=True, slots=True)
class Unrecognized:
    """Data that fits no payload of its ``topic``, kept as it came; ``reason`` says why."""

    topic: Topic
    data: dict[str, Any]
    reason: str
    kind: Literal["unrecognized"] = "unrecognized"

    def to_data(self) -> dict[str, Any]:
        """The event's ``data`` map."""
        return dict(self.data)


Payload = (
    RunStateChanged
    | AIMStateChanged
    | JobStateChanged
    | ProgressUpdate
    | LogLine
    | ResultReport
    | Unrecognized
)


def parse_payload(topic: Topic, data: Mapping[str, Any]) -> Payload:
    """What an event's ``data`` says, as a payload; never raises (see the module docstring)."""
    if not isinstance(data, Mapping):
        return Unrecognized(topic, {}, f"event data must be a map, got {type(data).__name__}")
    plain = dict(data)
    if topic == "progress":
        return _progress(plain)
    if topic == "result":
        return ResultReport(plain)
    if topic == "log":
        return _log(plain)
    if topic == "state":
        return _state(plain)
    return Unrecognized(topic, plain, f"unknown event topic {topic!r}")


def _is_run_state(value: object) -> TypeGuard[RunStateName]:
    return isinstance(value, str) and value in RUN_STATES


def _is_aim_state(value: object) -> TypeGuard[AIMStateName]:
    return isinstance(value, str) and value in AIM_STATES


def _is_job_state(value: object) -> TypeGuard[JobStateName]:
    return isinstance(value, str) and value in JOB_STATES


def _number(value: object) -> TypeGuard[float]:
    """A finite int or float (not a bool): what a progress bar can show."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _progress(data: dict[str, Any]) -> ProgressUpdate:
    step, total = data.get("step"), data.get("total")
    read = {k for k, v in (("step", step), ("total", total)) if _number(v)}
    return ProgressUpdate(
        step=step if _number(step) else None,
        total=total if _number(total) else None,
        values={k: v for k, v in data.items() if k not in read},
    )


def _log(data: dict[str, Any]) -> LogLine | Unrecognized:
    message, level = data.get("message"), data.get("level", "info")
    if not isinstance(message, str):
        return Unrecognized("log", data, f"a log event needs a str 'message', got {message!r}")
    if not isinstance(level, str):
        return Unrecognized("log", data, f"a log event's 'level' must be a str, got {level!r}")
    values = {k: v for k, v in data.items() if k not in ("message", "level")}
    return LogLine(message, level, values)


def _state(data: dict[str, Any]) -> Payload:
    if "run" in data:
        state, error = data["run"], data.get("error")
        if not _is_run_state(state):
            return Unrecognized("state", data, f"unknown run state {state!r}")
        if error is not None and not isinstance(error, str):
            return Unrecognized("state", data, f"a run's 'error' must be a str, got {error!r}")
        return RunStateChanged(state, error)
    if "job" in data:
        state, detail, queues = data["job"], data.get("detail", ""), data.get("queues", ())
        if not _is_job_state(state):
            return Unrecognized("state", data, f"unknown job state {state!r}")
        if not isinstance(detail, str):
            return Unrecognized("state", data, f"a job's 'detail' must be a str, got {detail!r}")
        if not isinstance(queues, list | tuple) or not all(isinstance(q, str) for q in queues):
            return Unrecognized("state", data, f"a job's 'queues' must be strs, got {queues!r}")
        return JobStateChanged(state, detail, tuple(queues))
    if "state" in data:
        state, pid, host = data["state"], data.get("pid"), data.get("host")
        if not _is_aim_state(state):
            return Unrecognized("state", data, f"unknown AIM state {state!r}")
        if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
            return Unrecognized("state", data, f"an AIM's 'pid' must be an int, got {pid!r}")
        if host is not None and not isinstance(host, str):
            return Unrecognized("state", data, f"an AIM's 'host' must be a str, got {host!r}")
        return AIMStateChanged(state, pid, host)
    return Unrecognized("state", data, "a state event names a 'run', 'job' or AIM 'state'")
