"""Launchers: how an AIM host comes to life for each placement.

One small interface, one verb per need (``launch``, ``wait``, ``terminate``), so the
controller supervises an asyncio task, a child process and a hand-started remote
host the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from typing import Protocol

import zmq.asyncio

from aif.aims.host import AIMHost
from aif.controller.plan import PlannedAIM
from aif.security.curve import ControllerCurve, key_text


class Launcher(Protocol):
    """Starts and stops the host of one AIM."""

    description: str

    async def launch(self) -> None:
        """Start the host; it then says hello on the AIM API."""

    async def wait(self) -> int:
        """Wait for the host to end; its exit status (negative: killed by that signal)."""

    async def terminate(self, grace: float) -> None:
        """Ask the host to end, then force it after ``grace`` seconds."""


class InprocLauncher:
    """The host runs as an asyncio task in the controller's process (light AIMs)."""

    def __init__(self, ctx: zmq.asyncio.Context, controller: str, aim: str, workflow: str) -> None:
        self._host = AIMHost(ctx, controller, aim, workflow=workflow)
        self._task: asyncio.Task[int] | None = None
        self.description = "inproc task"

    async def launch(self) -> None:
        self._task = asyncio.create_task(self._host.serve(), name=f"aim-{self._host.name}")

    async def wait(self) -> int:
        assert self._task is not None, "launch() first"
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if self._task.cancelled():
                return -int(signal.SIGTERM)
            raise

    async def terminate(self, grace: float) -> None:
        if self._task is None or self._task.done():
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class ProcessLauncher:
    """The host runs in a child process the controller supervises (heavy compute)."""

    def __init__(self, controller: str, aim: str, workflow: str) -> None:
        self._argv = [
            sys.executable,
            "-m",
            "aif.aims",
            "--controller",
            controller,
            "--aim",
            aim,
            "--workflow",
            workflow,
        ]
        self._proc: asyncio.subprocess.Process | None = None
        self.description = "child process"

    @property
    def pid(self) -> int | None:
        """The child's pid once launched."""
        return self._proc.pid if self._proc is not None else None

    async def launch(self) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = await asyncio.create_subprocess_exec(*self._argv, env=env)
        self.description = f"child process {self._proc.pid}"

    async def wait(self) -> int:
        assert self._proc is not None, "launch() first"
        return await self._proc.wait()

    async def terminate(self, grace: float) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(proc.wait(), grace)
            return
        except TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class RemoteLauncher:
    """A host someone started by hand (``aif aim serve``); the controller only waits for it.

    It cannot be started, signalled or killed from here: it ends when it says ``bye``
    (its reason kept in ``reason``) or when the controller stops hearing from it.
    """

    def __init__(self) -> None:
        self._ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.description = "remote host"
        #: Why the host left, in its own words (its ``bye``), or why it was given up.
        self.reason = ""

    async def launch(self) -> None:
        return None

    def registered(self, machine: str | None, pid: int) -> None:
        """Name the host in later messages once it said hello."""
        where = f" on {machine}" if machine else ""
        self.description = f"remote host{where} (pid {pid})"

    def ended(self, status: int, reason: str = "") -> None:
        """Called when the remote host says goodbye or its heartbeats stop."""
        if not self._ended.done():
            self.reason = reason
            self._ended.set_result(status)

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    async def terminate(self, grace: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._ended), grace)


def serve_command(
    aim_type: str, controller: str, name: str, server_key: bytes | None = None
) -> str:
    """The command that starts the host of a ``placement: remote`` AIM, ready to paste.

    ``server_key``: the controller's CURVE public key when its AIM API is CURVE (secure
    profile); the host then needs its own identity (``aif keys init``) trusted there.
    """
    words = ["aif", "aim", "serve", aim_type, "--controller", controller, "--name", name]
    if server_key is not None:
        words += ["--server-key", key_text(server_key)]
    return shlex.join(words)


def launcher_for(
    aim: PlannedAIM,
    ctx: zmq.asyncio.Context,
    endpoints: dict[str, str],
    workflow: str,
    curve: ControllerCurve | None = None,
) -> Launcher:
    """The launcher for an AIM's placement, given the controller's AIM API endpoints.

    ``curve``: the controller's secure profile, with which it asks peers to host AIMs.
    """
    if aim.placement == "inproc":
        return InprocLauncher(ctx, endpoints["inproc"], aim.name, workflow)
    if aim.placement == "process":
        return ProcessLauncher(endpoints["ipc"], aim.name, workflow)
    if aim.peers:
        from aif.controller.remote import PeerLauncher

        return PeerLauncher(ctx, aim, endpoints.get("tcp"), workflow, curve)
    return RemoteLauncher()


def describe_exit(status: int) -> str:
    """``exit status 3`` or ``killed by SIGKILL``: how a host ended, in words."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"
