"""What the daemon knows of a job, as plain values: its states and its stored record.

Kept apart from the SQLite store (``state.py``) so the scheduler, the User API and the
CLI can speak of jobs without a database in reach.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any

from aif.workflow.model import OnRestart


class JobState(enum.StrEnum):
    """Where a job is in its life; the value (also its ``str``) is what is stored and shown."""

    QUEUED = "queued"
    HELD = "held"
    STARTING = "starting"
    RUNNING = "running"
    SUSPENDED = "suspended"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        """True once nothing more will happen to the job."""
        return self in _FINAL

    @property
    def live(self) -> bool:
        """True while an attempt is in flight (what a crashed daemon leaves behind)."""
        return self in _LIVE


_FINAL = frozenset(map(JobState, ("succeeded", "failed", "cancelled", "stopped", "interrupted")))
_LIVE = frozenset(map(JobState, ("starting", "running", "suspended", "stopping")))


@dataclass(frozen=True)
class NewJob:
    """What ``submit`` hands the store; ``queues`` are the acceptable ones, preferred first."""

    id: str
    workflow: str
    source: str
    text: str
    overrides: tuple[str, ...]
    base_dir: str
    work_dir: str
    queues: tuple[str, ...]
    priority: int = 0
    on_restart: OnRestart = "requeue"
    hold: bool = False


@dataclass(frozen=True)
class JobRecord:
    """One stored job without its workflow text (that is :meth:`JobStore.text`)."""

    seq: int
    id: str
    workflow: str
    source: str
    overrides: tuple[str, ...]
    base_dir: str
    work_dir: str
    queues: tuple[str, ...]
    priority: int
    on_restart: OnRestart
    state: JobState
    detail: str
    attempts: int
    instance: str | None
    submitted: float
    started: float | None
    ended: float | None
    not_before: float
    result: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict: the state as its value, tuples as lists."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(state=self.state.value, overrides=list(self.overrides))
        out["queues"] = list(self.queues)
        return out


@dataclass(frozen=True)
class EventRow:
    """One stored event of a job; ``seq`` orders all events and is the resume cursor."""

    seq: int
    job: str
    time: float
    topic: str
    source: str
    data: dict[str, Any]
