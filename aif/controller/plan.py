"""A run plan: the facts about a resolved AIW that the controller needs to wire it.

Kept apart from the workflow model so the controller reads plain data (who writes
into which port, from where, with what queue size) instead of walking YAML models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aif.communication.limits import DEFAULT_MAX_MESSAGE_SIZE
from aif.communication.types import RecordType
from aif.workflow import ResolvedWorkflow

#: Seconds without a heartbeat before an AIM counts as failed, unless the AIW says.
DEFAULT_HEARTBEAT_TIMEOUT = 5.0


@dataclass(frozen=True)
class PlannedAIM:
    """One AIM of the run."""

    name: str
    type: str
    class_path: str
    placement: str
    params: dict[str, Any]
    heartbeat_timeout: float
    input_ports: tuple[str, ...]
    port_types: Mapping[str, RecordType]
    #: Controllers asked to host a ``placement: remote`` AIM (C2C); empty: started by hand.
    peers: tuple[str, ...] = ()
    restart: str = "never"
    max_restarts: int = 0
    restart_backoff: float = 1.0
    #: Modules a warm worker preloads for this AIM type (its ``warm_modules``); None: the
    #: type does not opt in to warm workers.
    warm_modules: tuple[str, ...] | None = None
    #: False when the AIW left ``placement`` to its default (``inproc``).
    placement_written: bool = True
    #: What a ``placement: ray`` AIM asks of its node (``num_cpus``, ``num_gpus``,
    #: ``memory``, ``custom``); None: one CPU.
    resources: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PlannedConnection:
    """One channel of the run."""

    source_aim: str
    source_port: str
    target_aim: str
    target_port: str
    queue_size: int
    max_message_size: int


@dataclass(frozen=True)
class RunPlan:
    """Everything the controller needs to bring one AIW instance up."""

    name: str
    aims: dict[str, PlannedAIM]
    connections: list[PlannedConnection]
    inputs: dict[str, list[Any]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    #: Folder relative paths in AIM parameters are read from: the workflow file's folder.
    base_dir: str = "."
    #: Folder of whoever started the run (results for the user go there); "" = the cwd.
    work_dir: str = ""

    def writers_per_input(self, aim: str) -> dict[str, int]:
        """How many writers feed each input port of ``aim`` (end-of-streams to expect)."""
        counts = dict.fromkeys(self.aims[aim].input_ports, 0)
        for conn in self.connections:
            if conn.target_aim == aim:
                counts[conn.target_port] += 1
        for ref in self.inputs:
            target, port = ref.split(".", 1)
            if target == aim:
                counts[port] += 1
        return counts

    def writer_placements(self, aim: str, port: str) -> list[str]:
        """Where the writers into ``aim.port`` live (``controller`` for AIW inputs)."""
        places = [
            self.aims[c.source_aim].placement
            for c in self.connections
            if c.target_aim == aim and c.target_port == port
        ]
        if f"{aim}.{port}" in self.inputs:
            places.append("controller")
        return places

    def queue_sizes(self, aim: str) -> dict[str, int]:
        """Receive queue per input port: the largest any connection into it asks for."""
        sizes: dict[str, int] = {}
        for conn in self.connections:
            if conn.target_aim == aim:
                sizes[conn.target_port] = max(sizes.get(conn.target_port, 0), conn.queue_size)
        return sizes

    def max_message_sizes(self, aim: str) -> dict[str, int]:
        """Largest accepted message per input port."""
        sizes: dict[str, int] = {}
        for conn in self.connections:
            if conn.target_aim == aim:
                sizes[conn.target_port] = max(sizes.get(conn.target_port, 0), conn.max_message_size)
        return sizes


def plan_run(resolved: ResolvedWorkflow) -> RunPlan:
    """Reduce a resolved workflow to the plain facts of a run."""
    wf = resolved.workflow
    aims: dict[str, PlannedAIM] = {}
    for name, decl in wf.aims.items():
        cls = resolved.aims[name].cls
        specs = cls.port_specs()
        aims[name] = PlannedAIM(
            name=name,
            type=decl.type,
            class_path=cls.class_path(),
            placement=decl.placement,
            params=dict(decl.params),
            heartbeat_timeout=decl.heartbeat_timeout or DEFAULT_HEARTBEAT_TIMEOUT,
            input_ports=tuple(p for p, s in specs.items() if s.direction == "input"),
            port_types={p: s.type for p, s in specs.items()},
            peers=tuple(decl.peers),
            restart=decl.restart,
            max_restarts=decl.max_restarts,
            restart_backoff=decl.restart_backoff,
            warm_modules=_warm_modules(cls),
            placement_written="placement" in decl.model_fields_set,
            resources=None
            if decl.resources is None
            else decl.resources.model_dump(exclude_none=True),
        )
    connections = [
        PlannedConnection(
            source_aim=c.source.aim,
            source_port=c.source.port,
            target_aim=c.target.aim,
            target_port=c.target.port,
            queue_size=c.queue_size,
            max_message_size=c.max_message_size or DEFAULT_MAX_MESSAGE_SIZE,
        )
        for c in wf.connections
    ]
    return RunPlan(
        name=wf.name,
        aims=aims,
        connections=connections,
        inputs={str(ref): list(records) for ref, records in wf.inputs.items()},
        outputs=[str(ref) for ref in wf.outputs],
        base_dir=_base_dir(wf.source),
    )


def fork_heavy_aims(plan: RunPlan) -> RunPlan:
    """The plan with its heavy default-``inproc`` AIMs placed ``process``, when the run
    has a warm worker to fork them from (another ``process`` AIM that opts in).

    An AIM whose type names heavy ``warm_modules``, modules to import (the analog
    validator's aihwkit check), would import them a second time in the controller's own
    process; forked from the worker that already has them, it costs a fork instead, and
    the controller stays light. An AIW that writes ``placement: inproc`` keeps it.
    """
    if not any(a.placement == "process" and a.warm_modules is not None for a in plan.aims.values()):
        return plan
    moved = {
        name: dataclasses.replace(aim, placement="process")
        for name, aim in plan.aims.items()
        if aim.placement == "inproc" and not aim.placement_written and _heavy(aim.warm_modules)
    }
    return dataclasses.replace(plan, aims={**plan.aims, **moved}) if moved else plan


def _heavy(warm_modules: tuple[str, ...] | None) -> bool:
    """True when a type's warm modules name a module to import (not only warm-ups)."""
    return any(":" not in entry for entry in warm_modules or ())


def _warm_modules(cls: type) -> tuple[str, ...] | None:
    """What a warm worker preloads for an AIM class (``warm_modules``); None: not opted in."""
    modules = getattr(cls, "warm_modules", None)
    return None if modules is None else tuple(str(m) for m in modules)


def _base_dir(source: str) -> str:
    """The folder of the workflow file, or the working directory for a YAML string."""
    path = Path(source)
    if source.startswith("<") or not path.is_file():
        return str(Path.cwd())
    return str(path.resolve().parent)
