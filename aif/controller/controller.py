"""The Controller: registers AIMs, wires their ports, runs AIWs and supervises them.

Phases, as in a long-running asyncio service: ``setup`` (bind the AIM API, start the
dispatcher and the heartbeat monitor) → ``start`` (accept workflows) → ``shutdown``
(stop every run, drain) → ``cleanup`` (close resources in reverse order, every error
collected into one ``CleanupError``). ``async with Controller(...)`` does all four.

The controller is never on the data path: it tells each AIM where its peers' readers
are, and records flow AIM to AIM. This module holds the phases, the User API and the
order of things; ``wiring`` computes transports and the setup and wire messages,
``supervision`` watches hosts and fails runs, ``host_messages`` says what each AIM
API message from a host means.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from aif.api import aim as aim_api
from aif.communication.addresses import tcp_host
from aif.communication.events import Event, EventPublisher
from aif.controller import host_messages, supervision, wiring
from aif.controller.launchers.local import ProcessLauncher
from aif.controller.launchers.placement import launcher_for
from aif.controller.launchers.ray import RayLauncher
from aif.controller.launchers.warm import WarmLauncher, WorkerPool
from aif.controller.plan import RunPlan, fork_heavy_aims, plan_run
from aif.controller.run import AIMHandle, AIMState, RunState, WorkflowResult, WorkflowRun
from aif.controller.secure_profile import SecureProfile, secure_keys
from aif.errors import AIFError, CleanupError, ConfigError, LifecycleError
from aif.security.curve import (
    AIM_API_DOMAIN,
    ControllerCurve,
    CurveKeys,
    Gatekeeper,
    serve_trusted,
)
from aif.security.gatekeeper import HandshakeWatch
from aif.security.keys import Identity
from aif.storage.paths import default_state_dir
from aif.workflow import ResolvedWorkflow

log = logging.getLogger("aif.controller")

EventListener = Callable[[Event], None]


class Phase(enum.Enum):
    """Controller lifecycle phases, in order."""

    CREATED = "created"
    SET_UP = "set up"
    RUNNING = "running"
    SHUT_DOWN = "shut down"
    CLOSED = "closed"


class Controller:
    """An MPAI-AIF Controller running in the current asyncio loop."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        tcp: str | None = None,
        heartbeat_interval: float = 0.5,
        ready_timeout: float = 120.0,
        stop_grace: float = 5.0,
        curve: ControllerCurve | None = None,
        identity: Identity | None = None,
        worker_pool: WorkerPool | None = None,
        ray_address: str | None = None,
    ) -> None:
        """``curve``: serve the tcp AIM API with CURVE and ask peers over CURVE (secure
        profile); ``identity``: the controller's, already loaded (else on first need);
        ``worker_pool``: warm workers for opted-in ``process`` AIMs of basic-profile runs
        (the daemon's; the controller closes it at cleanup, once every run is reaped);
        ``ray_address``: the Ray cluster of ``placement: ray`` AIMs (None: the one this
        process is connected to, else ``$RAY_ADDRESS`` or this machine's)."""
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.phase = Phase.CREATED
        self.heartbeat_interval = heartbeat_interval
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        if tcp is not None:
            tcp_host(tcp)  # a malformed address fails here, naming the right form
        self._tcp = tcp
        #: Interface the controller's own tcp readers bind: the one it listens on.
        self.tcp_host = "127.0.0.1"
        self.ctx: zmq.asyncio.Context | None = None
        self.endpoints: dict[str, str] = {}
        self.ipc_dir = Path()
        self.runs: dict[str, WorkflowRun] = {}
        self.malformed = 0
        self._listeners: list[EventListener] = []
        self._router: zmq.asyncio.Socket | None = None
        self._publisher: EventPublisher | None = None
        self._by_identity: dict[bytes, tuple[WorkflowRun, AIMHandle]] = {}
        self._cleanups: list[tuple[str, Callable[[], Awaitable[None] | None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._plans: dict[str, RunPlan] = {}
        #: The secure profile's identity and storage keys (loaded on the first secure run).
        self.secure = SecureProfile(self.state_dir, identity)
        self.curve = curve
        #: Each secure run's CURVE key pair for its tcp channels (``wiring``).
        #: True when the tcp AIM API is CURVE-encrypted (keys may then go to remote hosts).
        self.curve_api = False
        self.worker_pool = worker_pool
        self.ray_address = ray_address

    @classmethod
    def with_identity(
        cls, state_dir: Path | None = None, *, passphrase: str | None = None, **options: Any
    ) -> Controller:
        """A controller that serves the secure profile on tcp (remote AIMs, peers).

        Loads the identity of ``state_dir`` (``aif keys init``) and its CURVE side
        (:func:`~aif.controller.secure_profile.secure_keys`), so the tcp AIM API
        (``tcp=...``) is CURVE and only trusted hosts and peers get in; ``options``
        are the constructor's. Without tcp a plain ``Controller`` runs secure
        workflows too: it loads the identity on the first one.
        """
        state = Path(state_dir) if state_dir is not None else default_state_dir()
        identity, curve = secure_keys(state, passphrase)
        return cls(state, curve=curve, identity=identity, **options)

    # -- phases -----------------------------------------------------------------------

    async def setup(self) -> None:
        """Bind the AIM API and start the dispatcher and the heartbeat monitor."""
        self._require(Phase.CREATED, "setup", "create a new Controller")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ctx = self.ctx = zmq.asyncio.Context()
        if self.worker_pool is not None:
            self._on_cleanup("warm workers", self.worker_pool.close)
        self._on_cleanup("storage-use lock", self.secure.close)
        self._on_cleanup("zmq context", lambda: ctx.destroy(linger=0))
        self._on_cleanup("CURVE gatekeeper", lambda: Gatekeeper.stop_for(ctx))
        # ipc paths are limited to ~107 bytes, so sockets live in a short temp dir.
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="aif-"))
        self._on_cleanup("ipc dir", lambda: shutil.rmtree(self.ipc_dir, ignore_errors=True))
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router = router
        self._on_cleanup("AIM API socket", lambda: router.close(linger=0))
        self.endpoints["inproc"] = f"inproc://aif-controller-{uuid.uuid4().hex[:12]}"
        self.endpoints["ipc"] = f"ipc://{self.ipc_dir}/aim-api"
        router.bind(self.endpoints["inproc"])
        router.bind(self.endpoints["ipc"])
        if self._tcp is not None:
            if self.curve is not None:  # set before the tcp bind: inproc and ipc stay plain
                serve_trusted(ctx, router, self.curve, AIM_API_DOMAIN)
                self.curve_api = True
                watch = HandshakeWatch(router, "AIM API")
                self._on_cleanup("AIM API handshake watch", watch.close)
            try:
                router.bind(self._tcp)
            except zmq.ZMQError as exc:
                await self.cleanup()
                raise ConfigError(
                    f"the controller cannot listen on {self._tcp!r}: {exc}; "
                    "give tcp://HOST:PORT with an address of this machine (PORT * picks one)"
                ) from exc
            self.endpoints["tcp"] = router.getsockopt_string(zmq.LAST_ENDPOINT)
            self.tcp_host = tcp_host(self.endpoints["tcp"])
        publisher = EventPublisher(self.ctx, f"ipc://{self.ipc_dir}/events")
        self._publisher = publisher
        self._on_cleanup("event publisher", publisher.close)
        self.endpoints["events"] = publisher.endpoint
        self._tasks.append(asyncio.create_task(self._dispatch(), name="aim-api"))
        monitor = supervision.monitor_heartbeats(self.runs, self.heartbeat_interval, self._fail)
        self._tasks.append(asyncio.create_task(monitor, name="heartbeats"))
        self._on_cleanup("controller tasks", self._cancel_tasks)
        self.phase = Phase.SET_UP

    async def start(self) -> None:
        """Accept workflows."""
        self._require(Phase.SET_UP, "start", "call setup() first")
        self.phase = Phase.RUNNING

    async def shutdown(self) -> None:
        """Stop every run that is still going, give AIMs time to finish, then force."""
        if self.phase is not Phase.RUNNING:
            return
        self.phase = Phase.SHUT_DOWN
        live = [run for run in self.runs.values() if not run.state.ended]
        for run in live:
            await run.stop()
        for run in live:
            try:
                await run.wait(self.stop_grace)
            except TimeoutError:
                await self._fail(run, None, f"did not stop within {self.stop_grace:.0f} s")
        for run in live:
            await self._reap(run)

    async def cleanup(self) -> None:
        """Release every resource in reverse order; raise ``CleanupError`` with all errors."""
        errors: list[BaseException] = []
        while self._cleanups:
            name, action = self._cleanups.pop()
            try:
                outcome = action()
                if outcome is not None:
                    await outcome
            except Exception as exc:
                log.error("cleanup of %s failed: %s", name, exc)
                errors.append(exc)
        self.phase = Phase.CLOSED
        if errors:
            raise CleanupError(errors)

    async def __aenter__(self) -> Controller:
        await self.setup()
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.shutdown()
        finally:
            await self.cleanup()

    # -- the User API (in-process) ----------------------------------------------------

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every event; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def launch(
        self,
        resolved: ResolvedWorkflow,
        *,
        run_id: str | None = None,
        base_dir: str | None = None,
        work_dir: str | None = None,
    ) -> WorkflowRun:
        """Start an AIW instance and return its handle once every AIM runs.

        ``run_id`` names the instance (the daemon passes its job id; default: a fresh
        ``<name>-<hex>``); ``base_dir`` is where relative paths in parameters are read
        from (default: the workflow file's folder) and ``work_dir`` where results for
        the user go (default: the working directory).
        """
        self._require(Phase.RUNNING, "launch a workflow", "use 'async with Controller()'")
        secure = resolved.workflow.profile == "secure"
        if secure:
            self.secure.check(resolved, curve_api=self.curve_api)
        plan = plan_run(resolved)
        if base_dir is not None or work_dir is not None:
            plan = dataclasses.replace(
                plan, base_dir=base_dir or plan.base_dir, work_dir=work_dir or plan.work_dir
            )
        run_id = run_id or f"{plan.name}-{uuid.uuid4().hex[:8]}"
        if run_id in self.runs:
            raise LifecycleError(f"a workflow run with id {run_id!r} is already known")
        assert self.ctx is not None
        # A secure run's keys and trusted code must not meet a process that outlives it.
        pool = None if secure else self.worker_pool
        if pool is not None:
            plan = fork_heavy_aims(plan)
            warm = [a.warm_modules for a in plan.aims.values() if a.placement == "process"]
            if any(modules is not None for modules in warm):
                # One preloaded worker forks all of them: start it (with every module the
                # run's AIMs need) before the first launcher asks.
                pool.prepare(m for modules in warm for m in modules or ())
        handles = {
            name: AIMHandle(
                name=name,
                type=aim.type,
                placement=aim.placement,
                heartbeat_timeout=aim.heartbeat_timeout,
                launcher=launcher_for(
                    aim,
                    self.ctx,
                    self.endpoints,
                    run_id,
                    self.curve,
                    pool,
                    ray_address=self.ray_address,
                    work_dir=plan.work_dir,
                ),
            )
            for name, aim in plan.aims.items()
        }
        run = WorkflowRun(run_id, plan.name, handles, self._signal_all)
        self.runs[run_id] = run
        if secure:
            self.secure.begin(run_id)
        self._emit(Event.run_state(run_id, RunState.STARTING.value))
        try:
            await self._bring_up(run, plan)
        except BaseException:
            if not run.state.ended:
                await self._fail(run, None, "start-up was interrupted")
            await self._reap(run)
            raise
        return run

    async def run_workflow(
        self, resolved: ResolvedWorkflow, timeout: float | None = None
    ) -> WorkflowResult:
        """Run an AIW to its end and return the result (the ``aif run`` path)."""
        return await self.wait_run(await self.launch(resolved), timeout)

    async def abort(self, run: WorkflowRun, reason: str) -> None:
        """End a run now: every AIM gets ABORT; the run fails with ``reason``."""
        await self._fail(run, None, reason)

    async def wait_run(self, run: WorkflowRun, timeout: float | None = None) -> WorkflowResult:
        """Wait for a launched run to end (stopping it after ``timeout``), then reap it."""
        try:
            result = await run.wait(timeout)
        except TimeoutError:
            await run.stop()
            with contextlib.suppress(TimeoutError):
                await run.wait(self.stop_grace)
            if not run.state.ended:
                await self._fail(run, None, f"timed out after {timeout} s")
            result = run.result()
        await self._reap(run)
        return result

    def forget(self, run: WorkflowRun) -> None:
        """Drop an ended, reaped run, so a long-lived daemon holds only live ones."""
        if not run.state.ended:
            raise LifecycleError(f"cannot forget workflow run {run.id}: it is {run.state.value}")
        self.runs.pop(run.id, None)

    # -- bringing a run up -----------------------------------------------------------

    async def _bring_up(self, run: WorkflowRun, plan: RunPlan) -> None:
        self._plans[run.id] = plan
        # At once: processes start side by side (a warm worker forks while the
        # controller asks for the next), and each registers as soon as it is up.
        await asyncio.gather(*(handle.launcher.launch() for handle in run.handles.values()))
        for handle in run.handles.values():
            if isinstance(handle.launcher, ProcessLauncher | WarmLauncher):
                handle.pid = handle.launcher.pid
            elif isinstance(handle.launcher, RayLauncher):
                handle.node = handle.launcher.node
            run.tasks.append(asyncio.create_task(supervision.watch_exit(run, handle, self._fail)))
        if not await self._until(run, AIMState.READY, "become ready"):
            return
        assert self.ctx is not None
        curve = CurveKeys.of(self.secure.channel_keys(run.id))
        collectors = wiring.open_collectors(self.ctx, self.ipc_dir, run, plan, self.tcp_host, curve)
        for name, handle in run.handles.items():
            await self._send(handle, wiring.wire_message(run, plan, name, collectors))
        if not await self._until(run, AIMState.WIRED, "connect its outputs"):
            for reader in collectors.values():
                reader.close()
            return
        for handle in run.handles.values():
            handle.control = wiring.open_control(self.ctx, handle, curve)
        feeders = wiring.open_feeders(self.ctx, run, plan, curve)
        run.state = RunState.RUNNING
        for handle in run.handles.values():
            await self._send(handle, aim_api.Start())
        for port, (writer, records) in feeders.items():
            run.tasks.append(
                asyncio.create_task(wiring.feed(run, port, writer, records, self._fail))
            )
        completion = supervision.await_completion(run, collectors, self._emit)
        run.tasks.append(asyncio.create_task(completion))
        self._emit(Event.run_state(run.id, RunState.RUNNING.value))

    async def _until(self, run: WorkflowRun, state: AIMState, what: str) -> bool:
        """Wait until every AIM of the run reached ``state``; False when the run failed."""
        timeout, tcp = self.ready_timeout, self.endpoints.get("tcp")
        key = self.curve.pair.public if self.curve is not None else None
        return await supervision.wait_for_state(run, state, what, timeout, tcp, self._fail, key)

    # -- supervision ------------------------------------------------------------------

    async def _fail(self, run: WorkflowRun, aim: str | None, cause: str) -> None:
        """Fail the run (first cause wins) and make every AIM of it stop."""
        await supervision.fail_run(run, aim, cause, emit=self._emit, send=self._send)

    async def _reap(self, run: WorkflowRun) -> None:
        """After a run ended: let hosts exit, force stragglers, close writers."""
        await supervision.reap_run(run, self.stop_grace)
        self._plans.pop(run.id, None)
        self.secure.end(run.id)
        for identity, (owner, _) in list(self._by_identity.items()):
            if owner is run:
                del self._by_identity[identity]

    async def _signal_all(self, run: WorkflowRun, code: int) -> None:
        for handle in run.handles.values():
            if handle.control is not None and not handle.state.ended:
                await handle.control.send_signal(code)
        self._emit(Event.run_state(run.id, run.state.value))

    # -- the AIM API ---------------------------------------------------------------------

    async def _dispatch(self) -> None:
        assert self._router is not None
        while True:
            received = await host_messages.receive(self._router)
            if received is None:
                self.malformed += 1
                continue
            identity, message = received
            try:
                await self._handle(identity, message)
            except Exception:
                log.exception("AIM API: error while handling %s", message.op)

    async def _handle(self, identity: bytes, message: aim_api.HostMessage) -> None:
        if isinstance(message, aim_api.Hello):
            await self._hello(identity, message)
            return
        owner = self._by_identity.get(identity)
        if owner is None:
            if not isinstance(message, aim_api.Heartbeat | aim_api.Bye):
                log.warning("AIM API: %s from unregistered AIM %r ignored", message.op, message.aim)
            return
        run, handle = owner
        handle.heard(message, time.monotonic())
        if isinstance(message, aim_api.Failed):
            await self._fail(run, handle.name, message.error)
        else:
            host_messages.apply_report(run, handle, message, self._emit)

    async def _hello(self, identity: bytes, hello: aim_api.Hello) -> None:
        match = host_messages.find_waiting_handle(self.runs, hello)
        if match is None:
            await self._refuse(identity, hello, host_messages.refusal_reason(hello))
            return
        run, handle = match
        plan = self._plans[run.id]
        mismatch = host_messages.type_mismatch(handle.name, plan.aims[handle.name], hello)
        if mismatch is not None:
            # A wrong host does not end the run: the right one may still come (hot-plug).
            await self._refuse(identity, hello, mismatch)
            return
        self._by_identity[identity] = (run, handle)
        host_messages.register(run, handle, identity, hello, self._emit)
        setup = wiring.setup_message(
            plan,
            handle.name,
            run.id,
            state_dir=self.state_dir,
            ipc_dir=self.ipc_dir,
            heartbeat_interval=self.heartbeat_interval,
            tcp_host=self.tcp_host,
            channel_keys=self.secure.channel_keys(run.id),
            storage=self.secure.storage_for(run.id, handle.name),
        )
        await self._send(handle, setup)

    async def _refuse(self, identity: bytes, hello: aim_api.Hello, reason: str) -> None:
        """Tell a host no AIM of any run is waiting for it, and why; it then exits."""
        log.warning("AIM API: refused %r: %s", hello.aim, reason)
        assert self._router is not None
        terminate = aim_api.pack(aim_api.Terminate(reason=reason))
        with contextlib.suppress(zmq.ZMQError):
            await self._router.send_multipart([identity, terminate])

    async def _send(self, handle: AIMHandle, message: Any) -> None:
        assert self._router is not None and handle.identity is not None
        await self._router.send_multipart([handle.identity, aim_api.pack(message)])

    # -- helpers ------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")
        if self._publisher is not None:
            try:
                self._publisher.publish_nowait(event)
            except AIFError as exc:  # data that cannot cross: keep the run going, say so
                log.warning("event from %s not published: %s", event.source, exc)
            except Exception:  # a publishing bug must never drop the message being handled
                log.exception("event from %s not published", event.source)

    def _require(self, phase: Phase, action: str, hint: str) -> None:
        if self.phase is not phase:
            raise LifecycleError(
                f"cannot {action}: the controller is {self.phase.value!r}, not "
                f"{phase.value!r}; {hint}"
            )

    def _on_cleanup(self, name: str, action: Callable[[], Awaitable[None] | None]) -> None:
        self._cleanups.append((name, action))

    async def _cancel_tasks(self) -> None:
        for run in self.runs.values():
            if not run.state.ended:
                await self._fail(run, None, "the controller is closing")
            await self._reap(run)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
