"""The chip emulator as a child process of the ``imc_chip`` AIM (``chip: emulate``).

Started in the AIM's ``setup`` on a free loopback port, its address read from the first
line it prints, stopped in ``teardown`` (SIGTERM, then SIGKILL after a grace period).
On Linux the child is also given a parent-death signal before it becomes the emulator,
so it ends even when the AIM's process is killed outright and never outlives the run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import subprocess
from dataclasses import dataclass, field
from typing import Final

from aif.aims.children import guarded_argv
from aif.errors import ChipConnectionError

#: Seconds the emulator may take to print its address (it imports aihwkit first).
START_TIMEOUT: Final = 60.0
#: Seconds between SIGTERM and SIGKILL when stopping the emulator.
STOP_GRACE: Final = 5.0

_LISTENING = re.compile(r"listening on (tcp://\S+)")
#: The module the child becomes, after asking for a parent-death signal
#: (:mod:`aif.aims.children`): it ends even when the AIM's process is killed.
EMULATOR_MODULE: Final = "aif.aims.analog.imc_chip.emulator"


@dataclass
class EmulatorChild:
    """A running emulator child: its process, its address and its last log lines."""

    process: asyncio.subprocess.Process
    log: logging.Logger
    address: str = ""
    stderr: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def exit_text(self) -> str:
        """How the emulator ended, with its last log lines (or that it still runs)."""
        code = self.process.returncode
        if code is None:
            return f"the emulator (pid {self.pid}) is still running"
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        tail = " | ".join(self.stderr)
        return f"the emulator (pid {self.pid}) {how}" + (f": {tail}" if tail else "")

    async def ended(self, within: float) -> bool:
        """Whether the child has ended, waiting up to ``within`` seconds for it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), within)
        return self.process.returncode is not None

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_GRACE`; always reaps the child."""
        process = self.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _drain_stderr(self) -> None:
        """Keep the emulator's log flowing (a full pipe would stall it), last lines kept."""
        stream = self.process.stderr
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self.stderr.append(text)
            self.log.info("emulator: %s", text)

    async def _drain_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while line := await stream.readline():
            self.log.debug("emulator: %s", line.decode(errors="replace").rstrip())


async def start_emulator(arguments: list[str], log: logging.Logger) -> EmulatorChild:
    """Start an emulator on a free loopback port with ``arguments`` (its CLI flags)."""
    argv = guarded_argv(EMULATOR_MODULE, ["--listen", "tcp://127.0.0.1:0", *arguments])
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    child = EmulatorChild(process, log)
    child.tasks.append(asyncio.create_task(child._drain_stderr()))
    try:
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        match = _LISTENING.search(line.decode(errors="replace"))
        if match is None:
            await child.ended(2.0)
            raise ChipConnectionError(
                f"the chip emulator did not start: its first line was {line[:200]!r}, not "
                f"'... listening on tcp://HOST:PORT'; {child.exit_text()}"
            )
    except TimeoutError as exc:
        await child.stop()
        raise ChipConnectionError(
            f"the chip emulator did not print its address within {START_TIMEOUT:g} s; "
            f"{child.exit_text()}"
        ) from exc
    except BaseException:
        await child.stop()
        raise
    child.address = match.group(1)
    child.tasks.append(asyncio.create_task(child._drain_stdout()))
    log.info("started the chip emulator (pid %d) at %s", process.pid, child.address)
    return child
