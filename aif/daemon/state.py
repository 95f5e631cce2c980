"""The controller daemon's memory: every submitted job, its state, events and result.

Why SQLite in WAL mode: the daemon must survive ``kill -9`` (or a crash, or an OOM kill)
without losing a job it has acknowledged, and the stdlib already ships a transactional
store. In WAL mode a commit appends to ``controller.db-wal`` with a ``write()``, so once
a call here returns the data is in the operating system's hands: a dead *process* loses
nothing, even with ``synchronous=NORMAL``. That setting only skips the fsync per commit,
so a *power cut* may roll back the last few commits, never corrupt the file. Readers do
not block the writer, so ``aif ps`` stays fast while jobs run.

What survives a restart: each job's submission (workflow text, overrides, queues,
priority, restart policy), its state and ``detail``, attempts, instance, time stamps,
back-off and last result, and its events. Nothing in flight does: the AIM processes
of a crashed daemon are gone with it. So :meth:`JobStore.recover`, called once when a
daemon starts, settles every job a dead daemon left *live* (starting, running,
suspended, stopping): ``on_restart="requeue"`` puts it back in the queue,
``"interrupt"`` ends it as ``interrupted``. Queued, held and finished jobs stay as
they were.

Each job counts the daemons that died while it was live (``crashes``). A job that was
live at :data:`MAX_CRASHES` deaths is not run again: recovery *quarantines* it, as
``failed`` with a detail that begins ``quarantined:`` and says why, so a job that kills
its daemon (or stalls it until someone kills it) cannot take down every daemon started
on the folder after it. A daemon that exits cleanly settles its own live jobs without
counting (``recover(crashed=False)``).

The schema version lives in ``PRAGMA user_version``; a file from a newer aif is
refused, never rewritten. Every ``sqlite3`` error leaves as :class:`StateError`
naming the file and the fix.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args

from aif.daemon.records import (
    EventRow,
    JobRecord,
    JobState,
    NewJob,
)
from aif.errors import JobNotFound, LifecycleError, StateError
from aif.workflow.policies import OnRestart

__all__ = ["EventRow", "JobRecord", "JobState", "JobStore", "NewJob", "OnRestart"]


SCHEMA_VERSION = 2
#: Daemon deaths with a job live after which recovery quarantines the job.
MAX_CRASHES = 3
#: How a quarantined job's detail begins.
QUARANTINED = "quarantined"

# Steps from version N to N + 1. ``text`` and ``data`` come last in their rows: SQLite
# has to walk a large value's overflow pages to reach any column stored after it.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: (
        """CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
            workflow TEXT NOT NULL, source TEXT NOT NULL, overrides TEXT NOT NULL,
            base_dir TEXT NOT NULL, work_dir TEXT NOT NULL, queues TEXT NOT NULL,
            priority INTEGER NOT NULL, on_restart TEXT NOT NULL, state TEXT NOT NULL,
            detail TEXT NOT NULL, attempts INTEGER NOT NULL, instance TEXT,
            submitted REAL NOT NULL, started REAL, ended REAL, not_before REAL NOT NULL,
            result TEXT, text TEXT NOT NULL)""",
        "CREATE INDEX jobs_dispatch ON jobs (state, priority DESC, seq)",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            time REAL NOT NULL, topic TEXT NOT NULL, source TEXT NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX events_job ON events (job, seq)",
    ),
    1: ("ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0",),
}

_COLUMNS = (
    "seq, id, workflow, source, overrides, base_dir, work_dir, queues, priority, on_restart, "
    "state, detail, attempts, instance, submitted, started, ended, not_before, result"
)
_UPDATABLE = ("state", "detail", "attempts", "instance", "started", "ended", "not_before", "result")
# Served by jobs_dispatch alone: no scan of the table, no sort, stops after LIMIT rows.
_PENDING_SQL = (
    f"SELECT {_COLUMNS} FROM jobs WHERE state = ? ORDER BY priority DESC, seq ASC LIMIT ?"
)
_NEW = "id workflow source overrides base_dir work_dir queues priority on_restart state submitted"
_INSERT_SQL = (
    f"INSERT INTO jobs ({', '.join(_NEW.split())}, text, detail, attempts, not_before) "
    f"VALUES ({', '.join(':' + n for n in _NEW.split())}, :text, '', 0, 0.0)"
)
_SQLITE_MAGIC = b"SQLite format 3\x00"
_ELSEWHERE = "move it away or choose another --state-dir"


def _clean(value: Any) -> Any:
    """``value`` with NaN and infinities as None and keys as strings, ready for JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_clean(value), default=str, allow_nan=False, separators=(",", ":"))


def _record(row: sqlite3.Row) -> JobRecord:
    values = dict(zip(row.keys(), row, strict=True))
    values["overrides"] = tuple(json.loads(values["overrides"]))
    values["queues"] = tuple(json.loads(values["queues"]))
    values["state"] = JobState(values["state"])
    if values["result"] is not None:
        values["result"] = json.loads(values["result"])
    return JobRecord(**values)


def _not_found(job_id: str) -> JobNotFound:
    return JobNotFound(f"no job {job_id!r}; `aif ps` lists the jobs")


class JobStore:
    """The jobs and events of one daemon, in ``<state-dir>/controller.db``.

    Meant for one thread (the daemon's event loop): every call is a short synchronous
    transaction on indexed rows.
    """

    FILE_NAME = "controller.db"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._check_file()
        try:
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc
        db.row_factory = sqlite3.Row
        self._db: sqlite3.Connection | None = db
        try:
            with self._guard("open"):
                self._setup(db)
        except BaseException:
            self.close()
            raise

    @classmethod
    def read_only(cls, path: Path) -> JobStore:
        """The store as its daemon left it, opened read-only: ``aif ps``, ``status`` and
        ``logs`` while no daemon runs. Nothing is written, not even a schema upgrade, so
        a daemon that starts later finds the file as it was."""
        path = Path(path)
        if not path.is_file():
            raise StateError(f"no state database at {path}; no daemon ever ran on this --state-dir")
        store = cls.__new__(cls)
        store.path = path
        store._db = None
        try:
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise store._error(exc, "open (read-only)") from exc
        db.row_factory = sqlite3.Row
        store._db = db
        try:
            with store._guard("open (read-only)"):
                version = store._check_version(db)
            if version != SCHEMA_VERSION:
                raise StateError(
                    f"{path} has state schema {version}, this aif reads {SCHEMA_VERSION}; "
                    "start a daemon on it once (aif controller start) to upgrade it"
                )
        except BaseException:
            store.close()
            raise
        return store

    def _check_file(self) -> None:
        """Create the file owner-only (it holds users' workflows), or check it is SQLite's.

        SQLite would take a file shorter than its header for an empty database and
        overwrite it, so the header is checked here first.
        """
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            with os.fdopen(fd, "rb") as file:
                head = file.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StateError(
                f"cannot open the state database {self.path}: {exc.strerror}; "
                f"check its permissions, or choose another --state-dir"
            ) from exc
        if head and head != _SQLITE_MAGIC:
            raise StateError(f"{self.path} is not an aif state database; {_ELSEWHERE}")

    def _setup(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA busy_timeout = 5000")
        self._check_version(db)
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(
                f"{self.path}: SQLite cannot use WAL there (journal mode {mode!r}); "
                "choose a --state-dir on a local file system"
            )
        # WAL + NORMAL: a commit is written to the WAL before the call returns, so a killed
        # process loses nothing; only a power cut can undo the last commits (never corrupt).
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        with self._write("create the schema") as tx:
            version = self._check_version(tx)
            if version == 0:
                tables = [r[0] for r in tx.execute("SELECT name FROM sqlite_master")]
                if tables:
                    raise StateError(
                        f"{self.path} is a SQLite database but not aif's (it holds "
                        f"{', '.join(sorted(tables)[:5])}); {_ELSEWHERE}"
                    )
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    tx.execute(statement)
            if version != SCHEMA_VERSION:
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_version(self, db: sqlite3.Connection) -> int:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} was written by a newer aif (state schema {version}, this aif "
                f"knows up to {SCHEMA_VERSION}); upgrade aif, or choose another --state-dir"
            )
        return version

    def close(self) -> None:
        """Close the database; a second call does nothing."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error, doing: str) -> StateError:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            fix = f"the file is damaged or not aif's; {_ELSEWHERE}"
        elif "locked" in text or "busy" in text:
            fix = "another process holds it; stop the other aif daemon using this --state-dir"
        else:
            fix = "check the disk's free space and the file's permissions"
        return StateError(f"state database {self.path}: cannot {doing}: {text}; {fix}")

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The open connection, with every sqlite3 error turned into StateError."""
        if self._db is None:
            raise LifecycleError(f"the job store {self.path} is closed; open a new JobStore")
        try:
            yield self._db
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from exc

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._guard(doing) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # some errors (disk full) have already rolled back
                    db.execute("ROLLBACK")
                raise

    def _get(self, db: sqlite3.Connection, job_id: str) -> JobRecord:
        row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise _not_found(job_id)
        return _record(row)

    # -- jobs ----------------------------------------------------------------------------

    def add(self, job: NewJob, now: float | None = None) -> JobRecord:
        """Store a submitted job; once this returns, a ``kill -9`` cannot lose it."""
        if job.on_restart not in get_args(OnRestart):
            raise ValueError(f"on_restart must be 'requeue' or 'interrupt', not {job.on_restart!r}")
        values = {f.name: getattr(job, f.name) for f in fields(job)}
        values.update(overrides=_dumps(job.overrides), queues=_dumps(job.queues))
        values.update(state=(JobState.HELD if job.hold else JobState.QUEUED).value)
        values["submitted"] = time.time() if now is None else now
        with self._write(f"add job {job.id!r}") as db:
            try:
                db.execute(_INSERT_SQL, values)
            except sqlite3.IntegrityError as exc:
                raise StateError(
                    f"a job {job.id!r} already exists in {self.path}; submit it under a new id"
                ) from exc
            return self._get(db, job.id)

    def get(self, job_id: str) -> JobRecord:
        """The job with exactly this id; unknown -> JobNotFound."""
        with self._guard(f"read job {job_id!r}") as db:
            return self._get(db, job_id)

    def text(self, job_id: str) -> str:
        """The workflow YAML text the job was submitted with."""
        with self._guard(f"read job {job_id!r}") as db:
            row = db.execute("SELECT text FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise _not_found(job_id)
        return str(row[0])

    def resolve_id(self, prefix: str) -> str:
        """The id ``prefix`` names: an exact id, or the one id it begins."""
        with self._guard(f"look up job {prefix!r}") as db:
            # A range on the unique index, so no LIKE wildcards to escape and no scan.
            rows = db.execute(
                "SELECT id FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        ids = [str(r[0]) for r in rows]
        if prefix in ids:
            return prefix
        if not prefix or not ids:
            raise _not_found(prefix)
        if len(ids) == 1:
            return ids[0]
        more = ", ..." if len(ids) > 5 else ""
        raise JobNotFound(
            f"job id {prefix!r} is ambiguous, it begins {', '.join(ids[:5])}{more}; "
            "give more of the id"
        )

    def list(
        self,
        states: Iterable[JobState] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> builtins.list[JobRecord]:
        """Jobs in submission order (or newest first), optionally only those in ``states``."""
        sql, args = f"SELECT {_COLUMNS} FROM jobs", builtins.list[Any]()
        if states is not None:
            wanted = [JobState(s).value for s in states]
            sql += f" WHERE state IN ({', '.join('?' * len(wanted))})"
            args += wanted
        sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq ASC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._guard("list jobs") as db:
            return [_record(r) for r in db.execute(sql, args)]

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        """Change some of a job's mutable fields at once; returns the new record."""
        unknown = sorted(set(fields) - set(_UPDATABLE))
        if unknown:
            raise TypeError(
                f"JobStore.update() got unknown field(s) {', '.join(unknown)}; "
                f"it can change {', '.join(_UPDATABLE)}"
            )
        if "state" in fields:
            fields["state"] = JobState(fields["state"]).value
        if fields.get("result") is not None:
            fields["result"] = _dumps(fields["result"])
        with self._write(f"update job {job_id!r}") as db:
            if fields:
                assignments = ", ".join(f"{name} = ?" for name in fields)
                db.execute(
                    f"UPDATE jobs SET {assignments} WHERE id = ?", [*fields.values(), job_id]
                )
            return self._get(db, job_id)

    def pending(self, limit: int = 1000) -> builtins.list[JobRecord]:
        """QUEUED jobs in dispatch order: higher priority first, then first submitted."""
        with self._guard("read the queue") as db:
            return [_record(r) for r in db.execute(_PENDING_SQL, (JobState.QUEUED.value, limit))]

    def crashes(self, job_id: str) -> int:
        """How many daemons died while the job was live."""
        with self._guard(f"read job {job_id!r}") as db:
            row = db.execute("SELECT crashes FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise _not_found(job_id)
        return int(row[0])

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state, every state listed (zero included)."""
        out = dict.fromkeys((s.value for s in JobState), 0)
        with self._guard("count jobs") as db:
            for state, n in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                out[state] = n
        return out

    # -- events --------------------------------------------------------------------------

    def add_events(self, rows: Sequence[tuple[str, float, str, str, dict[str, Any]]]) -> None:
        """Store ``(job, time, topic, source, data)`` rows in one transaction."""
        with self._write(f"store {len(rows)} event(s)") as db:
            db.executemany(
                "INSERT INTO events (job, time, topic, source, data) VALUES (?, ?, ?, ?, ?)",
                [(job, t, topic, source, _dumps(data)) for job, t, topic, source, data in rows],
            )

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> builtins.list[EventRow]:
        """A job's events with ``seq > after``, oldest first: pass the last seq to follow."""
        with self._guard(f"read the events of job {job_id!r}") as db:
            rows = db.execute(
                "SELECT seq, job, time, topic, source, data FROM events "
                "WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        return [EventRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def prune_events(self, job_id: str, keep: int) -> int:
        """Delete all but the newest ``keep`` events of a job; returns how many went."""
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, not {keep}")
        with self._write(f"prune the events of job {job_id!r}") as db:
            # seq < NULL (fewer than ``keep`` events) matches nothing.
            cursor = db.execute(
                "DELETE FROM events WHERE job = ? AND seq < (SELECT seq FROM events "
                "WHERE job = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)"
                if keep
                else "DELETE FROM events WHERE job = ?",
                (job_id, job_id, keep - 1) if keep else (job_id,),
            )
            return cursor.rowcount

    # -- restart -------------------------------------------------------------------------

    def recover(
        self, now: float | None = None, *, crashed: bool = True, max_crashes: int = MAX_CRASHES
    ) -> builtins.list[JobRecord]:
        """Settle the jobs a dead daemon left live; call once as a daemon starts.

        ``crashed``: the daemon that left them died (counted per job; the
        ``max_crashes``-th time the job is quarantined). False: a daemon settles its own
        jobs as it exits cleanly.
        """
        now = time.time() if now is None else now
        live = [s.value for s in JobState if s.live]
        marks = ", ".join("?" * len(live))
        changed: builtins.list[JobRecord] = []
        with self._write("recover the jobs of the previous daemon") as db:
            rows = db.execute(
                f"SELECT id, state, on_restart, crashes FROM jobs WHERE state IN ({marks})", live
            ).fetchall()
            for job_id, was, on_restart, crashes in rows:
                crashes += crashed
                if crashed and crashes >= max_crashes:
                    state, ended = JobState.FAILED, now
                    detail = (
                        f"{QUARANTINED}: the controller died {crashes} times while this job "
                        f"was live (the last time it was {was}), so it is not run again; "
                        "`aif logs` shows how far it got: fix its workflow and submit it anew"
                    )
                elif on_restart == "requeue":
                    state, ended = JobState.QUEUED, None
                    detail = f"re-queued: the controller restarted while it was {was}"
                else:
                    state, ended = JobState.INTERRUPTED, now
                    detail = f"interrupted: the controller stopped while it was {was}"
                db.execute(
                    "UPDATE jobs SET state = ?, detail = ?, instance = NULL, crashes = ?, "
                    "ended = COALESCE(?, ended) WHERE id = ?",
                    (state.value, detail, crashes, ended, job_id),
                )
                data = _dumps({"job": state.value, "detail": detail})
                db.execute(
                    "INSERT INTO events (job, time, topic, source, data) "
                    "VALUES (?, ?, 'state', 'controller', ?)",
                    (job_id, now, data),
                )
                changed.append(self._get(db, job_id))
        return changed
