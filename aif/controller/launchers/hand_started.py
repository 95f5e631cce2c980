"""The launcher of a host someone started by hand elsewhere (``placement: remote``).

The controller cannot start such a host; it tells the user the command to paste
(``serve_command``) and waits for the host to register on the AIM API.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex

from aif.security.curve import key_text


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
