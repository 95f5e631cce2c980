"""Queues and instances: which waiting job runs next, and where (MPAI-AIF resource management).

The Composer feeds validation, CPU, GPU and chip workers from queues. Here every
*instance* (an execution slot of the daemon: ``cpu-0``, ``cuda-0``, ``imc-0``) serves
one queue and runs up to ``max_jobs`` jobs at once. A job's queues come from its AIMs
(``AIM.resources``): the heaviest AIM decides, ``imc`` over ``cuda`` over ``cpu`` over
``validation``, and a simulator on ``device: auto`` takes a GPU instance when the daemon
has one and a CPU instance otherwise.

Order is fair by submission time with an optional priority: the store hands waiting
jobs over highest priority first, oldest first, and a job whose queue is full does not
hold up jobs of other queues. Among the instances of a queue the least loaded one wins;
a job that failed on an instance goes to another one when there is one. Plain logic,
no sockets and no clock, so every rule is unit-tested.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aif.errors import ConfigError
from aif.workflow import ResolvedWorkflow

#: Known queues, lightest first; a plug-in's own queue ranks with ``imc`` (hardware).
QUEUE_RANK = {"validation": 0, "cpu": 1, "cuda": 2, "imc": 3}
#: Where a job with only light AIMs (sources, relays, reporters) runs.
DEFAULT_QUEUE = "cpu"
_INSTANCE_SPEC = re.compile(r"^([a-z][a-z0-9_-]*)=([0-9]+)(?:x([0-9]+))?$")


@dataclass
class Instance:
    """An execution slot serving one queue."""

    name: str
    queue: str
    max_jobs: int = 1
    capabilities: dict[str, Any] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)

    @property
    def free(self) -> int:
        """How many more jobs it takes now."""
        return max(0, self.max_jobs - len(self.running))

    @property
    def state(self) -> str:
        """``idle``, ``busy`` (has room) or ``full``."""
        if not self.running:
            return "idle"
        return "full" if self.free == 0 else "busy"

    def to_json(self) -> dict[str, Any]:
        """What ``aif aims`` shows of it."""
        return {
            "name": self.name,
            "queue": self.queue,
            "state": self.state,
            "load": f"{len(self.running)}/{self.max_jobs}",
            "running": sorted(self.running),
            "capabilities": self.capabilities,
        }


def job_queues(resolved: ResolvedWorkflow) -> tuple[str, ...]:
    """The queues a workflow's job may run in, preferred first (its heaviest AIM's)."""
    best: tuple[str, ...] = ()
    best_rank = -1
    for aim in resolved.aims.values():
        queues = aim.cls.resources(aim.params)
        if not queues:
            continue
        rank = QUEUE_RANK.get(queues[0], QUEUE_RANK["imc"])
        if rank > best_rank:
            best, best_rank = tuple(queues), rank
    return best or (DEFAULT_QUEUE,)


def parse_instances(specs: Iterable[str]) -> list[Instance]:
    """Instances from ``QUEUE=COUNT`` or ``QUEUE=COUNTxJOBS`` (``cpu=2``, ``validation=1x4``)."""
    instances: list[Instance] = []
    seen: set[str] = set()
    for spec in specs:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            match = _INSTANCE_SPEC.match(part)
            if match is None:
                raise ConfigError(
                    f"--instances {part!r} is not QUEUE=COUNT or QUEUE=COUNTxJOBS; "
                    "e.g. cpu=2, cuda=1, validation=1x4"
                )
            queue, count, jobs = match.group(1), int(match.group(2)), int(match.group(3) or 1)
            if queue in seen:
                raise ConfigError(f"--instances names queue {queue!r} twice; give it once")
            if jobs < 1:
                raise ConfigError(f"--instances {part!r}: JOBS must be at least 1")
            seen.add(queue)
            caps = _capabilities(queue)
            instances += [Instance(f"{queue}-{i}", queue, jobs, dict(caps)) for i in range(count)]
    return instances


def default_instances() -> list[Instance]:
    """One validation instance (4 jobs), half the cores as CPU instances, one per GPU, one chip."""
    cores = os.cpu_count() or 1
    gpus = gpu_count()
    specs = ["validation=1x4", f"cpu={max(1, cores // 2)}", "imc=1"]
    if gpus:
        specs.append(f"cuda={gpus}")
    return parse_instances(specs)


def gpu_count() -> int:
    """NVIDIA GPUs the driver shows, without importing torch (the daemon stays light)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        return sum(1 for _ in gpus.iterdir())
    except OSError:
        return 0


def _capabilities(queue: str) -> dict[str, Any]:
    if queue == "cpu":
        return {"device": "cpu", "cores": os.cpu_count() or 1}
    if queue == "cuda":
        return {"device": "cuda", "gpus": gpu_count()}
    if queue == "validation":
        return {"checks": "analog experiments"}
    return {"device": queue}


class Scheduler:
    """Decides which waiting job runs on which instance."""

    def __init__(self, instances: Sequence[Instance]) -> None:
        names = [i.name for i in instances]
        if len(set(names)) != len(names):
            raise ConfigError(f"instance names must be unique, got {names}")
        self.instances = list(instances)

    def resize(self, instances: Sequence[Instance]) -> None:
        """Take a cluster's ``instances`` as they are now (read again): one of a known
        name gets the new ``max_jobs`` and capabilities and keeps its running jobs, a new
        one is added, and one of the same cluster (its ``ray`` capability) that is missing
        now takes no more jobs. Local instances are never touched."""
        known = {i.name: i for i in self.instances}
        clusters = {i.capabilities.get("ray") for i in instances} - {None}
        fresh = {i.name for i in instances}
        for instance in instances:
            if instance.name in known:
                known[instance.name].max_jobs = instance.max_jobs
                known[instance.name].capabilities = instance.capabilities
            else:
                self.instances.append(instance)
        for name, instance in known.items():
            if instance.capabilities.get("ray") in clusters and name not in fresh:
                instance.max_jobs = 0

    def serves(self, queue: str) -> list[Instance]:
        """The instances of ``queue``."""
        return [i for i in self.instances if i.queue == queue]

    def place(self, queues: Sequence[str], avoid: str | None = None) -> Instance | None:
        """The instance a job of ``queues`` runs on now, or None when it must wait.

        The first of ``queues`` that this daemon serves is the job's queue (so ``auto``
        falls back to the CPU only where there is no GPU instance at all, rather than
        whenever the GPUs are busy). In it: the least loaded instance with room,
        not ``avoid`` (where the job last failed) unless it is the only one.
        """
        queue = next((q for q in queues if self.serves(q)), None)
        if queue is None:
            return None
        members = self.serves(queue)
        open_ = [i for i in members if i.free > 0]
        if avoid is not None and len(members) > 1:
            open_ = [i for i in open_ if i.name != avoid]
        if not open_:
            return None
        return min(open_, key=lambda i: (len(i.running) / i.max_jobs, len(i.running)))

    def assign(self, job: str, instance: Instance) -> None:
        """Count ``job`` against ``instance``."""
        instance.running.add(job)

    def release(self, job: str) -> None:
        """The job ended (or gave its slot back): free its slot."""
        for instance in self.instances:
            instance.running.discard(job)

    def instance_of(self, job: str) -> Instance | None:
        """The instance running ``job``, if any."""
        return next((i for i in self.instances if job in i.running), None)

    def waiting_reason(self, queues: Sequence[str]) -> str:
        """Why a job of ``queues`` is not running yet, in words a user can act on."""
        queue = next((q for q in queues if self.serves(q)), None)
        if queue is None:
            offered = ", ".join(sorted({i.queue for i in self.instances})) or "none"
            wanted = " or ".join(repr(q) for q in queues)
            return (
                f"waiting: no instance serves queue {wanted} (this daemon serves: {offered}); "
                f"start a daemon with --instances {queues[0]}=1 where that device is"
            )
        members = self.serves(queue)
        busy = sum(len(i.running) for i in members)
        slots = sum(i.max_jobs for i in members)
        return f"waiting for a {queue} instance ({busy} of {slots} slots busy)"

    def to_json(self) -> list[dict[str, Any]]:
        """Every instance, for ``aif aims``."""
        return [i.to_json() for i in self.instances]
