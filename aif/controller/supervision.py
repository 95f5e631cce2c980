"""Supervision of a run's AIM hosts: exits, heartbeats, deadlines and reaping.

These loops only watch; what a failure means (first cause wins, every AIM gets
ABORT) stays with the controller, which passes its ``fail`` in. Kept apart so the
controller reads as phases and orchestration, and so each way an AIM can be lost
(its host ended early, its heartbeats stopped, it never got ready) is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import zmq

from aif.api import aim as aim_api
from aif.communication.channel import ChannelReader
from aif.communication.events import Event
from aif.communication.ports import SignalCode
from aif.controller.host_messages import Emit
from aif.controller.launchers.hand_started import RemoteLauncher, serve_command
from aif.controller.launchers.protocol import describe_exit
from aif.controller.liveness import Sample, read_process
from aif.controller.run import AIMHandle, AIMState, RunState, WorkflowRun
from aif.controller.wiring import collect
from aif.errors import AIFError, AIMFailed

log = logging.getLogger("aif.controller")

#: How the controller fails a run: ``fail(run, aim or None, cause)``.
FailRun = Callable[[WorkflowRun, str | None, str], Awaitable[None]]


async def fail_run(
    run: WorkflowRun,
    aim: str | None,
    cause: str,
    *,
    emit: Emit,
    send: Callable[[AIMHandle, Any], Awaitable[None]],
) -> None:
    """Fail the run (first cause wins) and make every AIM of it stop."""
    message = str(AIMFailed(aim, cause)) if aim else f"workflow run {run.id}: {cause}"
    if aim is not None:
        handle = run.handles[aim]
        handle.error = cause
        handle.set_state(AIMState.FAILED)
    if not run.finish(RunState.FAILED, message):
        return
    run.failed_aim = aim
    log.error("%s", message)
    emit(Event.run_state(run.id, RunState.FAILED.value, message))
    for handle in run.handles.values():
        handle.changed.set()
        if handle.state.ended:
            continue
        if handle.control is not None:
            with contextlib.suppress(AIFError, zmq.ZMQError):
                await asyncio.wait_for(handle.control.send_signal(SignalCode.ABORT), 1.0)
        elif handle.identity is not None:
            with contextlib.suppress(AIFError, zmq.ZMQError):
                await send(handle, aim_api.Terminate(reason=message))


async def await_completion(
    run: WorkflowRun, collectors: dict[str, ChannelReader], emit: Emit
) -> None:
    """Drain the AIW's outputs, wait for every AIM to end, then end the run."""
    await asyncio.gather(*(collect(r, c, run) for r, c in collectors.items()))
    while not run.state.ended and not all(h.state.ended for h in run.handles.values()):
        run.changed.clear()
        await run.changed.wait()
    final = RunState.STOPPED if run.state is RunState.STOPPING else RunState.SUCCEEDED
    if run.finish(final):
        emit(Event.run_state(run.id, final.value))


async def watch_exit(run: WorkflowRun, handle: AIMHandle, fail: FailRun) -> None:
    """Fail the run when a host ends before its AIM said it was done."""
    status = await handle.launcher.wait()
    if handle.state.ended:
        return
    # The host's last words (done / failed) may still be in flight on the socket.
    for _ in range(20):
        await asyncio.sleep(0.05)
        if handle.state.ended:
            return
    if isinstance(handle.launcher, RemoteLauncher):
        how = f"left ({handle.launcher.reason or 'it said bye'})"
    else:
        how = f"ended ({describe_exit(status)})"
    await fail(run, handle.name, f"its {handle.launcher.description} {how} before the AIM finished")


async def monitor_heartbeats(
    runs: Mapping[str, WorkflowRun], heartbeat_interval: float, fail: FailRun
) -> None:
    """Fail AIMs whose heartbeats stopped (hung, or on a lost machine), not busy ones.

    A silent AIM whose process keeps using CPU is busy (``liveness``), not failed.
    """
    period = min(0.25, heartbeat_interval)
    last_tick = time.monotonic()
    skipped = False
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        behind, last_tick = now - last_tick, now
        if behind > max(1.0, 4 * period) and not skipped:
            # This loop itself was held up (an inproc AIM, an overloaded machine): the
            # heartbeats of that time may still wait in the socket. Hear them first
            # (once: a controller held up at every turn still judges).
            log.info("heartbeat monitor: the controller was held up for %.1f s", behind)
            skipped = True
            continue
        skipped = False
        for run in list(runs.values()):
            if run.state.ended:
                continue
            for handle in run.handles.values():
                if handle.state in (AIMState.LAUNCHING, AIMState.REGISTERED) or handle.state.ended:
                    continue
                cause = _silence_cause(handle, now, heartbeat_interval)
                if cause is not None:
                    await fail(run, handle.name, cause)


def _silence_cause(handle: AIMHandle, now: float, heartbeat_interval: float) -> str | None:
    """Why ``handle``'s AIM is failed for its silence; None while it is heard or busy."""
    silent = now - handle.last_heartbeat
    timeout = handle.heartbeat_timeout
    live = handle.liveness
    if silent <= timeout / 2:
        if live.busy_since is not None:
            log.info("AIM %r: heard again after %.1f s busy", handle.name, now - live.busy_since)
        live.reset()
        return None
    launcher = handle.launcher
    sample = _cpu_sample(handle, now, heartbeat_interval)
    if silent <= timeout:
        live.watch(sample)
        return None
    verdict = live.judge(sample, timeout / 2)
    if verdict.kind == "wait":
        return None
    if verdict.kind == "busy":
        if live.busy_since is None:
            live.busy_since = now - silent
            log.warning(
                "AIM %r: no heartbeat from its %s for %.1f s (limit %g s), but it is %s: "
                "not failed",
                handle.name,
                launcher.description,
                silent,
                timeout,
                verdict.why,
            )
        return None
    cause = f"no heartbeat from its {launcher.description} for {silent:.1f} s (limit {timeout:g} s)"
    if isinstance(launcher, RemoteLauncher):
        # Nothing here can end or reap a process on another machine: stop waiting for
        # its goodbye, so the run is reaped at once.
        launcher.ended(1, "heartbeats stopped")
        if verdict.why:  # it reported its CPU lately: its heartbeat thread runs
            blocked = "its host still answers, but its event loop is blocked"
            return f"{cause}; {blocked} and {verdict.why}"
        return f"{cause}; the host was killed, hung or lost its network"
    if verdict.why:
        return f"{cause} and {verdict.why}"
    return f"{cause}; the AIM is hung or its host was lost"


def _fresh(heartbeat_interval: float) -> float:
    """How old a remote host's CPU report may be and still count."""
    return 4 * heartbeat_interval + 1.0


def _cpu_sample(handle: AIMHandle, now: float, heartbeat_interval: float) -> Sample | None:
    """The CPU time of ``handle``'s host now: read here for a child process on this
    machine, as reported lately by a remote host; None when nothing can be known."""
    launcher = handle.launcher
    if isinstance(launcher, RemoteLauncher):
        reported = handle.liveness.reported
        if reported is None or now - reported.at > _fresh(heartbeat_interval):
            return None
        return reported
    pid = getattr(launcher, "pid", None)  # child processes and warm workers; not inproc
    return read_process(pid, now) if isinstance(pid, int) else None


async def wait_for_state(
    run: WorkflowRun,
    state: AIMState,
    what: str,
    timeout: float,
    tcp_endpoint: str | None,
    fail: FailRun,
    server_key: bytes | None = None,
) -> bool:
    """Wait until every AIM of the run reached ``state``; False when the run failed.

    After ``timeout`` seconds the first AIM still short of it fails the run, with
    ``tcp_endpoint`` (the controller's, if it listens on tcp) and its CURVE
    ``server_key`` (secure profile) in the hint for a remote AIM that never came.
    """
    order = list(AIMState)
    deadline = time.monotonic() + timeout
    for handle in run.handles.values():
        while order.index(handle.state) < order.index(state) and not run.state.ended:
            handle.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                reason = late_reason(handle, what, timeout, tcp_endpoint, server_key)
                await fail(run, handle.name, reason)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handle.changed.wait(), left)
        if run.state.ended:
            return False
    return True


def late_reason(
    handle: AIMHandle,
    what: str,
    timeout: float,
    tcp_endpoint: str | None,
    server_key: bytes | None = None,
) -> str:
    """Why an AIM is late, and for a remote one that never came, how to start it."""
    text = (
        f"did not {what} within {timeout:g} s "
        f"({handle.launcher.description}, state {handle.state.value})"
    )
    by_hand = type(handle.launcher) is RemoteLauncher  # not a peer controller's host
    if by_hand and handle.state is AIMState.LAUNCHING:
        if tcp_endpoint is None:
            text += "; remote AIMs need a controller listening on tcp (Controller(tcp=...))"
        else:
            command = serve_command(handle.type, tcp_endpoint, handle.name, server_key)
            text += f"; start it with: {command}"
    return text


async def reap_run(run: WorkflowRun, grace: float) -> None:
    """After a run ended: let hosts exit, force stragglers, close control writers."""
    for handle in run.handles.values():
        if isinstance(handle.launcher, RemoteLauncher) and handle.identity is None:
            handle.launcher.ended(1)  # never came: nothing to wait for
    await asyncio.gather(
        *(h.launcher.terminate(grace) for h in run.handles.values()),
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
