"""A real local Ray cluster for the tests: a head and a second node on loopback.

Both nodes run on this machine with different resources (the head has the custom
``imc`` resource, the second node has none), each started with ``ray start`` as a user
would, in its own session, under a temp dir of its own. Teardown kills exactly this
cluster's processes (never ``ray stop``, which would end every Ray on the machine):
the process trees of both nodes, and whatever still names the cluster's temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
#: No telemetry, no dashboard, nothing that reaches past this machine.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}
#: A lost node is noticed by Ray in about 3 s rather than 15 (the defaults).
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(roots: list[int]) -> list[int]:
    """``roots`` and every process below them."""
    kids = _children()
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo += kids.get(pid, [])
    return seen


def _group(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pgid:
                    members.append(int(entry))
    return members


def _naming(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if text in Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry))
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class LocalRayCluster:
    """``ray start --head`` plus a second ``ray start --address`` on 127.0.0.1."""

    def __init__(
        self,
        head_cpus: int = 2,
        second_cpus: int = 2,
        head_resources: dict[str, float] | None = None,
    ) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="aifray-", dir="/tmp"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head_cpus = head_cpus
        self.second_cpus = second_cpus
        self.head_resources = head_resources if head_resources is not None else {"imc": 1.0}
        self.env = {**os.environ, **RAY_ENV}
        self.head_group: int | None = None
        self.second: subprocess.Popen[bytes] | None = None
        self.second_log = self.temp / "second.log"

    def start(self, timeout: float = 120.0) -> LocalRayCluster:
        common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
        head = subprocess.Popen(
            [
                RAY,
                "start",
                "--head",
                f"--port={self.port}",
                f"--num-cpus={self.head_cpus}",
                "--num-gpus=0",
                f"--resources={json.dumps(self.head_resources)}",
                f"--temp-dir={self.temp / 'ray'}",
                "--include-dashboard=false",
                f"--system-config={json.dumps(HEALTH_CHECKS)}",
                *common,
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.head_group = head.pid
        out, _ = head.communicate(timeout=timeout)
        if head.returncode != 0:
            self.stop()
            raise AssertionError(f"ray start --head failed:\n{out.decode(errors='replace')}")
        with open(self.second_log, "wb") as log:
            self.second = subprocess.Popen(
                [
                    RAY,
                    "start",
                    f"--address={self.address}",
                    f"--num-cpus={self.second_cpus}",
                    "--num-gpus=0",
                    "--block",
                    *common,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in self.second_log.read_bytes():
            if self.second.poll() is not None or time.monotonic() > deadline:
                text = self.second_log.read_text(errors="replace")
                self.stop()
                raise AssertionError(f"the second Ray node did not start:\n{text}")
            time.sleep(0.2)
        return self

    def second_node_processes(self) -> list[int]:
        """The second node's processes: its raylet and the rest, its workers, their children."""
        assert self.second is not None
        return process_tree([self.second.pid, *_group(self.second.pid)])

    def kill_second_node(self) -> list[int]:
        """The second node's machine goes away: every process of it killed at once."""
        victims = self.second_node_processes()
        _kill(victims)
        assert self.second is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.second.wait(10)
        return victims

    def stop(self) -> None:
        """Kill every process of this cluster (both nodes, their workers and children)."""
        roots: list[int] = []
        if self.head_group is not None:
            roots += _group(self.head_group)
        if self.second is not None:
            roots += [self.second.pid, *_group(self.second.pid)]
        for _ in range(3):
            _kill(process_tree(roots) + process_tree(_naming(str(self.temp))))
            time.sleep(0.3)
        if self.second is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.second.wait(10)
        shutil.rmtree(self.temp, ignore_errors=True)

    def leftovers(self) -> list[int]:
        """Processes of this cluster still alive (after ``stop``: none)."""
        return [p for p in _naming(str(self.temp)) if p != os.getpid()]
