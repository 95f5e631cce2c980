"""The seam between the Controller and the place an AIM runs: one small interface.

One verb per need (``launch``, ``wait``, ``terminate``), so the controller supervises
an asyncio task, a child process, a hand-started host and a peer-hosted one the same
way.
"""

from __future__ import annotations

import signal
from typing import Protocol


class Launcher(Protocol):
    """Starts and stops the host of one AIM."""

    description: str

    async def launch(self) -> None:
        """Start the host; it then says hello on the AIM API."""

    async def wait(self) -> int:
        """Wait for the host to end; its exit status (negative: killed by that signal)."""

    async def terminate(self, grace: float) -> None:
        """Ask the host to end, then force it after ``grace`` seconds."""


def describe_exit(status: int) -> str:
    """``exit status 3`` or ``killed by SIGKILL``: how a host ended, in words."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"
