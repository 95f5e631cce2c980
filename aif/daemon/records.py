"""What the daemon knows of a job, and what its User API replies carry, as typed values.

The records here are the vocabulary the daemon and ``aif.Client`` share: the daemon
stores and serves them, the client rebuilds them from the msgpack maps it receives
(``from_json``) and the CLI prints them back (``to_json``, the same JSON the wire
carries). Kept apart from the SQLite store (``state.py``), the client and the CLI, so
the scheduler, the User API and the CLI can speak of jobs without a database in reach::

    ping()    → DaemonInfo
    submit(), suspend(), resume(), cancel(), wait(), jobs()
              → JobRecord (one, or a list)
    status()  → JobStatus: the JobRecord, why it waits, its RunningAIMs
    logs()    → EventRow, one per event
    aims()    → AIMListing: InstanceRecords, the JobAIMs running now, PeerHostedAIMs

Imports nothing of the client, the CLI or the workflow loader. A reply whose every
field already has its declared type (what a daemon of this version sends) is read
without pydantic; one that does not is handed to pydantic, which converts what lax
validation allows and names every wrong field. Either way the record is the same.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, Self

from aif.errors import MalformedMessage
from aif.workflow.policies import OnRestart

if TYPE_CHECKING:
    import pydantic

#: Who sent a reply, as ``from_json`` names it in an error unless told.
_SENDER = "the controller"


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


class _Record:
    """A frozen dataclass read from a User API reply and written back as the same JSON.

    ``from_json`` checks every field (types, enum values) and ignores keys it does not
    know, so an older client still reads a newer daemon; ``to_json`` gives the fields in
    their declared order (the order of the wire's map): enums as values, tuples as lists,
    nested records as their JSON.
    """

    #: What one is called in an error: ``a job``, ``an instance``.
    _what = "a record"

    @classmethod
    def from_json(cls, data: object, sender: str = _SENDER) -> Self:
        """The record in ``data`` (a decoded reply); ``MalformedMessage`` names each wrong
        field. ``sender`` names who sent it (``the controller at ipc://...``)."""
        try:
            quick: Self = _read(cls, data)
            return quick
        except _Unfit:
            pass  # pydantic converts what lax validation allows, or names what is wrong
        import pydantic

        try:
            record: Self = _adapter(cls).validate_python(data)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<reply>'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise MalformedMessage(
                f"{sender} sent {cls._what} that is not one ({problems}); "
                "are the client and the daemon the same aif version? (`aif controller status`)"
            ) from exc
        return record

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict: what the User API sends for it."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


_ADAPTERS: dict[type[_Record], pydantic.TypeAdapter[Any]] = {}


def _adapter(cls: type[_Record]) -> pydantic.TypeAdapter[Any]:
    """The checker of ``cls``, built when a reply first needs it (that costs milliseconds)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        import pydantic

        adapter = _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return adapter


class _Unfit(Exception):
    """A value the quick reader does not take as it is; pydantic reads it instead."""


#: A reader takes a decoded value and returns it as its field holds it, or raises _Unfit.
_Reader = Callable[[Any], Any]
#: Per record class: each field's name, reader, and whether a reply must carry it.
_PLANS: dict[type[_Record], list[tuple[str, _Reader, bool]]] = {}


def _read(cls: type[_Record], data: object) -> Any:
    """``cls`` from ``data`` when every field has exactly its declared type (an int is
    taken for a float, as pydantic takes it), without pydantic; else ``_Unfit``."""
    if type(data) is not dict:
        raise _Unfit
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = _PLANS[cls] = [
            (f.name, _reader(hints[f.name]), f.default is MISSING and f.default_factory is MISSING)
            for f in fields(cls)  # type: ignore[arg-type]
        ]
    values: dict[str, Any] = {}
    for name, read, required in plan:
        if name in data:
            values[name] = read(data[name])
        elif required:
            raise _Unfit
    return cls(**values)


def _reader(hint: Any) -> _Reader:
    """How to read a value of type ``hint`` quickly. The types the records use; any other
    is never read quickly (pydantic reads it)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return lambda value: value
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _reader(args[0] if args[1] is type(None) else args[1])
        return lambda value: None if value is None else inner(value)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _reader(args[0])
        return lambda value: tuple(map(item, _of_type(value, list, tuple)))
    if origin is dict and args[0] is str:
        item = _reader(args[1])
        return lambda value: {_of_type(k, str): item(v) for k, v in _of_type(value, dict).items()}
    if origin is Literal and all(type(a) is str for a in args):
        words = {word: word for word in args}
        return lambda value: _one_of(value, words)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = {member.value: member for member in hint}
        return lambda value: _one_of(value, members)
    if isinstance(hint, type) and issubclass(hint, _Record):
        return lambda value: _read(hint, value)
    if hint is float:
        return lambda value: value if type(value) is float else float(_of_type(value, int))
    if hint in (int, str, bool):
        return lambda value: _of_type(value, hint)
    return _never


def _of_type(value: Any, *kinds: type) -> Any:
    """``value`` if its type is one of ``kinds`` exactly (``True`` is no int here)."""
    if type(value) not in kinds:
        raise _Unfit
    return value


def _one_of(value: Any, allowed: dict[str, Any]) -> Any:
    if type(value) is not str or value not in allowed:
        raise _Unfit
    return allowed[value]


def _never(value: Any) -> Any:
    raise _Unfit


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


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
class JobRecord(_Record):
    """One job without its workflow text (that is :meth:`JobStore.text`).

    What the store keeps, and what ``aif.Client`` returns for a job: ``result`` holds
    the last attempt's outcome (state, error, seconds, per-AIM results, output counts).
    """

    _what = "a job"

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
    #: The one of ``queues`` the daemon serves, as the User API reports it (None on a
    #: record read from the store: which queue is served is the scheduler's to say).
    queue: str | None = None

    @property
    def final(self) -> bool:
        """True once nothing more will happen to the job."""
        return self.state.final

    def to_json(self) -> dict[str, Any]:
        """The job as the User API sends it: the fields, ``final``, then ``queue``."""
        out = super().to_json()
        queue = out.pop("queue")
        out["final"] = self.final
        out["queue"] = queue
        return out


@dataclass(frozen=True)
class EventRow(_Record):
    """One stored event of a job; ``seq`` orders all events and is the resume cursor."""

    _what = "an event"

    seq: int
    job: str
    time: float
    topic: str
    source: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The event as a ``logs`` page lists it (the page names the job, not each event)."""
        out = super().to_json()
        del out["job"]
        return out


@dataclass(frozen=True)
class RunningAIM(_Record):
    """An AIM of a running job, as ``status`` shows it."""

    _what = "an AIM"

    name: str
    type: str
    placement: str
    state: str
    pid: int | None
    #: Where it runs, in words (``process 1234``, ``host on controller tcp://...``).
    host: str
    error: str | None
    #: What the AIM declared it can do, measured where it runs (empty until it is ready).
    capabilities: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStatus(_Record):
    """One job in detail: its record, why it waits (while queued), its AIMs (while live)."""

    _what = "a job status"

    job: JobRecord
    aims: tuple[RunningAIM, ...] = ()
    #: Why a queued job does not run yet, in words a user can act on; else None.
    waiting: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The status as the User API sends it (``waiting`` only while there is a reason)."""
        out = super().to_json()
        if self.waiting is None:
            del out["waiting"]
        return out


@dataclass(frozen=True)
class InstanceRecord(_Record):
    """An execution slot of the daemon (``cpu-0``), as ``aims`` lists it."""

    _what = "an instance"

    name: str
    queue: str
    #: ``idle``, ``busy`` (has room) or ``full``.
    state: str
    #: Jobs running of the most it takes, ``1/2``.
    load: str
    running: tuple[str, ...]
    capabilities: dict[str, Any]


@dataclass(frozen=True)
class JobAIM(_Record):
    """An AIM of a job running now, and the instance the job runs on, as ``aims`` lists it."""

    _what = "an AIM"

    job: str
    instance: str
    name: str
    type: str
    placement: str
    state: str
    pid: int | None
    host: str
    error: str | None
    #: What the AIM declared it can do, measured where it runs (empty until it is ready).
    capabilities: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PeerHostedAIM(_Record):
    """An AIM this daemon hosts (or hosted) for a peer controller's run (C2C)."""

    _what = "a peer-hosted AIM"

    #: The peer's run.
    workflow: str
    aim: str
    type: str
    pid: int
    #: The peer's AIM API, where the host registered.
    controller: str
    origin: str
    #: ``running`` or ``exited STATUS``.
    state: str
    #: When it started (running) or ended.
    since: float


@dataclass(frozen=True)
class AIMListing(_Record):
    """The daemon's instances, the AIMs of its running jobs, and those it hosts for peers."""

    _what = "an AIM listing"

    instances: tuple[InstanceRecord, ...]
    hosts: tuple[JobAIM, ...]
    peer_hosts: tuple[PeerHostedAIM, ...] = ()


@dataclass(frozen=True)
class DaemonInfo(_Record):
    """What ``ping`` says of a daemon: who and where it is, and how many jobs it has."""

    _what = "a ping answer"

    pid: int
    version: str
    machine: str
    state_dir: str
    #: User API endpoints, the ipc one first.
    api: tuple[str, ...]
    #: The AIM API's tcp endpoint (remote hosts register there).
    aim_api: str | None
    started: float
    uptime: float
    #: Stopping: it takes no new jobs.
    draining: bool
    #: How many jobs are in each state, every state listed.
    jobs: dict[str, int]
    #: How many instances it has.
    instances: int
    #: ``basic`` or ``secure``.
    profile: str
    #: Its CURVE public key (``curve:...``) in the secure profile, else None.
    curve: str | None
    #: The Ray cluster (its GCS address) whose nodes run its jobs (``--ray``), else None.
    ray: str | None = None
