"""Warm workers: a pool of preloaded host processes, and the launcher that borrows one.

The daemon runs many short jobs; a fresh ``python -m aif.host`` per job pays for
importing torch and aihwkit every time (seconds, against a fraction of a second of
training). A ``WorkerPool`` keeps such processes (``python -m aif.host warm``, see
:mod:`aif.host.warm`) alive between jobs: each imported its AIM types' heavy modules
once, and hosts one fresh AIM per job, over the same AIM API as any child host, so
registration, heartbeats, suspend, resume, stop, routing by capability and the exit
watch are the ones every placement has. ``WarmLauncher`` is the ``Launcher`` of such an
AIM: ``launch`` borrows a worker (an idle one, else one being started, else a new one)
and hands it the job; ``wait`` ends when the worker says its host ended, or when the
worker process itself died (its exit status then, e.g. killed by SIGKILL, and the run
fails or retries as its restart policy says); ``terminate`` waits ``grace`` and then
kills the worker, since a host that does not end must not be reused.

Who opts in: an AIM class with a ``warm_modules`` attribute (the modules its worker
imports before the first job; may be empty), placed ``process``, in a basic-profile
run of a daemon with a pool. Secure runs, ``aif run`` and other AIMs keep a fresh
process each. A worker is recycled (its stdin closed, then killed if it lingers) after
``max_jobs`` jobs, after any job whose host did not end well (failed, aborted, killed,
or that left threads running), and once its resident memory after a job passes
``max_rss_mib``; a recycled or dead worker is replaced in the background, preloaded with
the same modules, so the next job does not wait for the imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aif.errors import AIFError, LifecycleError, MalformedMessage
from aif.host.warm import (
    AIMServed,
    ServeAIM,
    WorkerMessage,
    WorkerReady,
    frame_length,
    pack,
    unpack,
)

log = logging.getLogger("aif.workers")

#: Jobs a worker serves before it is recycled, unless told (``--worker-jobs``).
DEFAULT_MAX_JOBS: Final = 50
#: Resident MiB after a job past which a worker is recycled, unless told (``--worker-memory``).
DEFAULT_MAX_RSS_MIB: Final = 2048.0
#: Seconds a new worker may take to import its preload (torch and aihwkit on a busy machine).
READY_TIMEOUT: Final = 180.0
#: Seconds a retired worker gets to exit after its stdin closed, before it is killed.
RETIRE_GRACE: Final = 5.0


@dataclass(eq=False)
class WarmWorker:
    """One worker process: its pid, the modules it has, the jobs it served."""

    proc: asyncio.subprocess.Process
    modules: frozenset[str]
    jobs: int = 0
    rss_mib: float = 0.0
    #: Seconds its preload took.
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def read(self) -> WorkerMessage | None:
        """The worker's next frame; None once its stdout closed (it exited or is exiting)."""
        assert self.proc.stdout is not None
        try:
            header = await self.proc.stdout.readexactly(4)
            return unpack(await self.proc.stdout.readexactly(frame_length(header)))
        except asyncio.IncompleteReadError:
            return None

    def send(self, message: ServeAIM) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(pack(message))

    async def retire(self, grace: float = RETIRE_GRACE) -> None:
        """Close its stdin (it exits between jobs), then force it after ``grace``."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
            return
        except TimeoutError:
            pass
        await self.kill()

    async def kill(self) -> None:
        """SIGTERM, then SIGKILL after 2 s; returns once it is reaped."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 2.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class WorkerPool:
    """The daemon's warm workers: hand out, take back, recycle and replace.

    Workers are generic: any opted-in AIM type runs on any worker, which imports what
    it lacks; a job prefers a worker that already has its modules. There are as many
    workers as jobs ran at once (the daemon's instances bound that), plus the idle ones.
    """

    def __init__(
        self,
        max_jobs: int = DEFAULT_MAX_JOBS,
        max_rss_mib: float | None = DEFAULT_MAX_RSS_MIB,
        *,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        """``max_rss_mib``: None or 0 for no memory limit."""
        if max_jobs < 1:
            raise LifecycleError(f"a warm worker must serve at least 1 job, not {max_jobs}")
        self.max_jobs = max_jobs
        self.max_rss_mib = max_rss_mib or None
        self.ready_timeout = ready_timeout
        self._idle: list[WarmWorker] = []
        self._busy: set[WarmWorker] = set()
        #: Replacements being started, not yet claimed by a job.
        self._spawning: list[asyncio.Task[WarmWorker]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: Totals since the pool opened.
        self.spawned = 0
        self.recycled = 0

    # -- what a launcher calls ------------------------------------------------------------

    async def acquire(self, modules: Sequence[str]) -> WarmWorker:
        """A worker for a job whose AIM needs ``modules``: idle, being started, or new."""
        if self._closed:
            raise LifecycleError("the warm worker pool is closed; no new jobs")
        wanted = set(modules)
        self._idle = [w for w in self._idle if w.proc.returncode is None]  # died while idle
        if self._idle:
            fitting = [w for w in self._idle if wanted <= w.modules] or self._idle
            worker = fitting[0]
            self._idle.remove(worker)
        elif self._spawning:
            worker = await self._spawning.pop(0)
        else:
            worker = await self._spawn(tuple(modules))
        if self._closed:  # closed while this one started
            await worker.retire()
            raise LifecycleError("the warm worker pool is closed; no new jobs")
        self._busy.add(worker)
        return worker

    def release(self, worker: WarmWorker, served: AIMServed | None) -> None:
        """Take a worker back after a job (``served``: its report; None: it died or hung)."""
        self._busy.discard(worker)
        if served is not None:
            log.info(
                "warm worker %d: job %d ended (status %d), %.1f MiB resident",
                worker.pid,
                worker.jobs,
                served.status,
                served.rss_mib,
            )
        reason = self._recycle_reason(worker, served)
        if reason is None:
            self._idle.append(worker)
            return
        self.recycled += 1
        log.info("recycling warm worker %d after %d job(s): %s", worker.pid, worker.jobs, reason)
        self._in_background(worker.retire(), f"retire-{worker.pid}")
        if not self._closed:
            self._replace(tuple(sorted(worker.modules)))

    async def close(self) -> None:
        """Retire every worker (busy ones too: their runs are over by now); idempotent."""
        self._closed = True
        spawning, self._spawning = self._spawning, []
        for task in spawning:
            task.cancel()
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(w.retire() for w in workers), return_exceptions=True)
        for task in [*spawning, *self._background]:
            with contextlib.suppress(BaseException):
                await task

    def listing(self) -> list[dict[str, Any]]:
        """Every worker now: pid, state, jobs served, resident MiB after its last job."""
        rows = [(w, "busy") for w in self._busy] + [(w, "idle") for w in self._idle]
        return [
            {"pid": w.pid, "state": s, "jobs": w.jobs, "rss_mib": round(w.rss_mib, 1)}
            for w, s in rows
        ]

    # -- inside ---------------------------------------------------------------------------

    def _recycle_reason(self, worker: WarmWorker, served: AIMServed | None) -> str | None:
        if served is None:
            code = worker.proc.returncode
            return f"it ended mid-job (exit status {code})" if code is not None else "it hung"
        worker.rss_mib = served.rss_mib
        if self._closed:
            return "the pool is closing"
        if served.status != 0:
            return f"its AIM host ended with status {served.status} (failed or aborted)"
        if not served.clean:
            return served.note or "its job left state behind"
        if worker.jobs >= self.max_jobs:
            return f"it served {worker.jobs} job(s), the most a worker serves (--worker-jobs)"
        if self.max_rss_mib is not None and served.rss_mib > self.max_rss_mib:
            return (
                f"its memory grew to {served.rss_mib:.0f} MiB, past {self.max_rss_mib:.0f} MiB "
                "(--worker-memory)"
            )
        return None

    def _replace(self, modules: tuple[str, ...]) -> None:
        """Start a worker in the background; it goes idle once ready, unless a job takes it."""
        task = asyncio.create_task(self._spawn(modules), name="warm-worker-start")
        self._spawning.append(task)
        task.add_done_callback(self._replacement_ready)

    def _replacement_ready(self, task: asyncio.Task[WarmWorker]) -> None:
        if task not in self._spawning:
            return  # a job claimed it (or the pool closed)
        self._spawning.remove(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("a replacement warm worker did not start: %s", error)
            return
        worker = task.result()
        if self._closed:
            self._in_background(worker.retire(), f"retire-{worker.pid}")
        else:
            self._idle.append(worker)

    async def _spawn(self, modules: tuple[str, ...]) -> WarmWorker:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = [sys.executable, "-m", "aif.host", "warm", "--preload", ",".join(modules)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                # Its own session: a Ctrl-C at the daemon's terminal drains the daemon, which
                # stops the jobs and then the workers, instead of killing them mid-job.
                start_new_session=True,
            )
        except OSError as exc:
            raise LifecycleError(f"cannot start a warm worker: {exc}") from exc
        worker = WarmWorker(proc, frozenset(modules))
        try:
            ready = await asyncio.wait_for(worker.read(), self.ready_timeout)
        except BaseException as exc:
            await worker.kill()
            if isinstance(exc, TimeoutError | MalformedMessage):
                raise LifecycleError(
                    f"warm worker {proc.pid} did not get ready within {self.ready_timeout:g} s"
                    f"{f': {exc}' if str(exc) else ''}"
                ) from exc
            raise
        if not isinstance(ready, WorkerReady):
            status = await proc.wait() if ready is None else None
            await worker.kill()
            raise LifecycleError(
                f"warm worker {proc.pid} did not start (exit status {status}); importing "
                f"{', '.join(modules) or 'its modules'} failed? see the daemon's log"
            )
        worker.modules, worker.seconds = frozenset(ready.modules), ready.seconds
        self.spawned += 1
        log.info("warm worker %d ready in %.1f s (%s)", proc.pid, ready.seconds, ", ".join(modules))
        return worker

    def _in_background(self, work: Any, name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class WarmLauncher:
    """The launcher of an opted-in ``process`` AIM: a warm worker hosts it for one run."""

    def __init__(
        self, pool: WorkerPool, controller: str, aim: str, workflow: str, modules: Sequence[str]
    ) -> None:
        self._pool = pool
        self._job = ServeAIM(controller=controller, aim=aim, workflow=workflow, modules=[*modules])
        self._worker: WarmWorker | None = None
        self._ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._follow: asyncio.Task[None] | None = None
        self.description = "warm worker"

    @property
    def pid(self) -> int | None:
        """The worker's pid once launched."""
        return self._worker.pid if self._worker is not None else None

    async def launch(self) -> None:
        """Borrow a worker and hand it the AIM; never raises (``wait`` says it ended)."""
        try:
            worker = await self._pool.acquire(self._job.modules)
        except AIFError as exc:
            self.description = f"warm worker (none could start: {exc})"
            self._ended.set_result(1)
            return
        self._worker = worker
        worker.jobs += 1
        self.description = f"warm worker {worker.pid} (job {worker.jobs} of it)"
        worker.send(self._job)
        self._follow = asyncio.create_task(self._follow_job(worker), name=f"warm-{worker.pid}")

    async def _follow_job(self, worker: WarmWorker) -> None:
        """Wait for the worker's report or its death; give it back; end ``wait``."""
        served: AIMServed | None = None
        status = 1
        try:
            message = await worker.read()
            if isinstance(message, AIMServed):
                served, status = message, message.status
            else:  # it died (or spoke out of turn): its exit status is how the host ended
                if message is not None:
                    await worker.kill()
                status = await worker.proc.wait()
        except MalformedMessage:
            await worker.kill()
            status = await worker.proc.wait()
        finally:
            self._pool.release(worker, served)
            if not self._ended.done():
                self._ended.set_result(status)

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    async def terminate(self, grace: float) -> None:
        """Wait ``grace`` for the host to end; then kill the worker (it is not reused)."""
        worker = self._worker
        if worker is None or self._ended.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._ended), grace)
            return
        log.warning(
            "warm worker %d: its AIM did not end within %g s; killing it", worker.pid, grace
        )
        await worker.kill()
        await asyncio.shield(self._ended)
