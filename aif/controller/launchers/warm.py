"""Warm workers: preloaded processes that fork a host per AIM, and the launcher that asks.

A fresh ``python -m aif.host`` per AIM pays for importing torch and aihwkit every time
(seconds, against a fraction of a second of training), and a run whose validator and
simulator both need aihwkit pays it twice. A ``WorkerPool`` keeps one warm worker
(``python -m aif.host warm``, see :mod:`aif.host.warm`) that imported its AIM types'
heavy modules once and forks a fresh host for each AIM it is handed, over the same AIM
API as any child host, so registration, heartbeats, suspend, resume, stop, routing by
capability and the exit watch are the ones every placement has. Each AIM is a new
process: nothing of one job is visible to the next.

``WarmLauncher`` is the ``Launcher`` of such an AIM: ``launch`` asks the pool's worker
(started on first need, or being started) to fork the host and learns its pid;
``wait`` ends when the worker reports that the host exited (its exit status, e.g.
-9 when it was killed with SIGKILL, so the run fails or retries as its restart policy
says), or, should the worker itself die, when the host is gone; ``terminate`` waits
``grace``, then signals the host itself.

Who opts in: an AIM class with a ``warm_modules`` attribute (the modules its worker
imports before the first AIM; may be empty), placed ``process``, in a basic-profile
run of a controller with a pool: the daemon's, and ``aif run``'s own for its one run.
Secure runs and other AIMs keep a fresh ``python -m aif.host`` each. A worker is
replaced (in the background, preloaded, so the next AIM does not wait for imports)
after ``max_jobs`` forks, once its own resident memory passes ``max_rss_mib``, when a
run needs modules it lacks (the new one imports the union), and when it dies; a
replaced worker is retired once its last host has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aif.errors import AIFError, LifecycleError, MalformedMessage
from aif.host.warm import (
    AIMForked,
    AIMServed,
    ServeAIM,
    WorkerMessage,
    WorkerReady,
    frame_length,
    pack,
    unpack,
)

log = logging.getLogger("aif.workers")

#: AIMs a worker forks before it is replaced, unless told (``--worker-jobs``).
DEFAULT_MAX_JOBS: Final = 50
#: Resident MiB of a worker past which it is replaced, unless told (``--worker-memory``).
DEFAULT_MAX_RSS_MIB: Final = 2048.0
#: Seconds a new worker may take to import its preload (torch and aihwkit on a busy machine).
READY_TIMEOUT: Final = 180.0
#: Seconds a retired worker gets to exit after its stdin closed, before it is killed.
RETIRE_GRACE: Final = 10.0


@dataclass(eq=False)
class WarmWorker:
    """One worker process: the modules it has, the hosts it forked and those still alive."""

    proc: asyncio.subprocess.Process
    modules: frozenset[str]
    #: Forks asked for so far.
    jobs: int = 0
    rss_mib: float = 0.0
    #: Seconds its preload took.
    seconds: float = 0.0
    #: job → the fork's pid (once said) and its end report (None: the worker died first).
    _forked: dict[int, asyncio.Future[int | None]] = field(default_factory=dict)
    _served: dict[int, asyncio.Future[AIMServed | None]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None
    #: True once its stdout closed: it exited (or is exiting) and forks nothing more.
    gone: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def live(self) -> int:
        """Hosts it forked that have not ended."""
        return len(self._served)

    async def read(self) -> WorkerMessage | None:
        """The worker's next frame; None once its stdout closed (it exited or is exiting)."""
        assert self.proc.stdout is not None
        try:
            header = await self.proc.stdout.readexactly(4)
            return unpack(await self.proc.stdout.readexactly(frame_length(header)))
        except asyncio.IncompleteReadError:
            return None

    def follow(self, on_gone: Callable[[WarmWorker], None]) -> None:
        """Start routing its reports to the launchers that wait for them (once ready);
        ``on_gone`` is called when it has exited."""
        self._reader = asyncio.create_task(self._route(on_gone), name=f"warm-worker-{self.pid}")

    async def fork(self, job: ServeAIM) -> tuple[int | None, asyncio.Future[AIMServed | None]]:
        """Ask for a host; its pid (None: the worker died first) and its end report."""
        loop = asyncio.get_running_loop()
        forked: asyncio.Future[int | None] = loop.create_future()
        served: asyncio.Future[AIMServed | None] = loop.create_future()
        if self.gone:
            return None, served
        self._forked[job.job], self._served[job.job] = forked, served
        self.jobs += 1
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(pack(job))
        except (ConnectionError, RuntimeError):
            self._end_all()
        return await forked, served

    async def _route(self, on_gone: Callable[[WarmWorker], None]) -> None:
        try:
            while (message := await self.read()) is not None:
                if isinstance(message, AIMForked):
                    forked = self._forked.pop(message.job, None)
                    if forked is not None and not forked.done():
                        forked.set_result(message.pid)
                elif isinstance(message, AIMServed):
                    self.rss_mib = message.worker_rss_mib
                    served = self._served.pop(message.job, None)
                    if served is not None and not served.done():
                        served.set_result(message)
                else:
                    raise MalformedMessage(f"unexpected {message.op!r} frame")
        except MalformedMessage as exc:
            log.error("warm worker %d spoke out of turn (%s); stopping it", self.pid, exc)
            await self.kill()
        finally:
            self.gone = True
            self._end_all()
            on_gone(self)

    def _end_all(self) -> None:
        """The worker is gone: every wait on it ends (with None)."""
        for waits in (self._forked, self._served):
            for future in waits.values():
                if not future.done():
                    future.set_result(None)
            waits.clear()

    async def retire(self, grace: float = RETIRE_GRACE) -> None:
        """Close its stdin (it stops its hosts and exits), then force it after ``grace``."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            await self.kill()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader

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


def forking_supported() -> bool:
    """True where a warm worker can watch its forks: Linux 5.3 or later (``pidfd_open``).
    Elsewhere each ``process`` AIM gets a fresh ``python -m aif.host``, as without a pool."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


class WorkerPool:
    """A controller's warm worker: started on first need, replaced when it must be.

    One worker at a time takes new AIMs (the current one); a worker being replaced
    keeps serving the hosts it forked until they end, and is retired then.
    """

    def __init__(
        self,
        max_jobs: int = DEFAULT_MAX_JOBS,
        max_rss_mib: float | None = DEFAULT_MAX_RSS_MIB,
        *,
        ready_timeout: float = READY_TIMEOUT,
        warm_up: bool = True,
    ) -> None:
        """``max_rss_mib``: None or 0 for no memory limit; ``warm_up``: run the AIM
        types' warm-ups (``module:function`` entries of ``warm_modules``) in the worker
        before it forks, which pays when it forks many AIMs (a daemon) and not for one
        run's two."""
        if max_jobs < 1:
            raise LifecycleError(f"a warm worker must fork at least 1 AIM, not {max_jobs}")
        self.max_jobs = max_jobs
        self.max_rss_mib = max_rss_mib or None
        self.ready_timeout = ready_timeout
        self.warm_up = warm_up
        #: The worker new AIMs go to, once started (a task while it starts).
        self._current: asyncio.Task[WarmWorker] | None = None
        self._modules: frozenset[str] = frozenset()
        #: The modules of the last worker that started: what a failed start falls back
        #: to, so one AIM type whose module cannot be imported fails only its own runs.
        self._started_with: frozenset[str] = frozenset()
        #: Replaced workers whose hosts have not all ended yet.
        self._draining: set[WarmWorker] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- what a controller and a launcher call --------------------------------------------

    def prepare(self, modules: Iterable[str]) -> None:
        """Start (or, lacking ``modules``, replace) the worker now, so a run's AIMs find it
        preloaded: the controller calls this with the union of a run's warm modules."""
        wanted = frozenset(self._wanted(modules))
        if self._closed:
            return
        if self._current is None or not wanted <= self._modules:
            self._start(self._modules | wanted, "a run needs modules it lacks")

    async def fork(self, job: ServeAIM) -> tuple[WarmWorker, int, asyncio.Future[AIMServed | None]]:
        """Fork a host for ``job`` on the current worker: the worker, the host's pid, and
        the future of its end report. Raises ``LifecycleError`` when no worker can."""
        if self._closed:
            raise LifecycleError("the warm worker pool is closed; no new AIMs")
        job = dataclasses.replace(job, modules=self._wanted(job.modules))
        self.prepare(job.modules)
        for attempt in (1, 2):
            worker = await self._worker()
            pid, served = await worker.fork(job)
            if pid is not None:
                self._after_fork(worker)
                return worker, pid, served
            log.warning("warm worker %d died before it forked AIM %r", worker.pid, job.aim)
            if attempt == 1 and not self._closed:
                continue
        raise LifecycleError(f"warm workers died before they forked AIM {job.aim!r}")

    def ended(self, worker: WarmWorker) -> None:
        """One of ``worker``'s hosts ended: retire it if it was replaced and is now idle."""
        if worker in self._draining and worker.live == 0:
            self._draining.discard(worker)
            self._in_background(worker.retire(), f"retire-{worker.pid}")

    async def close(self) -> None:
        """Retire every worker (their runs are over by now); idempotent."""
        self._closed = True
        workers = list(self._draining)
        self._draining.clear()
        current, self._current = self._current, None
        started = _started(current)
        if started is not None:
            workers.append(started)
        elif current is not None:
            current.cancel()
            with contextlib.suppress(BaseException):
                await current
        await asyncio.gather(*(w.retire() for w in workers), return_exceptions=True)
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task

    # -- inside ---------------------------------------------------------------------------

    def _wanted(self, modules: Iterable[str]) -> list[str]:
        """``modules`` without the warm-ups (``module:function``) when they are off."""
        return [m for m in modules if self.warm_up or ":" not in m]

    async def _worker(self) -> WarmWorker:
        """The current worker, once ready (started here if there is none)."""
        if self._current is None:
            self._start(self._modules, "none is running")
        assert self._current is not None
        task = self._current
        try:
            worker = await asyncio.shield(task)
        except AIFError:
            if self._current is task:
                self._current = None  # the next AIM tries a new one
                self._modules = self._started_with
            raise
        self._started_with = self._started_with | worker.modules
        return worker

    def _after_fork(self, worker: WarmWorker) -> None:
        reason = None
        if worker.jobs >= self.max_jobs:
            reason = f"it forked {worker.jobs} AIM(s), the most a worker forks (--worker-jobs)"
        elif self.max_rss_mib is not None and worker.rss_mib > self.max_rss_mib:
            reason = (
                f"its memory grew to {worker.rss_mib:.0f} MiB, past {self.max_rss_mib:.0f} MiB "
                "(--worker-memory)"
            )
        if reason is not None and not self._closed:
            self._start(self._modules, reason)

    def _lost(self, worker: WarmWorker) -> None:
        """``worker`` exited (retired, or died): the next AIM gets a new one."""
        if _started(self._current) is worker:
            self._current = None
        self._draining.discard(worker)

    def _start(self, modules: frozenset[str], reason: str) -> None:
        """Start a new current worker with ``modules``; the old one drains, then retires."""
        old = self._current
        self._modules = modules
        self._current = asyncio.create_task(self._spawn(tuple(sorted(modules))), name="warm-start")
        if old is not None:
            # Hosts may still be forked on it (a launcher that awaited it): it drains.
            old.add_done_callback(lambda task: self._drain(task, reason))

    def _drain(self, task: asyncio.Task[WarmWorker], reason: str) -> None:
        """A replaced worker takes no new AIMs; it is retired once its hosts have ended."""
        worker = _started(task)
        if worker is None:
            return
        if self._closed:
            self._in_background(worker.retire(), f"retire-{worker.pid}")
            return
        log.info("replacing warm worker %d after %d AIM(s): %s", worker.pid, worker.jobs, reason)
        self._draining.add(worker)
        self.ended(worker)

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
                # Its own session: a Ctrl-C at the controller's terminal drains the
                # controller, which stops the runs and then the workers, instead of
                # killing the worker and its hosts mid-job.
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
                f"warm worker {proc.pid} did not start (exit status {status}); importing or "
                f"warming up {', '.join(modules) or 'its modules'} failed: its error is in "
                "the controller's log"
            )
        worker.modules, worker.seconds = frozenset(ready.modules), ready.seconds
        worker.follow(self._lost)
        log.info("warm worker %d ready in %.1f s (%s)", proc.pid, ready.seconds, ", ".join(modules))
        return worker

    def _in_background(self, work: Any, name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class WarmLauncher:
    """The launcher of an opted-in ``process`` AIM: a fork of a warm worker hosts it."""

    #: Job numbers, unique per controller process (the worker routes reports by them).
    _next_job = 0

    def __init__(
        self, pool: WorkerPool, controller: str, aim: str, workflow: str, modules: Sequence[str]
    ) -> None:
        WarmLauncher._next_job += 1
        self._pool = pool
        self._job = ServeAIM(
            job=WarmLauncher._next_job,
            controller=controller,
            aim=aim,
            workflow=workflow,
            modules=[*modules],
        )
        self._pid: int | None = None
        self._ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._follow: asyncio.Task[None] | None = None
        self.description = "warm worker"

    @property
    def pid(self) -> int | None:
        """The host's pid once forked."""
        return self._pid

    async def launch(self) -> None:
        """Have the worker fork the host; never raises (``wait`` says it ended)."""
        try:
            worker, pid, served = await self._pool.fork(self._job)
        except AIFError as exc:
            self.description = f"warm worker (none could fork it: {exc})"
            self._ended.set_result(1)
            return
        self._pid = pid
        self.description = f"process {pid}, forked by warm worker {worker.pid}"
        self._follow = asyncio.create_task(self._follow_host(worker, pid, served))

    async def _follow_host(
        self, worker: WarmWorker, pid: int, served: asyncio.Future[AIMServed | None]
    ) -> None:
        """Wait for the worker's report of the host's end, or for the host itself."""
        status = 1
        try:
            report = await served
            if report is not None:
                status = report.status
                log.info(
                    "warm worker %d: AIM %r (process %d) ended (status %d), peak %.1f MiB; "
                    "the worker %.1f MiB resident",
                    worker.pid,
                    self._job.aim,
                    pid,
                    report.status,
                    report.rss_mib,
                    report.worker_rss_mib,
                )
            else:  # the worker died: its hosts leave when they see it gone
                self.description += " (which died)"
                await _gone(pid)
        finally:
            self._pool.ended(worker)
            if not self._ended.done():
                self._ended.set_result(status)

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    async def terminate(self, grace: float) -> None:
        """Wait ``grace`` for the host to end; then SIGTERM it, and SIGKILL after 2 s."""
        pid = self._pid
        if pid is None or self._ended.done():
            return
        for sig, wait in ((None, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, None)):
            if sig is not None:
                log.warning("AIM host %d did not end; sending %s", pid, sig.name)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._ended), wait)
                return


def _started(task: asyncio.Task[WarmWorker] | None) -> WarmWorker | None:
    """The worker ``task`` started, once it has (None while starting, or if it failed)."""
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


async def _gone(pid: int) -> None:
    """Return once process ``pid`` (not this process's child) has exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
