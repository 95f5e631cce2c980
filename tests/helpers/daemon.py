"""A real controller daemon in a child process, for the integration tests.

Started as a user would (``python -m aif controller start``) from the repository root,
so that ``tests.helpers.aims:...`` types import in it and in its AIM processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aif.daemon.client import Client, pid_alive, read_daemon_file

ROOT = Path(__file__).resolve().parents[2]
START = [sys.executable, "-m", "aif", "controller", "start"]


class DaemonProcess:
    """One daemon on ``state_dir``; ``start`` waits until it serves."""

    def __init__(self, state_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.args = list(args)
        #: extra environment for the daemon (e.g. ``AIF_PEER_TOKENS``)
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir.parent / f"{state_dir.name}-daemon.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **self.env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*START, "--state-dir", str(self.state_dir), *self.args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = read_daemon_file(self.state_dir)
            if info is not None and info.get("pid") == self.proc.pid:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"the daemon did not serve within {timeout} s:\n{self.text()}")

    def info(self) -> dict[str, Any]:
        info = read_daemon_file(self.state_dir)
        assert info is not None
        return info

    def client(self, timeout: float = 10.0) -> Client:
        return Client(state_dir=self.state_dir, timeout=timeout)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill9(self) -> None:
        """``kill -9``: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the daemon drains; returns its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(
                    f"the daemon did not drain in {timeout} s:\n{self.text()}"
                ) from exc
        return self.proc.returncode


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (zombies count as gone)."""
    if not pid_alive(pid):
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
