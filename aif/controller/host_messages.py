"""What the AIM API messages of hosts mean for the controller's bookkeeping.

The controller owns the ROUTER socket, the map of host identities and failing a
run; this module holds the rules that need none of them: reading one well-formed
message off the socket, which run a host that says hello belongs to, whether it
brings the type its workflow declared, and what a registered host's reports (ready,
wired, state, event, done, bye) change in its AIM's handle and its run. Kept apart
so the controller's dispatcher is only routing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import zmq.asyncio

from aif.api import aim as aim_api
from aif.communication.events import Event
from aif.controller.launchers.hand_started import RemoteLauncher
from aif.controller.plan import PlannedAIM
from aif.controller.run import AIMHandle, AIMState, WorkflowRun
from aif.errors import MalformedMessage

log = logging.getLogger("aif.controller")

#: How the controller publishes an event: ``emit(event)``.
Emit = Callable[[Event], None]


async def receive(router: zmq.asyncio.Socket) -> tuple[bytes, aim_api.HostMessage] | None:
    """The next host message on the AIM API socket; None (logged) when it is malformed."""
    frames = await router.recv_multipart()
    if len(frames) != 2:
        log.warning("AIM API: dropped a message of %d frames (expected 2)", len(frames))
        return None
    identity, frame = frames
    try:
        return identity, aim_api.parse_host_message(frame)
    except MalformedMessage as exc:
        log.warning("AIM API: dropped a malformed message: %s", exc)
        return None


def find_waiting_handle(
    runs: dict[str, WorkflowRun], hello: aim_api.Hello
) -> tuple[WorkflowRun, AIMHandle] | None:
    """The run and AIM that wait for the host saying ``hello``, if any does."""
    candidates = [runs[hello.workflow]] if hello.workflow in runs else list(runs.values())
    for run in candidates:
        if run.state.ended:
            continue
        handle = run.handles.get(hello.aim)
        if handle is not None and handle.state is AIMState.LAUNCHING:
            return run, handle
    return None


def refusal_reason(hello: aim_api.Hello) -> str:
    """Why a host that no run waits for is told to leave."""
    return f"no workflow run is waiting for an AIM named {hello.aim!r}" + (
        f" in run {hello.workflow!r}" if hello.workflow else ""
    )


def type_mismatch(name: str, aim: PlannedAIM, hello: aim_api.Hello) -> str | None:
    """Why a remote host's AIM type does not fit the declared one; None when it does."""
    if hello.type is not None and hello.type not in (aim.type, aim.class_path):
        return (
            f"AIM {name!r} is declared as type {aim.type!r} ({aim.class_path}) but the remote "
            f"host brings {hello.type!r}; serve the declared type"
        )
    return None


def register(
    run: WorkflowRun, handle: AIMHandle, identity: bytes, hello: aim_api.Hello, emit: Emit
) -> None:
    """Bind the host saying ``hello`` (behind ``identity``) to its AIM's handle."""
    handle.identity = identity
    handle.pid = hello.pid
    handle.last_heartbeat = time.monotonic()
    if isinstance(handle.launcher, RemoteLauncher):
        handle.launcher.registered(hello.host, hello.pid)
    handle.set_state(AIMState.REGISTERED)
    emit(
        Event.aim_state(
            handle.name, run.id, AIMState.REGISTERED.value, pid=hello.pid, host=hello.host
        )
    )


def apply_report(
    run: WorkflowRun, handle: AIMHandle, message: aim_api.HostMessage, emit: Emit
) -> None:
    """Apply a registered host's ready, wired, state, event, done or bye message."""
    if isinstance(message, aim_api.Ready):
        handle.ready = message
        handle.set_state(AIMState.READY)
    elif isinstance(message, aim_api.Wired):
        handle.set_state(AIMState.WIRED)
    elif isinstance(message, aim_api.StateChange):
        handle.set_state(AIMState(message.state))
        emit(Event.aim_state(handle.name, run.id, message.state))
    elif isinstance(message, aim_api.EventMessage):
        if message.topic == "result":
            run.results.setdefault(handle.name, {}).update(message.data)
        emit(Event(message.topic, handle.name, run.id, message.data))
    elif isinstance(message, aim_api.Done):
        handle.set_state(AIMState.DONE)
        emit(Event.aim_state(handle.name, run.id, AIMState.DONE.value))
    elif isinstance(message, aim_api.Bye) and isinstance(handle.launcher, RemoteLauncher):
        handle.launcher.ended(0 if handle.state is AIMState.DONE else 1, message.reason)
