"""JobStore on real SQLite files: jobs, queue order, events, recovery, and kill -9."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from aif.daemon import state as state_module
from aif.daemon.state import EventRow, JobRecord, JobState, JobStore, NewJob
from aif.errors import JobNotFound, LifecycleError, StateError


def new_job(job_id: str, **fields: Any) -> NewJob:
    values: dict[str, Any] = {
        "workflow": job_id.rsplit("-", 1)[0],
        "source": f"/home/u/{job_id}.yml",
        "text": f"name: {job_id}\naims: {{}}\n",
        "overrides": ("aims.a.params.x=1",),
        "base_dir": "/home/u",
        "work_dir": "/home/u/runs",
        "queues": ("cuda", "cpu"),
    }
    values.update(fields)
    return NewJob(id=job_id, **values)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / JobStore.FILE_NAME


@pytest.fixture
def store(path: Path) -> Any:
    with JobStore(path) as opened:
        yield opened


def ids(records: list[JobRecord]) -> list[str]:
    return [r.id for r in records]


# -- states ----------------------------------------------------------------------------


def test_final_and_live_states() -> None:
    assert {s.value for s in JobState if s.final} == {
        "succeeded",
        "failed",
        "cancelled",
        "stopped",
        "interrupted",
    }
    assert {s.value for s in JobState if s.live} == {"starting", "running", "suspended", "stopping"}
    assert not JobState.QUEUED.final and not JobState.HELD.live
    assert JobState("queued") is JobState.QUEUED and str(JobState.QUEUED) == "queued"


# -- jobs ------------------------------------------------------------------------------


def test_add_get_text_and_to_json(store: JobStore) -> None:
    added = store.add(new_job("wf-00000001", priority=3, on_restart="interrupt"), now=100.0)
    assert added == store.get("wf-00000001")
    assert added.seq >= 1
    assert added.state is JobState.QUEUED and added.detail == ""
    assert (added.workflow, added.priority, added.on_restart) == ("wf", 3, "interrupt")
    assert added.overrides == ("aims.a.params.x=1",) and added.queues == ("cuda", "cpu")
    assert (added.attempts, added.instance, added.result) == (0, None, None)
    assert (added.submitted, added.started, added.ended, added.not_before) == (100.0, None, None, 0)
    assert store.text("wf-00000001") == "name: wf-00000001\naims: {}\n"

    data = added.to_json()
    assert json.loads(json.dumps(data)) == data
    assert "text" not in data
    assert data["state"] == "queued" and data["queues"] == ["cuda", "cpu"]


def test_hold_starts_held(store: JobStore) -> None:
    assert store.add(new_job("wf-00000001", hold=True)).state is JobState.HELD


def test_list_order_states_and_limit(store: JobStore) -> None:
    for n in range(4):
        store.add(new_job(f"wf-{n:08x}", priority=n))
    store.update("wf-00000002", state=JobState.RUNNING)
    assert ids(store.list()) == ["wf-00000000", "wf-00000001", "wf-00000002", "wf-00000003"]
    assert ids(store.list(newest_first=True, limit=2)) == ["wf-00000003", "wf-00000002"]
    assert ids(store.list(states=[JobState.RUNNING])) == ["wf-00000002"]
    assert ids(store.list(states=[JobState.QUEUED], limit=1)) == ["wf-00000000"]
    assert store.list(states=[]) == []


def test_duplicate_id_is_state_error(store: JobStore, path: Path) -> None:
    store.add(new_job("wf-00000001"))
    with pytest.raises(StateError, match="a job 'wf-00000001' already exists") as info:
        store.add(new_job("wf-00000001"))
    assert str(path) in str(info.value)
    assert len(store.list()) == 1


def test_unknown_job_is_job_not_found(store: JobStore) -> None:
    message = "no job 'nope'; `aif ps` lists the jobs"
    for call in (store.get, store.text, store.resolve_id):
        with pytest.raises(JobNotFound) as info:
            call("nope")
        assert str(info.value) == message
    with pytest.raises(JobNotFound):
        store.update("nope", detail="x")


def test_on_restart_is_checked(store: JobStore) -> None:
    with pytest.raises(ValueError, match="on_restart"):
        store.add(new_job("wf-00000001", on_restart="retry"))


def test_resolve_id_exact_prefix_ambiguous(store: JobStore) -> None:
    for job_id in ("train-0a1b2c3d", "train-0a1b2c3", "train-ff000000", "eval-12345678"):
        store.add(new_job(job_id))
    assert store.resolve_id("eval-12345678") == "eval-12345678"
    assert store.resolve_id("ev") == "eval-12345678"
    assert store.resolve_id("train-f") == "train-ff000000"
    # An exact id wins even when it also begins another id.
    assert store.resolve_id("train-0a1b2c3") == "train-0a1b2c3"
    with pytest.raises(JobNotFound) as info:
        store.resolve_id("train-")
    assert str(info.value) == (
        "job id 'train-' is ambiguous, it begins train-0a1b2c3, train-0a1b2c3d, "
        "train-ff000000; give more of the id"
    )
    with pytest.raises(JobNotFound, match="no job ''"):
        store.resolve_id("")
    # LIKE wildcards are plain characters here.
    with pytest.raises(JobNotFound, match="no job 'train%'"):
        store.resolve_id("train%")


def test_resolve_id_names_at_most_five(store: JobStore) -> None:
    for n in range(7):
        store.add(new_job(f"wf-{n:08x}"))
    with pytest.raises(JobNotFound) as info:
        store.resolve_id("wf")
    text = str(info.value)
    assert text.count("wf-0") == 5 and ", ..." in text


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("state", JobState.RUNNING, JobState.RUNNING),
        ("state", "failed", JobState.FAILED),
        ("detail", "waiting for a cuda instance", "waiting for a cuda instance"),
        ("attempts", 2, 2),
        ("instance", "cuda-0", "cuda-0"),
        ("started", 12.5, 12.5),
        ("ended", 13.5, 13.5),
        ("not_before", 99.0, 99.0),
        ("result", {"ok": True, "loss": math.nan, "x": [math.inf, 1]}, None),
    ],
)
def test_update_each_field(store: JobStore, field: str, value: Any, expected: Any) -> None:
    store.add(new_job("wf-00000001"))
    if field == "result":
        expected = {"ok": True, "loss": None, "x": [None, 1]}
    updated = store.update("wf-00000001", **{field: value})
    assert getattr(updated, field) == expected
    assert updated == store.get("wf-00000001")


def test_update_several_fields_and_back_to_none(store: JobStore) -> None:
    store.add(new_job("wf-00000001"))
    store.update("wf-00000001", instance="cpu-0", result={"a": 1}, attempts=1)
    back = store.update("wf-00000001", instance=None, result=None)
    assert (back.instance, back.result, back.attempts) == (None, None, 1)
    assert store.update("wf-00000001") == back


def test_update_unknown_field_is_type_error(store: JobStore) -> None:
    store.add(new_job("wf-00000001"))
    with pytest.raises(TypeError, match=r"unknown field.*priority, text"):
        store.update("wf-00000001", text="x", priority=9)


def test_pending_order_and_exclusions(store: JobStore) -> None:
    for job_id, priority in [("a-1", 0), ("b-2", 5), ("c-3", 0), ("d-4", 5), ("e-5", -1)]:
        store.add(new_job(job_id, priority=priority))
    store.add(new_job("f-6", priority=9, hold=True))
    store.add(new_job("g-7", priority=9))
    store.update("g-7", state=JobState.RUNNING)
    store.add(new_job("h-8", priority=9))
    store.update("h-8", state=JobState.FAILED)
    assert ids(store.pending()) == ["b-2", "d-4", "a-1", "c-3", "e-5"]
    assert ids(store.pending(limit=2)) == ["b-2", "d-4"]


def test_counts(store: JobStore) -> None:
    assert store.counts() == dict.fromkeys((s.value for s in JobState), 0)
    for n in range(3):
        store.add(new_job(f"wf-{n}"))
    store.add(new_job("wf-held", hold=True))
    store.update("wf-0", state=JobState.SUCCEEDED)
    counts = store.counts()
    assert [counts[s] for s in ("queued", "held", "succeeded", "running")] == [2, 1, 1, 0]
    assert sum(counts.values()) == 4


# -- events ----------------------------------------------------------------------------


def test_events_round_trip(store: JobStore) -> None:
    odd_keys: dict[Any, Any] = {"path": Path("/x"), 7: "int key"}
    store.add(new_job("wf-1"))
    store.add(new_job("wf-2"))
    store.add_events(
        [
            ("wf-1", 1.0, "state", "controller", {"job": "running"}),
            ("wf-2", 1.5, "log", "aim-a", {"line": "other job"}),
            ("wf-1", 2.0, "metric", "aim-a", {"loss": math.nan, "acc": [math.inf, 0.5]}),
            ("wf-1", 3.0, "log", "aim-b", odd_keys),
        ]
    )
    events = store.events("wf-1")
    assert [(e.time, e.topic, e.source) for e in events] == [
        (1.0, "state", "controller"),
        (2.0, "metric", "aim-a"),
        (3.0, "log", "aim-b"),
    ]
    assert all(isinstance(e, EventRow) and e.job == "wf-1" for e in events)
    assert events[1].data == {"loss": None, "acc": [None, 0.5]}
    assert events[2].data == {"path": "/x", "7": "int key"}
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert store.events("wf-1", after=events[0].seq) == events[1:]
    assert store.events("wf-1", after=events[0].seq, limit=1) == events[1:2]
    assert store.events("wf-1", after=events[-1].seq) == []
    assert store.events("nope") == []


def test_events_of_unknown_job_roll_back_the_batch(store: JobStore, path: Path) -> None:
    store.add(new_job("wf-1"))
    with pytest.raises(StateError, match="FOREIGN KEY") as info:
        store.add_events([("wf-1", 1.0, "log", "a", {}), ("nope", 1.0, "log", "a", {})])
    assert str(path) in str(info.value)
    assert store.events("wf-1") == []


def test_prune_events(store: JobStore) -> None:
    store.add(new_job("wf-1"))
    store.add(new_job("wf-2"))
    store.add_events(
        [(job, float(n), "log", "a", {"n": n}) for n in range(5) for job in ("wf-1", "wf-2")]
    )
    assert store.prune_events("wf-1", keep=10) == 0
    assert store.prune_events("wf-1", keep=2) == 3
    assert [e.data["n"] for e in store.events("wf-1")] == [3, 4]
    assert store.prune_events("wf-1", keep=0) == 2
    assert store.events("wf-1") == []
    assert len(store.events("wf-2")) == 5
    with pytest.raises(ValueError, match="keep"):
        store.prune_events("wf-1", keep=-1)


# -- recovery --------------------------------------------------------------------------


def test_recover_requeues_or_interrupts_live_jobs(store: JobStore) -> None:
    states = {
        "r-starting": ("requeue", JobState.STARTING),
        "r-suspended": ("requeue", JobState.SUSPENDED),
        "i-running": ("interrupt", JobState.RUNNING),
        "i-stopping": ("interrupt", JobState.STOPPING),
        "r-queued": ("requeue", JobState.QUEUED),
        "i-held": ("interrupt", JobState.HELD),
        "i-succeeded": ("interrupt", JobState.SUCCEEDED),
        "r-failed": ("requeue", JobState.FAILED),
    }
    for job_id, (policy, job_state) in states.items():
        store.add(new_job(job_id, on_restart=policy))
        store.update(job_id, state=job_state, instance="cpu-0", started=10.0, attempts=1)
    untouched = {r.id: r for r in store.list() if not r.state.live}

    changed = {r.id: r for r in store.recover(now=50.0)}

    assert set(changed) == {"r-starting", "r-suspended", "i-running", "i-stopping"}
    for job_id, record in changed.items():
        assert record == store.get(job_id)
        assert record.instance is None and record.attempts == 1
    requeued = changed["r-suspended"]
    assert (requeued.state, requeued.ended) == (JobState.QUEUED, None)
    assert requeued.detail == "re-queued: the controller restarted while it was suspended"
    interrupted = changed["i-running"]
    assert (interrupted.state, interrupted.ended) == (JobState.INTERRUPTED, 50.0)
    assert interrupted.detail == "interrupted: the controller stopped while it was running"
    for job_id in changed:
        [event] = store.events(job_id)
        assert (event.time, event.topic, event.source) == (50.0, "state", "controller")
        assert event.data == {"job": changed[job_id].state.value, "detail": changed[job_id].detail}
    for job_id, record in untouched.items():
        assert store.get(job_id) == record
        assert store.events(job_id) == []
    assert store.recover(now=60.0) == []


# -- the file --------------------------------------------------------------------------


def test_everything_survives_a_reopen(path: Path) -> None:
    with JobStore(path) as first:
        first.add(new_job("wf-1", text="name: wf\n" * 100))
        first.update("wf-1", state=JobState.SUCCEEDED, result={"ok": True}, ended=5.0)
        first.add_events([("wf-1", 1.0, "log", "a", {"n": 1})])
        before, events = first.list(), first.events("wf-1")
    with JobStore(path) as second:
        assert second.list() == before
        assert second.events("wf-1") == events
        assert second.text("wf-1") == "name: wf\n" * 100
        later = second.add(new_job("wf-2"))
        assert later.seq > before[0].seq


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from aif.daemon.state import JobStore, NewJob

    store = JobStore(Path(sys.argv[1]))
    for n in range(50):
        store.add(NewJob(f"wf-{n:08x}", "wf", "wf.yml", "name: wf\\n", (), ".", ".", ("cpu",)))
    print("ok", flush=True)
    time.sleep(60)
    """
)


def test_added_jobs_survive_kill_9(path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ok\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # The jobs were only in the write-ahead log: no clean close checkpointed them.
    assert path.with_name(path.name + "-wal").stat().st_size > 0
    with JobStore(path) as reopened:
        assert ids(reopened.list()) == [f"wf-{n:08x}" for n in range(50)]


@pytest.mark.parametrize("garbage", [b"x", b"not a database, just text\n" * 40])
def test_a_file_that_is_not_sqlite_is_refused_and_kept(path: Path, garbage: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(garbage)
    with pytest.raises(StateError) as info:
        JobStore(path)
    assert str(path) in str(info.value)
    assert "move it away or choose another --state-dir" in str(info.value)
    assert path.read_bytes() == garbage


def test_a_foreign_sqlite_database_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE photos (name TEXT)")
    other.close()
    with pytest.raises(StateError, match=r"SQLite database but not aif's.*photos") as info:
        JobStore(path)
    assert str(path) in str(info.value)


def test_a_newer_schema_is_refused(path: Path) -> None:
    JobStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {state_module.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match=r"newer aif.*upgrade aif") as info:
        JobStore(path)
    assert str(path) in str(info.value)


def test_files_are_owner_only(store: JobStore, path: Path) -> None:
    store.add(new_job("wf-1"))
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        assert stat.S_IMODE(path.with_name(name).stat().st_mode) == 0o600, name


def test_a_closed_store_says_so(path: Path) -> None:
    store = JobStore(path)
    store.close()
    store.close()
    with pytest.raises(LifecycleError, match="closed"):
        store.list()


def test_pending_reads_only_the_head_of_a_long_queue(store: JobStore, path: Path) -> None:
    big = "x: 1\n" * 2_000  # 10 kB of YAML per job, which pending() must not read
    for n in range(1000):
        store.add(new_job(f"wf-{n:08x}", priority=n % 3, text=big))
    head = store.pending(limit=10)
    assert len(head) == 10
    assert ids(head) == [f"wf-{n:08x}" for n in range(2, 30, 3)]
    with sqlite3.connect(path) as db:
        rows = db.execute(f"EXPLAIN QUERY PLAN {state_module._PENDING_SQL}", ("queued", 10))
        plan = " | ".join(str(row[-1]) for row in rows)
    db.close()
    assert "USING INDEX jobs_dispatch" in plan and "TEMP B-TREE" not in plan, plan
