"""Jobs of the controller daemon: submit, queue, launch, watch, retry, record.

A job is one submitted AIW instance. Its life is written to the state database at each
step (``state.JobStore``), before the step is acted on where that matters, so a
``kill -9`` of the daemon at any moment leaves a record the next daemon can settle:
queued jobs stay queued, live ones are re-queued or marked interrupted by the
workflow's ``on_restart``. The embedded ``Controller`` runs each attempt; this module
decides what an attempt's end means:

* succeeded, or stopped by the user → final;
* failed, with the failing AIM's ``restart: on-failure`` and restarts left → queued
  again after a doubling back-off, on another instance when there is one;
* failed otherwise → final, with the cause;
* stopped because the daemon drains → re-queued or interrupted by ``on_restart``.

Checking a workflow (YAML parse, resolve, validate) is pure Python that a hostile text
can make take seconds, so it never runs on the event loop: a worker thread does it
(:class:`WorkflowChecks`), at most :data:`CHECK_WORKERS` at once with at most
:data:`MAX_PENDING_CHECKS` submissions waiting (past that, ``submit`` is told to try
again), and a check that takes more than :data:`CHECK_TIMEOUT` seconds is answered as
failed. The loader bounds the work itself (size, nodes, depth: ``aif.inputs.safe_yaml``),
so an abandoned check ends on its own.

No AIM code runs on the daemon's loop unless it is known to be light: an AIM a job
places ``inproc`` runs in a child process instead, unless its type is one of
:data:`LIGHT_INPROC` (aif's built-in sources and sinks, whose work is bounded by the
workflow text and by what they receive). One AIM that computes or allocates for long
(a huge record, a busy loop) then stalls or kills only its own process, which the
controller supervises, never the daemon. ``--inproc allow`` keeps every ``inproc`` as
written (one trusted user); ``--inproc process`` moves the light ones too.

Events of running jobs go to the database in batches (one transaction per
``FLUSH_INTERVAL``), so ``aif logs`` reads them while and after a job runs, and the
daemon keeps no per-job history in memory: a thousand queued jobs cost a thousand rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from aif.communication.event_payloads import JobStateChanged, LogLine, RunStateChanged
from aif.communication.events import CONTROLLER, Event
from aif.controller.controller import Controller
from aif.controller.plan import plan_run
from aif.controller.run import AIMHandle, WorkflowResult, WorkflowRun
from aif.daemon.event_log import EventLog
from aif.daemon.outcomes import Outcome, result_json, settle
from aif.daemon.scheduler import Instance, Scheduler, job_queues
from aif.daemon.state import JobRecord, JobState, JobStore, NewJob
from aif.errors import AIFError, DaemonError, LifecycleError, WorkflowError
from aif.store.aim_types import StoreTypes
from aif.workflow import ResolvedWorkflow, load_workflow_text, resolve
from aif.workflow.loader import workflow_from_data
from aif.workflow.parse_worker import ParseProcess

log = logging.getLogger("aif.daemon")

#: Events kept per job once it has ended (the newest); older progress is pruned.
EVENTS_KEPT = 20_000
#: Seconds between dispatch passes when nothing wakes the dispatcher (back-off timers).
DISPATCH_TICK = 0.5
#: Waiting jobs read from the database per dispatch pass.
DISPATCH_WINDOW = 500
#: AIM types the daemon lets run ``inproc`` (in its own loop) under ``--inproc light``.
LIGHT_INPROC = frozenset({"source", "relay", "checksum", "collect"})
#: What the daemon does with ``placement: inproc`` AIMs: keep the light ones (the
#: default), keep all, or run all in processes.
InprocPolicy = Literal["light", "allow", "process"]

#: Places a job's AIMs for the instance it runs on: ``placer(resolved, instance)``.
Placer = Callable[[ResolvedWorkflow, Instance], ResolvedWorkflow]

#: Worker threads that check workflows (the event loop never does).
CHECK_WORKERS = 2
#: Submissions whose workflow may wait for a check at once; more are refused as busy.
MAX_PENDING_CHECKS = 8
#: Seconds a workflow check may take before the submission (or start) fails.
CHECK_TIMEOUT = 60.0


@dataclass
class _Attempt:
    """One attempt in flight: its run once launched, and why it is being ended."""

    job: str
    instance: Instance
    task: asyncio.Task[None] | None = None
    run: WorkflowRun | None = None
    cancelled: bool = False
    restarts: dict[str, int] = field(default_factory=dict)


def load_job(
    text: str,
    source: str,
    overrides: tuple[str, ...] | list[str],
    store_types: StoreTypes | None = None,
    inproc: InprocPolicy = "allow",
    parser: ParseProcess | None = None,
) -> ResolvedWorkflow:
    """Load and resolve a submitted workflow (raises ``WorkflowError``/``RegistryError``);
    ``inproc``: which ``placement: inproc`` AIMs stay in the daemon's process;
    ``parser``: the child process that reads the YAML (None: this process does)."""
    if parser is None:
        workflow = load_workflow_text(text, source=source, overrides=overrides)
    else:
        data, source_map = parser.parse(text, source, overrides)
        workflow = workflow_from_data(data, source_map, source)
    moved = [
        name
        for name, decl in workflow.aims.items()
        if decl.placement == "inproc"
        and (inproc == "process" or (inproc == "light" and decl.type not in LIGHT_INPROC))
    ]
    if moved:
        aims = {
            name: decl.model_copy(update={"placement": "process"}) if name in moved else decl
            for name, decl in workflow.aims.items()
        }
        workflow = workflow.model_copy(update={"aims": aims})
    return resolve(workflow, store_types=store_types)


class WorkflowChecks:
    """Workflow checks in worker threads, bounded in number and in time."""

    def __init__(
        self,
        workers: int = CHECK_WORKERS,
        pending: int = MAX_PENDING_CHECKS,
        timeout: float = CHECK_TIMEOUT,
        inproc: InprocPolicy = "light",
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aif-check")
        #: The YAML of submissions is read in a child process, one per check thread: a
        #: hostile text then neither holds the daemon's GIL nor grows its memory.
        self._parsers = [ParseProcess(timeout) for _ in range(workers)]
        self._free: queue.SimpleQueue[ParseProcess] = queue.SimpleQueue()
        for parser in self._parsers:
            self._free.put(parser)
        self.inproc: InprocPolicy = inproc
        self.max_pending = pending
        self.timeout = timeout
        #: Checks handed to the pool and not yet finished (a timed-out one still counts
        #: until its thread ends: that is the work the daemon is really doing).
        self.pending = 0

    async def load(
        self,
        text: str,
        source: str,
        overrides: tuple[str, ...] | list[str],
        store_types: StoreTypes | None,
        *,
        refuse_when_busy: bool = True,
    ) -> ResolvedWorkflow:
        """``load_job`` in a worker thread; ``DaemonError`` when too many wait (with
        ``refuse_when_busy``), ``WorkflowError`` when it takes longer than ``timeout``."""
        if refuse_when_busy and self.pending >= self.max_pending:
            raise DaemonError(
                f"the controller is busy checking {self.pending} workflows; submit again shortly"
            )
        loop = asyncio.get_running_loop()
        future = self._pool.submit(self._load, text, source, tuple(overrides), store_types)
        self.pending += 1

        def done(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody counts
                loop.call_soon_threadsafe(self._done)

        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise WorkflowError(
                f"{source}: checking the workflow took more than {self.timeout:g} s; "
                "simplify it, or move bulk data to a data file"
            ) from None

    def _load(
        self, text: str, source: str, overrides: tuple[str, ...], store_types: StoreTypes | None
    ) -> ResolvedWorkflow:
        """In a check thread: ``load_job`` with a parser child of its own."""
        parser = self._free.get()
        try:
            return load_job(text, source, overrides, store_types, self.inproc, parser)
        finally:
            self._free.put(parser)

    def _done(self) -> None:
        self.pending -= 1

    def close(self) -> None:
        """Drop the checks not yet begun; those running end on their own (bounded); end
        the parser children."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for parser in self._parsers:
            parser.close()


def aim_json(handle: AIMHandle) -> dict[str, Any]:
    """An AIM of a running job, for ``aif status`` and ``aif aims``."""
    return {
        "name": handle.name,
        "type": handle.type,
        "placement": handle.placement,
        "state": handle.state.value,
        "pid": handle.pid,
        "host": handle.launcher.description,
        "error": handle.error,
        "capabilities": dict(handle.ready.capabilities) if handle.ready is not None else {},
    }


def job_json(record: JobRecord) -> dict[str, Any]:
    """A job as the User API returns it."""
    data = record.to_json()
    data["final"] = record.state.final
    return data


class JobManager:
    """The daemon's jobs: the User API verbs on them, and the dispatcher that runs them."""

    def __init__(
        self,
        store: JobStore,
        controller: Controller,
        scheduler: Scheduler,
        inproc: InprocPolicy = "light",
        placer: Placer | None = None,
    ) -> None:
        """``placer``: where a job's AIMs run on the instance it got (``on_ray``: its
        heavy AIM as a Ray actor on a Ray instance); None: as the workflow says."""
        self.store = store
        self.placer = placer
        self.controller = controller
        #: Where ``store:`` AIMs of submitted workflows are installed and fetched from.
        self.store_types = StoreTypes.default(controller.state_dir)
        self.scheduler = scheduler
        self._attempts: dict[str, _Attempt] = {}
        self.events = EventLog(store)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.draining = False
        self.checks = WorkflowChecks(inproc=inproc)
        self._unsubscribe = controller.subscribe(self._on_event)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Settle what a previous daemon left, then begin dispatching."""
        for record in self.store.recover():
            log.warning("job %s: %s", record.id, record.detail)
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="dispatch"),
            asyncio.create_task(self.events.run(), name="event-flush"),
        ]

    async def drain(self, timeout: float) -> None:
        """Stop dispatching, ask every live job to stop, wait, then abort what is left."""
        self.draining = True
        attempts = list(self._attempts.values())
        for attempt in attempts:
            if attempt.run is not None and not attempt.run.state.ended:
                with contextlib.suppress(AIFError):
                    await attempt.run.stop()
        waiting = [a.task for a in attempts if a.task is not None]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=timeout)
            for attempt in attempts:
                if attempt.task in late and attempt.run is not None:
                    await self.controller.abort(attempt.run, "the controller is shutting down")
            if late:
                await asyncio.wait(late, timeout=timeout)
        # Jobs still starting (no run yet) are settled by their own tasks or, if the
        # daemon dies first, by the next daemon's recovery.

    async def close(self) -> None:
        """Stop the background tasks, write the last events, and settle the jobs still
        live (starting ones the drain did not reach) as a clean exit: no crash counted."""
        self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        for attempt in list(self._attempts.values()):
            if attempt.task is not None:
                attempt.task.cancel()
        for task in [*self._tasks, *(a.task for a in self._attempts.values() if a.task)]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.checks.close()
        self.events.flush()
        with contextlib.suppress(AIFError):
            for record in self.store.recover(crashed=False):
                log.info("job %s: %s", record.id, record.detail)

    # -- the User API verbs -------------------------------------------------------------

    async def submit(
        self,
        text: str,
        source: str,
        overrides: list[str],
        base_dir: str,
        work_dir: str,
        priority: int = 0,
        hold: bool = False,
    ) -> dict[str, Any]:
        """Check the workflow as ``aif validate`` does (in a worker thread), then queue
        it; returns the job."""
        if self.draining:
            raise LifecycleError("the controller is shutting down and takes no new jobs")
        resolved = await self.checks.load(text, source, overrides, self.store_types)
        if self.draining:
            raise LifecycleError("the controller is shutting down and takes no new jobs")
        wf = resolved.workflow
        if wf.profile == "secure":
            # Refused now, with the reason, rather than as a failed job later.
            self.controller.secure.check(resolved, curve_api=self.controller.curve_api)
        record = self.store.add(
            NewJob(
                id=f"{wf.name}-{uuid.uuid4().hex[:8]}",
                workflow=wf.name,
                source=source,
                text=text,
                overrides=tuple(overrides),
                base_dir=base_dir,
                work_dir=work_dir,
                queues=job_queues(resolved),
                priority=priority,
                on_restart=wf.on_restart,
                hold=hold,
            )
        )
        self._record(record.id, JobStateChanged.named(record.state.value, queues=record.queues))
        for warning in resolved.warnings:
            self._record(record.id, LogLine(warning, "warning"))
        self._wake.set()
        return self._json(record)

    def jobs(self, states: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
        """Listed jobs: the given states, or every unfinished job plus the last 20 ended."""
        if states is not None:
            try:
                wanted = [JobState(s) for s in states]
            except ValueError as exc:
                known = ", ".join(s.value for s in JobState)
                raise LifecycleError(f"{exc}; job states are: {known}") from exc
            return [self._json(r) for r in self.store.list(wanted, limit)]
        open_ = [s for s in JobState if not s.final]
        ended = self.store.list([s for s in JobState if s.final], 20, newest_first=True)
        records = self.store.list(open_, limit) + ended[::-1]
        return [self._json(r) for r in sorted(records, key=lambda r: r.seq)]

    def status(self, job: str) -> dict[str, Any]:
        """A job, why it waits, and its AIMs while it runs."""
        record = self.store.get(self.store.resolve_id(job))
        out: dict[str, Any] = {"job": self._json(record), "aims": []}
        if record.state is JobState.QUEUED:
            out["waiting"] = self._waiting_reason(record)
        attempt = self._attempts.get(record.id)
        if attempt is not None and attempt.run is not None:
            out["aims"] = [aim_json(h) for h in attempt.run.handles.values()]
        return out

    def logs(self, job: str, after: int, limit: int) -> dict[str, Any]:
        """Events of a job after ``after``; ``final`` once the job ended and all are written."""
        job_id = self.store.resolve_id(job)
        self.events.flush()
        rows = self.store.events(job_id, after, limit)
        record = self.store.get(job_id)
        return {
            "job": job_id,
            "state": record.state.value,
            "final": record.state.final and len(rows) < limit,
            "events": [
                {"seq": r.seq, "time": r.time, "topic": r.topic, "source": r.source, "data": r.data}
                for r in rows
            ],
        }

    async def suspend(self, job: str) -> dict[str, Any]:
        """Hold a queued job, or pause a running one."""
        record = self.store.get(self.store.resolve_id(job))
        if record.state is JobState.QUEUED:
            return self._set(record.id, JobState.HELD, "held by the user; `aif resume` queues it")
        attempt = self._attempts.get(record.id)
        if record.state is JobState.RUNNING and attempt is not None and attempt.run is not None:
            await attempt.run.suspend()
            return self._set(record.id, JobState.SUSPENDED, "suspended by the user")
        raise LifecycleError(
            f"cannot suspend job {record.id}: it is {record.state.value}; only queued and "
            "running jobs can be suspended"
        )

    async def resume(self, job: str) -> dict[str, Any]:
        """Queue a held job again, or continue a suspended one."""
        record = self.store.get(self.store.resolve_id(job))
        if record.state is JobState.HELD:
            updated = self._set(record.id, JobState.QUEUED, "")
            self._wake.set()
            return updated
        attempt = self._attempts.get(record.id)
        if record.state is JobState.SUSPENDED and attempt is not None and attempt.run is not None:
            await attempt.run.resume()
            return self._set(record.id, JobState.RUNNING, "")
        raise LifecycleError(
            f"cannot resume job {record.id}: it is {record.state.value}; only held and "
            "suspended jobs can be resumed"
        )

    async def cancel(self, job: str) -> dict[str, Any]:
        """End a job: a waiting one never starts, a live one is stopped (results kept)."""
        record = self.store.get(self.store.resolve_id(job))
        if record.state.final:
            raise LifecycleError(f"job {record.id} has already ended ({record.state.value})")
        attempt = self._attempts.get(record.id)
        if attempt is None:
            return self._set(
                record.id, JobState.CANCELLED, "cancelled by the user", ended=time.time()
            )
        attempt.cancelled = True
        updated = self._set(record.id, JobState.STOPPING, "cancelling")
        if attempt.run is not None:
            run = attempt.run
            await run.stop()
            # held in _tasks: the loop keeps only a weak reference to a task
            force = asyncio.create_task(self._force(run), name=f"cancel-{run.id}")
            self._tasks.append(force)
            force.add_done_callback(self._tasks.remove)
        elif attempt.task is not None:
            attempt.task.cancel()  # still starting: it ends now, whatever it waits for
        return updated

    def aims(self) -> dict[str, Any]:
        """Instances and the AIMs of the jobs running now."""
        hosts = [
            {"job": a.job, "instance": a.instance.name, **aim_json(h)}
            for a in self._attempts.values()
            if a.run is not None
            for h in a.run.handles.values()
        ]
        return {"instances": self.scheduler.to_json(), "hosts": hosts}

    # -- dispatching -------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), DISPATCH_TICK)
            self._wake.clear()
            if self.draining:
                continue
            try:
                self._dispatch_once(time.time())
            except AIFError as exc:  # the database failed: say so, try again next tick
                log.error("dispatch: %s", exc)

    def _dispatch_once(self, now: float) -> None:
        for record in self.store.pending(DISPATCH_WINDOW):
            if record.id in self._attempts or record.not_before > now:
                continue
            avoid = record.instance if record.attempts else None
            instance = self.scheduler.place(record.queues, avoid)
            if instance is None:
                reason = self._waiting_reason(record)
                if reason != record.detail and not record.detail.startswith("retrying"):
                    self.store.update(record.id, detail=reason)
                continue
            self.scheduler.assign(record.id, instance)
            attempt = _Attempt(record.id, instance)
            self._attempts[record.id] = attempt
            self._set(
                record.id,
                JobState.STARTING,
                f"starting on {instance.name}",
                attempts=record.attempts + 1,
                instance=instance.name,
                started=now,
            )
            attempt.task = asyncio.create_task(self._run(record, attempt), name=record.id)

    def _waiting_reason(self, record: JobRecord) -> str:
        if record.not_before > time.time():
            return record.detail
        return self.scheduler.waiting_reason(record.queues)

    async def _run(self, record: JobRecord, attempt: _Attempt) -> None:
        try:
            await self._attempt(record, attempt)
        except asyncio.CancelledError:
            if not attempt.cancelled or attempt.run is not None:
                raise
            # cancelled by the user while it started (a Ray placement may wait long)
            self._set(record.id, JobState.CANCELLED, "cancelled by the user", ended=time.time())
        except Exception as exc:  # a bug here must not leave the job live forever
            log.exception("job %s", record.id)
            self._set(record.id, JobState.FAILED, f"internal error: {exc}", ended=time.time())
        finally:
            self.scheduler.release(record.id)
            self._attempts.pop(record.id, None)
            self._wake.set()

    async def _attempt(self, record: JobRecord, attempt: _Attempt) -> None:
        try:
            resolved = await self.checks.load(
                self.store.text(record.id),
                record.source,
                record.overrides,
                self.store_types,
                refuse_when_busy=False,
            )
            if self.placer is not None:
                resolved = self.placer(resolved, attempt.instance)
            run = await self.controller.launch(
                resolved, run_id=record.id, base_dir=record.base_dir, work_dir=record.work_dir
            )
        except AIFError as exc:
            self._set(record.id, JobState.FAILED, str(exc), ended=time.time())
            return
        attempt.run = run
        where = attempt.instance.name
        for name, handle in run.handles.items():
            if handle.node is not None:
                where += f", AIM {name!r} on Ray node {handle.node}"
                line = LogLine(
                    f"AIM {name!r} runs on Ray node {handle.node}",
                    values={"aim": name, **handle.node.to_json()},
                )
                self._record(record.id, line)
        if attempt.cancelled:
            await run.stop()
        elif not run.state.ended:
            self._set(record.id, JobState.RUNNING, f"running on {where}")
        result = await self.controller.wait_run(run)
        self.controller.forget(run)
        self._finish(record, attempt, resolved, result)

    def _finish(
        self,
        record: JobRecord,
        attempt: _Attempt,
        resolved: ResolvedWorkflow,
        result: WorkflowResult,
    ) -> None:
        now = time.time()
        run = attempt.run
        failed = None
        if run is not None and run.failed_aim is not None:
            failed = plan_run(resolved).aims.get(run.failed_aim)
        outcome = settle(
            result.state,
            result.error,
            cancelled=attempt.cancelled,
            draining=self.draining,
            on_restart=record.on_restart,
            failed=failed,
            restarts=self.store.get(record.id).attempts - 1,
        )
        if outcome.state is JobState.SUCCEEDED:
            from aif.aims.analog.run_outcome import job_counts, no_job_completed

            classes = {name: aim.cls for name, aim in resolved.aims.items()}
            problem = no_job_completed(job_counts(classes, result.results), run_ok=True)
            if problem is not None:  # every AIM ended well, but the sweep produced nothing
                outcome = Outcome(JobState.FAILED, problem)
        fields: dict[str, Any] = {"result": result_json(result)}
        if outcome.final:
            fields["ended"] = now
        if outcome.retry_in is not None:
            fields["not_before"] = now + outcome.retry_in
            self._record(record.id, LogLine(outcome.detail, "warning"))
        self._set(record.id, outcome.state, outcome.detail, **fields)
        self.store.prune_events(record.id, EVENTS_KEPT)

    async def _force(self, run: WorkflowRun) -> None:
        """Abort a cancelled run that did not stop within the controller's grace."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.wait(), self.controller.stop_grace)
        if not run.state.ended:
            await self.controller.abort(run, "cancelled by the user")

    def _json(self, record: JobRecord) -> dict[str, Any]:
        """A job for the User API, with ``queue``: the one of its queues this daemon serves."""
        data = job_json(record)
        served = [q for q in record.queues if self.scheduler.serves(q)]
        data["queue"] = served[0] if served else record.queues[0]
        return data

    # -- records and events ----------------------------------------------------------------

    def _set(self, job: str, state: JobState, detail: str, **fields: Any) -> dict[str, Any]:
        record = self.store.update(job, state=state, detail=detail, **fields)
        self._record(job, JobStateChanged.named(state.value, detail))
        return self._json(record)

    def _record(self, job: str, payload: JobStateChanged | LogLine) -> None:
        """Log an event of the daemon's own about ``job`` (its source is the controller)."""
        self.events.add(job, payload.topic, CONTROLLER, payload.to_data())

    def _on_event(self, event: Event) -> None:
        """Log a controller event of a running job; follow its run's suspend and resume.

        The event is stored as it came (its ``data`` map); only a run's own state is read,
        as a typed payload, so whatever an AIM sends cannot upset the job's record.
        """
        if event.workflow is None or event.workflow not in self._attempts:
            return
        self.events.add(event.workflow, event.topic, event.source, event.data, event.time)
        payload = event.payload
        if event.source != CONTROLLER or not isinstance(payload, RunStateChanged):
            return
        if payload.state in ("suspended", "running"):
            state = JobState.SUSPENDED if payload.state == "suspended" else JobState.RUNNING
            with contextlib.suppress(AIFError):
                record = self.store.get(event.workflow)
                if record.state in (JobState.RUNNING, JobState.SUSPENDED):
                    self.store.update(event.workflow, state=state)
