"""Launchers for this machine: an asyncio task in the controller's process
(``placement: inproc``) and a child process it supervises (``placement: process``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import zmq.asyncio

from aif.host.host import AIMHost


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
            "aif.host",
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
