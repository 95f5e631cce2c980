"""The seam between the Controller and the place an AIM runs: one small interface.

One verb per need (``launch``, ``wait``, ``terminate``), so the controller supervises
an asyncio task, a child process, a hand-started host and a peer-hosted one the same
way.
"""

from __future__ import annotations

from typing import Protocol

from aif.errors import describe_exit

__all__ = ["Launcher", "describe_exit"]


class Launcher(Protocol):
    """Starts and stops the host of one AIM."""

    description: str

    async def launch(self) -> None:
        """Start the host; it then says hello on the AIM API."""

    async def wait(self) -> int:
        """Wait for the host to end; its exit status (negative: killed by that signal)."""

    async def terminate(self, grace: float) -> None:
        """Ask the host to end, then force it after ``grace`` seconds."""
