"""One running AIW instance: its AIMs' handles, its state machine, its results.

The controller owns the sockets; a ``WorkflowRun`` owns the bookkeeping of one
instance: which AIM is in which state, what the AIW produced, and why it failed.
It is the object the User API hands back (``suspend``, ``resume``, ``stop``, ``wait``).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aif.api import aim as aim_api
from aif.communication.channel import ChannelWriter
from aif.controller.launchers.protocol import Launcher
from aif.controller.launchers.ray_cluster import RayNode
from aif.controller.liveness import Liveness, Sample
from aif.errors import LifecycleError


class AIMState(enum.Enum):
    """Lifecycle of one AIM instance as the controller sees it."""

    LAUNCHING = "launching"
    REGISTERED = "registered"
    READY = "ready"
    WIRED = "wired"
    RUNNING = "running"
    SUSPENDED = "suspended"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        """True once nothing more will happen to the AIM."""
        return self in (AIMState.DONE, AIMState.FAILED)


class RunState(enum.Enum):
    """Lifecycle of an AIW instance."""

    STARTING = "starting"
    RUNNING = "running"
    SUSPENDED = "suspended"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        """True for the three final states."""
        return self in (RunState.SUCCEEDED, RunState.STOPPED, RunState.FAILED)


@dataclass
class AIMHandle:
    """What the controller knows of one AIM instance of a run."""

    name: str
    type: str
    placement: str
    heartbeat_timeout: float
    launcher: Launcher
    state: AIMState = AIMState.LAUNCHING
    identity: bytes | None = None
    pid: int | None = None
    #: When the host's event loop was last known to run (``time.monotonic``).
    last_heartbeat: float = field(default_factory=time.monotonic)
    #: What tells a silent AIM that computes from a hung one.
    liveness: Liveness = field(default_factory=Liveness)
    ready: aim_api.Ready | None = None
    control: ChannelWriter | None = None
    error: str | None = None
    #: The Ray node its host runs on (``placement: ray``), once Ray placed it.
    node: RayNode | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Shared by every AIM of a run: set whenever any of them changes state.
    run_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def heard(self, message: aim_api.HostMessage, now: float) -> None:
        """A message came from the host: its event loop ran, unless a heartbeat sent
        by its thread says the loop is ``stalled`` (then it brings the process's CPU)."""
        stalled = 0.0
        if isinstance(message, aim_api.Heartbeat):
            stalled = message.stalled or 0.0
            if message.cpu is not None:
                self.liveness.reported = Sample(now, message.cpu)
        self.last_heartbeat = max(self.last_heartbeat, now - stalled)

    def set_state(self, state: AIMState) -> None:
        """Move to ``state`` and wake whoever waits on this AIM or on the run."""
        self.state = state
        self.changed.set()
        self.run_changed.set()


@dataclass
class WorkflowResult:
    """What a finished run reports: its state, error, per-AIM results and outputs."""

    id: str
    workflow: str
    state: RunState
    error: str | None
    results: dict[str, dict[str, Any]]
    outputs: dict[str, list[Any]]
    seconds: float
    #: The Ray node each ``placement: ray`` AIM ran on, by AIM name.
    nodes: dict[str, RayNode] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the run succeeded."""
        return self.state is RunState.SUCCEEDED


class WorkflowRun:
    """An AIW instance: the handle its caller holds while it runs."""

    def __init__(
        self,
        run_id: str,
        workflow: str,
        handles: dict[str, AIMHandle],
        signal: Callable[[WorkflowRun, int], Awaitable[None]],
    ) -> None:
        self.id = run_id
        self.workflow = workflow
        self.handles = handles
        self.changed = asyncio.Event()
        for handle in handles.values():
            handle.run_changed = self.changed
        self.state = RunState.STARTING
        self.error: str | None = None
        #: The AIM whose failure ended the run (None: the controller or the user ended it).
        self.failed_aim: str | None = None
        self.results: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, list[Any]] = {}
        self.started = time.monotonic()
        self.ended_at: float | None = None
        self._finished = asyncio.Event()
        self._signal = signal
        self.tasks: list[asyncio.Task[Any]] = []

    # -- user-facing lifecycle ------------------------------------------------------

    async def suspend(self) -> None:
        """Pause every AIM between steps (a high-priority SUSPEND to each)."""
        from aif.communication.ports import SignalCode

        self._require(RunState.RUNNING, "suspend")
        self.state = RunState.SUSPENDED
        await self._signal(self, SignalCode.SUSPEND)

    async def resume(self) -> None:
        """Continue a suspended run."""
        from aif.communication.ports import SignalCode

        self._require(RunState.SUSPENDED, "resume")
        self.state = RunState.RUNNING
        await self._signal(self, SignalCode.RESUME)

    async def stop(self) -> None:
        """Ask every AIM to finish cleanly; what was produced so far is kept."""
        from aif.communication.ports import SignalCode

        if self.state.ended or self.state is RunState.STOPPING:
            return
        self.state = RunState.STOPPING
        await self._signal(self, SignalCode.STOP)

    async def wait(self, timeout: float | None = None) -> WorkflowResult:
        """Wait until the run ends; raises ``TimeoutError`` after ``timeout`` seconds."""
        await asyncio.wait_for(self._finished.wait(), timeout)
        return self.result()

    def result(self) -> WorkflowResult:
        """The run's result so far."""
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return WorkflowResult(
            id=self.id,
            workflow=self.workflow,
            state=self.state,
            error=self.error,
            results=self.results,
            outputs=self.outputs,
            seconds=end - self.started,
            nodes={n: h.node for n, h in self.handles.items() if h.node is not None},
        )

    # -- used by the controller -----------------------------------------------------

    def finish(self, state: RunState, error: str | None = None) -> bool:
        """Enter a final state once; later calls are ignored (first cause wins)."""
        if self.state.ended:
            return False
        self.state = state
        self.error = error
        self.ended_at = time.monotonic()
        self._finished.set()
        return True

    def _require(self, state: RunState, action: str) -> None:
        if self.state is not state:
            raise LifecycleError(
                f"cannot {action} workflow run {self.id} in state {self.state.value!r}; "
                f"{action} needs state {state.value!r}"
            )
