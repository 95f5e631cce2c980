"""The Ray actor that hosts one AIM (``placement: ray``) on a node of a Ray cluster.

The controller's Ray launcher (:mod:`aif.controller.launchers.ray`) makes this class a
Ray actor with the AIM's resources; Ray starts it on a node that has them. The actor
then runs the very child a ``process`` AIM gets, ``python -m aif.host --controller
tcp://...``, which dials the controller's AIM API over tcp, watches its parent (this
actor's worker process) and so never outlives it. The actor only starts, waits for and
stops that child, and says where it runs::

    start(argv, env, cwd) -> {"node_id", "ip", "hostname", "pid"}
    wait() -> exit status (negative: killed by that signal)
    stop(grace) -> exit status (SIGTERM, then SIGKILL after ``grace`` seconds)

What crosses from the controller is plain strings, numbers and a dict of them; nothing
of the controller is imported here, and ``ray`` only by the worker that already has it.
Run threaded (``max_concurrency`` > 1) so ``stop`` can run while ``wait`` blocks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Any


class HostActor:
    """Starts, waits for and stops one ``python -m aif.host`` child on this node."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None

    def start(self, argv: list[str], env: dict[str, str], cwd: str) -> dict[str, Any]:
        """Start the host with ``argv`` (after ``python -m aif.host``); where it runs."""
        import ray  # the worker running this actor has it loaded already

        if not all(isinstance(a, str) for a in argv) or self._child is not None:
            raise ValueError("start takes a list of strings, once")
        variables = {**os.environ, **{str(k): str(v) for k, v in env.items()}}
        folder = cwd if cwd and os.path.isdir(cwd) else None  # not on this node: stay here
        self._child = subprocess.Popen(
            [sys.executable, "-m", "aif.host", *argv],
            env=variables,
            cwd=folder,
            stdin=subprocess.DEVNULL,
        )
        context = ray.get_runtime_context()
        util: Any = ray.util  # untyped in Ray
        return {
            "node_id": str(context.get_node_id()),
            "ip": str(util.get_node_ip_address()),
            "hostname": socket.gethostname(),
            "pid": self._child.pid,
        }

    def wait(self) -> int:
        """Block until the host ends; its exit status."""
        if self._child is None:
            return 0
        return self._child.wait()

    def stop(self, grace: float) -> int:
        """End the host: SIGTERM, then SIGKILL after ``grace`` seconds; its exit status."""
        child = self._child
        if child is None:
            return 0
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                return child.wait(max(0.0, float(grace)))
            except subprocess.TimeoutExpired:
                child.kill()
        return child.wait()
