"""The Controller: registers AIMs, wires their ports, runs AIWs and supervises them.

Phases, as in a long-running asyncio service: ``setup`` (bind the AIM API, start the
dispatcher and the heartbeat monitor) → ``start`` (accept workflows) → ``shutdown``
(stop every run, drain) → ``cleanup`` (close resources in reverse order, every error
collected into one ``CleanupError``). ``async with Controller(...)`` does all four.

The controller is never on the data path: it tells each AIM where its peers' readers
are, and records flow AIM to AIM. It picks each channel's transport from where the
two ends live: ``inproc`` inside the controller's process, ``ipc`` on this machine,
``tcp`` when a remote host is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from aif.communication.channel import ChannelEndpoints, ChannelReader, ChannelWriter
from aif.communication.events import Event, EventPublisher
from aif.communication.ports import EndOfStream, Record, SignalCode
from aif.controller import aim_api
from aif.controller.launcher import (
    InprocLauncher,
    Launcher,
    ProcessLauncher,
    RemoteLauncher,
    describe_exit,
)
from aif.controller.plan import RunPlan, plan_run
from aif.controller.run import AIMHandle, AIMState, RunState, WorkflowResult, WorkflowRun
from aif.errors import (
    AIFError,
    AIMFailed,
    CleanupError,
    ConfigError,
    LifecycleError,
    MalformedMessage,
)
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


def default_state_dir() -> Path:
    """``$AIF_STATE_DIR``, else ``$XDG_DATA_HOME/aif``, else ``~/.local/share/aif``."""
    if env := os.environ.get("AIF_STATE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aif"


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
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.phase = Phase.CREATED
        self.heartbeat_interval = heartbeat_interval
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self._tcp = tcp
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

    # -- phases -----------------------------------------------------------------------

    async def setup(self) -> None:
        """Bind the AIM API and start the dispatcher and the heartbeat monitor."""
        self._require(Phase.CREATED, "setup", "create a new Controller")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ctx = zmq.asyncio.Context()
        self._on_cleanup("zmq context", lambda: self._term_context())
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
            router.bind(self._tcp)
            self.endpoints["tcp"] = router.getsockopt_string(zmq.LAST_ENDPOINT)
        publisher = EventPublisher(self.ctx, f"ipc://{self.ipc_dir}/events")
        self._publisher = publisher
        self._on_cleanup("event publisher", publisher.close)
        self.endpoints["events"] = publisher.endpoint
        self._tasks.append(asyncio.create_task(self._dispatch(), name="aim-api"))
        self._tasks.append(asyncio.create_task(self._monitor(), name="heartbeats"))
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

    async def launch(self, resolved: ResolvedWorkflow) -> WorkflowRun:
        """Start an AIW instance and return its handle once every AIM runs."""
        self._require(Phase.RUNNING, "launch a workflow", "use 'async with Controller()'")
        if resolved.workflow.profile != "basic":
            raise ConfigError(
                f"workflow {resolved.workflow.name!r} asks for profile "
                f"{resolved.workflow.profile!r}, which this controller does not provide yet; "
                "use profile: basic"
            )
        plan = plan_run(resolved)
        run_id = f"{plan.name}-{uuid.uuid4().hex[:8]}"
        handles = {
            name: AIMHandle(
                name=name,
                type=aim.type,
                placement=aim.placement,
                heartbeat_timeout=aim.heartbeat_timeout,
                launcher=self._launcher(aim, run_id),
            )
            for name, aim in plan.aims.items()
        }
        run = WorkflowRun(run_id, plan.name, handles, self._signal_all)
        self.runs[run_id] = run
        self._emit("state", "controller", run_id, {"run": "starting"})
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

    # -- bringing a run up -----------------------------------------------------------

    def _launcher(self, aim: Any, run_id: str) -> Launcher:
        assert self.ctx is not None
        if aim.placement == "inproc":
            return InprocLauncher(self.ctx, self.endpoints["inproc"], aim.name, run_id)
        if aim.placement == "process":
            return ProcessLauncher(self.endpoints["ipc"], aim.name, run_id)
        return RemoteLauncher()

    async def _bring_up(self, run: WorkflowRun, plan: RunPlan) -> None:
        self._plans[run.id] = plan
        for handle in run.handles.values():
            await handle.launcher.launch()
            if isinstance(handle.launcher, ProcessLauncher):
                handle.pid = handle.launcher.pid
            run.tasks.append(asyncio.create_task(self._watch_exit(run, handle)))
        if not await self._until(run, AIMState.READY, "become ready"):
            return
        collectors = self._open_collectors(run, plan)
        for name, handle in run.handles.items():
            await self._send(handle, self._wire_message(run, plan, name, collectors))
        if not await self._until(run, AIMState.WIRED, "connect its outputs"):
            for reader in collectors.values():
                reader.close()
            return
        assert self.ctx is not None
        for handle in run.handles.values():
            assert handle.ready is not None
            ctrl = handle.ready.control
            handle.control = ChannelWriter(
                self.ctx,
                "control",
                ChannelEndpoints(normal=ctrl.normal, high=ctrl.high),
                queue_size=16,
            )
        feeders = self._open_feeders(run, plan)
        run.state = RunState.RUNNING
        for handle in run.handles.values():
            await self._send(handle, aim_api.Start())
        for port, (writer, records) in feeders.items():
            run.tasks.append(asyncio.create_task(self._feed(run, port, writer, records)))
        run.tasks.append(asyncio.create_task(self._await_completion(run, collectors)))
        self._emit("state", "controller", run.id, {"run": "running"})

    async def _until(self, run: WorkflowRun, state: AIMState, what: str) -> bool:
        """Wait until every AIM of the run reached ``state``; False when the run failed."""
        order = list(AIMState)
        deadline = time.monotonic() + self.ready_timeout
        for handle in run.handles.values():
            while order.index(handle.state) < order.index(state) and not run.state.ended:
                handle.changed.clear()
                left = deadline - time.monotonic()
                if left <= 0:
                    await self._fail(run, handle.name, self._late(handle, what))
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(handle.changed.wait(), left)
            if run.state.ended:
                return False
        return True

    def _late(self, handle: AIMHandle, what: str) -> str:
        """Why an AIM is late, and for a remote one that never came, how to start it."""
        text = (
            f"did not {what} within {self.ready_timeout:g} s "
            f"({handle.launcher.description}, state {handle.state.value})"
        )
        if isinstance(handle.launcher, RemoteLauncher) and handle.state is AIMState.LAUNCHING:
            address = self.endpoints.get("tcp")
            if address is None:
                text += "; remote AIMs need a controller listening on tcp (Controller(tcp=...))"
            else:
                text += (
                    f"; start it with: aif aim serve {handle.type} --controller {address} "
                    f"--name {handle.name}"
                )
        return text

    def _transport(self, *placements: str) -> str:
        if "remote" in placements:
            return "tcp"
        if all(p in ("inproc", "controller") for p in placements):
            return "inproc"
        return "ipc"

    def _open_collectors(self, run: WorkflowRun, plan: RunPlan) -> dict[str, ChannelReader]:
        """Readers in the controller for the AIW's declared outputs."""
        assert self.ctx is not None
        collectors: dict[str, ChannelReader] = {}
        for ref in plan.outputs:
            aim = ref.split(".", 1)[0]
            reader = ChannelReader(
                self.ctx,
                ref,
                self._transport("controller", plan.aims[aim].placement),  # type: ignore[arg-type]
                ipc_dir=self.ipc_dir,
            )
            collectors[ref] = reader
            run.outputs[ref] = []
        return collectors

    def _open_feeders(
        self, run: WorkflowRun, plan: RunPlan
    ) -> dict[str, tuple[ChannelWriter, list[Any]]]:
        """Writers from the controller into the AIM ports the AIW's ``inputs`` feed."""
        assert self.ctx is not None
        feeders = {}
        for ref, records in plan.inputs.items():
            aim, port = ref.split(".", 1)
            ready = run.handles[aim].ready
            assert ready is not None
            ep = ready.inputs[port]
            writer = ChannelWriter(
                self.ctx,
                ref,
                ChannelEndpoints(normal=ep.normal, high=ep.high),
                record_type=plan.aims[aim].port_types[port],
            )
            feeders[ref] = (writer, records)
        return feeders

    def _wire_message(
        self, run: WorkflowRun, plan: RunPlan, name: str, collectors: dict[str, ChannelReader]
    ) -> aim_api.Wire:
        outputs: dict[str, list[aim_api.Target]] = {}
        for conn in plan.connections:
            if conn.source_aim != name:
                continue
            ready = run.handles[conn.target_aim].ready
            assert ready is not None
            outputs.setdefault(conn.source_port, []).append(
                aim_api.Target(
                    endpoints=ready.inputs[conn.target_port],
                    target=f"{conn.target_aim}.{conn.target_port}",
                    queue_size=conn.queue_size,
                    max_message_size=conn.max_message_size,
                )
            )
        for ref, reader in collectors.items():
            aim, port = ref.split(".", 1)
            if aim == name:
                ep = reader.endpoints
                outputs.setdefault(port, []).append(
                    aim_api.Target(
                        endpoints=aim_api.Endpoints(normal=ep.normal, high=ep.high),
                        target=f"controller:{ref}",
                        queue_size=1000,
                        max_message_size=256 * 2**20,
                    )
                )
        return aim_api.Wire(outputs=outputs, writers=plan.writers_per_input(name))

    async def _feed(
        self, run: WorkflowRun, ref: str, writer: ChannelWriter, records: list[Any]
    ) -> None:
        try:
            for record in records:
                await writer.send(record)
            await writer.send_eos()
        except AIFError as exc:
            await self._fail(run, None, f"feeding input {ref}: {exc}")
        finally:
            writer.close()

    async def _await_completion(
        self, run: WorkflowRun, collectors: dict[str, ChannelReader]
    ) -> None:
        async def collect(ref: str, reader: ChannelReader) -> None:
            try:
                while True:
                    event = await reader.recv()
                    if isinstance(event, EndOfStream):
                        return
                    if isinstance(event, Record):
                        run.outputs[ref].append(event.value)
            finally:
                reader.close()

        await asyncio.gather(*(collect(r, c) for r, c in collectors.items()))
        while not run.state.ended and not all(h.state.ended for h in run.handles.values()):
            run.changed.clear()
            await run.changed.wait()
        final = RunState.STOPPED if run.state is RunState.STOPPING else RunState.SUCCEEDED
        if run.finish(final):
            self._emit("state", "controller", run.id, {"run": final.value})

    # -- supervision ------------------------------------------------------------------

    async def _watch_exit(self, run: WorkflowRun, handle: AIMHandle) -> None:
        """Fail the run when a host ends before its AIM said it was done."""
        status = await handle.launcher.wait()
        if handle.state.ended:
            return
        # The host's last words (done / failed) may still be in flight on the socket.
        for _ in range(20):
            await asyncio.sleep(0.05)
            if handle.state.ended:
                return
        await self._fail(
            run,
            handle.name,
            f"its {handle.launcher.description} ended "
            f"({describe_exit(status)}) before the AIM finished",
        )

    async def _monitor(self) -> None:
        """Fail AIMs whose heartbeats stopped (hung, or on a lost machine)."""
        while True:
            await asyncio.sleep(min(0.25, self.heartbeat_interval))
            now = time.monotonic()
            for run in list(self.runs.values()):
                if run.state.ended:
                    continue
                for handle in run.handles.values():
                    if (
                        handle.state in (AIMState.LAUNCHING, AIMState.REGISTERED)
                        or handle.state.ended
                    ):
                        continue
                    silent = now - handle.last_heartbeat
                    if silent > handle.heartbeat_timeout:
                        await self._fail(
                            run,
                            handle.name,
                            f"no heartbeat for {silent:.1f} s (limit {handle.heartbeat_timeout} s);"
                            " the AIM is hung or its host was lost",
                        )

    async def _fail(self, run: WorkflowRun, aim: str | None, cause: str) -> None:
        """Fail the run (first cause wins) and make every AIM of it stop."""
        message = str(AIMFailed(aim, cause)) if aim else f"workflow run {run.id}: {cause}"
        if aim is not None:
            handle = run.handles[aim]
            handle.error = cause
            handle.set_state(AIMState.FAILED)
        if not run.finish(RunState.FAILED, message):
            return
        log.error("%s", message)
        self._emit("state", "controller", run.id, {"run": "failed", "error": message})
        for handle in run.handles.values():
            handle.changed.set()
            if handle.state.ended:
                continue
            if handle.control is not None:
                with contextlib.suppress(AIFError, zmq.ZMQError):
                    await asyncio.wait_for(handle.control.send_signal(SignalCode.ABORT), 1.0)
            elif handle.identity is not None:
                with contextlib.suppress(AIFError, zmq.ZMQError):
                    await self._send(handle, aim_api.Terminate(reason=message))

    async def _reap(self, run: WorkflowRun) -> None:
        """After a run ended: let hosts exit, force stragglers, close writers."""
        await asyncio.gather(
            *(h.launcher.terminate(self.stop_grace) for h in run.handles.values()),
            return_exceptions=True,
        )
        for task in run.tasks:
            task.cancel()
        for task in run.tasks:
            with contextlib.suppress(BaseException):
                await task
        for handle in run.handles.values():
            if handle.control is not None:
                handle.control.close(linger_ms=0)
                handle.control = None
        for identity, (owner, _) in list(self._by_identity.items()):
            if owner is run:
                del self._by_identity[identity]

    async def _signal_all(self, run: WorkflowRun, code: int) -> None:
        for handle in run.handles.values():
            if handle.control is not None and not handle.state.ended:
                await handle.control.send_signal(code)
        self._emit("state", "controller", run.id, {"run": run.state.value})

    # -- the AIM API ---------------------------------------------------------------------

    async def _dispatch(self) -> None:
        assert self._router is not None
        while True:
            frames = await self._router.recv_multipart()
            if len(frames) != 2:
                self.malformed += 1
                log.warning("AIM API: dropped a message of %d frames (expected 2)", len(frames))
                continue
            identity, frame = frames
            try:
                message = aim_api.parse_host_message(frame)
            except MalformedMessage as exc:
                self.malformed += 1
                log.warning("AIM API: dropped a malformed message: %s", exc)
                continue
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
        handle.last_heartbeat = time.monotonic()
        if isinstance(message, aim_api.Ready):
            handle.ready = message
            handle.set_state(AIMState.READY)
        elif isinstance(message, aim_api.Wired):
            handle.set_state(AIMState.WIRED)
        elif isinstance(message, aim_api.StateChange):
            handle.set_state(AIMState(message.state))
            self._emit("state", handle.name, run.id, {"state": message.state})
        elif isinstance(message, aim_api.EventMessage):
            if message.topic == "result":
                run.results.setdefault(handle.name, {}).update(message.data)
            self._emit(message.topic, handle.name, run.id, message.data)
        elif isinstance(message, aim_api.Done):
            handle.set_state(AIMState.DONE)
            self._emit("state", handle.name, run.id, {"state": "done"})
        elif isinstance(message, aim_api.Failed):
            await self._fail(run, handle.name, message.error)
        elif isinstance(message, aim_api.Bye) and isinstance(handle.launcher, RemoteLauncher):
            handle.launcher.ended(0 if handle.state is AIMState.DONE else 1)

    async def _hello(self, identity: bytes, hello: aim_api.Hello) -> None:
        match = self._find_handle(hello)
        if match is None:
            reason = f"no workflow run is waiting for an AIM named {hello.aim!r}" + (
                f" in run {hello.workflow!r}" if hello.workflow else ""
            )
            log.warning("AIM API: refused %r: %s", hello.aim, reason)
            assert self._router is not None
            with contextlib.suppress(zmq.ZMQError):
                await self._router.send_multipart(
                    [identity, aim_api.pack(aim_api.Terminate(reason=reason))]
                )
            return
        run, handle = match
        plan = self._plans[run.id]
        aim = plan.aims[handle.name]
        if hello.type is not None and hello.type != aim.type and hello.type != aim.class_path:
            reason = (
                f"AIM {handle.name!r} is declared as type {aim.type!r} but the remote "
                f"host brings {hello.type!r}"
            )
            await self._fail(run, handle.name, reason)
            return
        handle.identity = identity
        handle.pid = hello.pid
        handle.last_heartbeat = time.monotonic()
        handle.set_state(AIMState.REGISTERED)
        self._by_identity[identity] = (run, handle)
        self._emit("state", handle.name, run.id, {"state": "registered", "pid": hello.pid})
        transports = {
            port: self._transport(aim.placement, *plan.writer_placements(handle.name, port))
            for port in aim.input_ports
        }
        await self._send(
            handle,
            aim_api.Setup(
                type=aim.type,
                params=aim.params,
                workflow=run.id,
                state_dir=str(self.state_dir),
                ipc_dir=str(self.ipc_dir),
                transports=transports,  # type: ignore[arg-type]
                control_transport=self._transport("controller", aim.placement),  # type: ignore[arg-type]
                queue_sizes=plan.queue_sizes(handle.name),
                max_message_sizes=plan.max_message_sizes(handle.name),
                heartbeat_interval=self.heartbeat_interval,
            ),
        )

    def _find_handle(self, hello: aim_api.Hello) -> tuple[WorkflowRun, AIMHandle] | None:
        runs = (
            [self.runs[hello.workflow]] if hello.workflow in self.runs else list(self.runs.values())
        )
        for run in runs:
            if run.state.ended:
                continue
            handle = run.handles.get(hello.aim)
            if handle is not None and handle.state is AIMState.LAUNCHING:
                return run, handle
        return None

    async def _send(self, handle: AIMHandle, message: Any) -> None:
        assert self._router is not None and handle.identity is not None
        await self._router.send_multipart([handle.identity, aim_api.pack(message)])

    # -- helpers ------------------------------------------------------------------------

    def _emit(self, topic: str, source: str, run_id: str | None, data: dict[str, Any]) -> None:
        event = Event(topic=topic, source=source, workflow=run_id, data=data, time=time.time())  # type: ignore[arg-type]
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")
        if self._publisher is not None:
            try:
                self._publisher.publish_nowait(event)
            except AIFError as exc:  # data that cannot cross: keep the run going, say so
                log.warning("event from %s not published: %s", source, exc)

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

    def _term_context(self) -> None:
        assert self.ctx is not None
        self.ctx.destroy(linger=0)
