"""From a well-formed workflow to a runnable one: AIM classes, parameters, checked wiring.

:func:`resolve` finds every AIM class, validates its parameters, and checks the wiring
against the classes' typed ports. It reports *every* problem at once, each as
``file:line: path: problem`` with the fix or the nearest valid name, because a user
fixing a workflow one error per run soon stops reading them::

    aif.yml:14: connections[1].to: AIM 'sum' has no input port 'inn' (did you mean 'in'?); ...
    aif.yml:20: aims.sink: input port 'in' is neither connected nor fed by 'inputs', ...

The controller works only with the :class:`ResolvedWorkflow` this returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from aif.aims.base import AIM
from aif.aims.registry import PrefixedTypes, prefixed_types, resolve_aim_type, type_prefix
from aif.communication.ports import PortSpec
from aif.communication.types import compatibility_problem
from aif.errors import PortTypeError, RegistryError, SecurityError, StoreError, WorkflowError
from aif.workflow.messages import format_problems, suggest, validation_problems
from aif.workflow.model import AIMDecl, Connection, Loc, PortRef, Workflow, format_loc

Direction = Literal["input", "output"]


@dataclass(frozen=True)
class ResolvedAIM:
    """One AIM of a workflow with its class, validated parameters and parsed ports."""

    name: str
    decl: AIMDecl
    cls: type[AIM]
    params: pydantic.BaseModel | None
    ports: Mapping[str, PortSpec]

    @property
    def inputs(self) -> dict[str, PortSpec]:
        """Input ports by name."""
        return {n: p for n, p in self.ports.items() if p.direction == "input"}

    @property
    def outputs(self) -> dict[str, PortSpec]:
        """Output ports by name."""
        return {n: p for n, p in self.ports.items() if p.direction == "output"}


@dataclass(frozen=True)
class ResolvedWorkflow:
    """A workflow whose AIM types, parameters, ports and wiring all check out."""

    workflow: Workflow
    aims: Mapping[str, ResolvedAIM]
    connections: tuple[Connection, ...]
    inputs: Mapping[PortRef, Sequence[Any]]
    outputs: tuple[PortRef, ...]
    #: Things that run but are probably not meant (e.g. records nobody reads).
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self.workflow.name

    def port(self, ref: PortRef) -> PortSpec:
        """The port ``ref`` names (KeyError if it is not part of this workflow)."""
        return self.aims[ref.aim].ports[ref.port]

    def connections_from(self, ref: PortRef) -> list[Connection]:
        """Connections whose source is output port ``ref`` (fan-out)."""
        return [c for c in self.connections if c.source == ref]

    def connections_to(self, ref: PortRef) -> list[Connection]:
        """Connections whose target is input port ``ref`` (fan-in)."""
        return [c for c in self.connections if c.target == ref]


def resolve(workflow: Workflow, *, store_types: PrefixedTypes | None = None) -> ResolvedWorkflow:
    """Resolve and check ``workflow``; raises ``WorkflowError`` listing every problem.

    ``store_types`` (an ``aif.store.StoreTypes``) says where ``store:NAME@VERSION`` AIMs
    are installed and fetched from (default: the default state directory and
    ``$AIF_STORE``).
    """
    return _Resolver(workflow, store_types).run()


class _Resolver:
    """One pass over a workflow that collects problems instead of stopping at the first."""

    def __init__(self, workflow: Workflow, store_types: PrefixedTypes | None = None) -> None:
        self.workflow = workflow
        self.store_types = store_types
        self.map = workflow.source_map
        self.problems: list[tuple[Loc, str]] = []
        self.warnings: list[str] = []
        self.aims: dict[str, ResolvedAIM] = {}
        #: References to AIMs or ports that do not exist (counted by ``_port``).
        self.unresolved_refs = 0

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append((loc, message))

    def run(self) -> ResolvedWorkflow:
        for name, decl in self.workflow.aims.items():
            self._resolve_aim(name, decl)
        connected = self._check_connections()
        self._check_inputs(connected)
        self._check_outputs()
        before = len(self.problems)
        self._check_unfed_inputs(connected)
        if len(self.problems) == before:  # an unfed input explains a stall already
            self._check_cycles()
        if self.problems:
            count = len(self.problems)
            raise WorkflowError(
                f"workflow {self.workflow.source} does not validate "
                f"({count} problem{'s' if count > 1 else ''})",
                format_problems(self.problems, self.map),
            )
        return ResolvedWorkflow(
            workflow=self.workflow,
            aims=self.aims,
            connections=tuple(self.workflow.connections),
            inputs={ref: tuple(records) for ref, records in self.workflow.inputs.items()},
            outputs=tuple(self.workflow.outputs),
            warnings=tuple(self.warnings),
        )

    # -- AIMs ----------------------------------------------------------------------------

    def _resolve_aim(self, name: str, decl: AIMDecl) -> None:
        loc: Loc = ("aims", name)
        try:
            cls = self._aim_class(decl.type)
        except (RegistryError, StoreError, SecurityError) as exc:
            self.problem((*loc, "type"), str(exc))
            return
        except Exception as exc:  # a plug-in that fails to import must not crash validate
            self.problem(
                (*loc, "type"),
                f"AIM type {decl.type!r} failed to load: {type(exc).__name__}: {exc}",
            )
            return
        try:
            ports = cls.port_specs()
        except PortTypeError as exc:
            first = str(exc).splitlines()[0]
            self.problem(
                (*loc, "type"),
                f"AIM class {cls.class_path()} declares a port type that does not parse: "
                f"{first}; fix the class's inputs/outputs",
            )
            return
        params: pydantic.BaseModel | None = None
        try:
            params = cls.validate_params(decl.params)
        except pydantic.ValidationError as exc:
            model = cls.Params if cls.Params is not None else pydantic.BaseModel
            self.problems.extend(validation_problems(exc, model, (*loc, "params")))
        except (ValueError, TypeError) as exc:
            self.problem((*loc, "params"), str(exc))
        self.aims[name] = ResolvedAIM(name=name, decl=decl, cls=cls, params=params, ports=ports)

    def _aim_class(self, type_text: str) -> type[AIM]:
        prefix = type_prefix(type_text)
        if prefix is None:
            return resolve_aim_type(type_text)
        if self.store_types is None:
            self.store_types = prefixed_types(prefix)
        cls, warnings = self.store_types.aim_class(type_text, self.workflow.profile)
        self.warnings.extend(warnings)
        return cls

    # -- port references -----------------------------------------------------------------

    def _port(self, ref: PortRef, loc: Loc, direction: Direction, role: str) -> PortSpec | None:
        """The port ``ref`` names if it exists with ``direction``; else report and None."""
        declared = list(self.workflow.aims)
        if ref.aim not in self.workflow.aims:
            self.unresolved_refs += 1
            self.problem(
                loc,
                f"unknown AIM {ref.aim!r}{suggest(ref.aim, declared)}; "
                f"declared AIMs: {', '.join(declared)}",
            )
            return None
        aim = self.aims.get(ref.aim)
        if aim is None:  # its type did not resolve: already reported
            return None
        spec = aim.ports.get(ref.port)
        if spec is not None and spec.direction == direction:
            return spec
        self.unresolved_refs += 1
        same = [n for n, p in aim.ports.items() if p.direction == direction]
        listing = f"its {direction} ports: {', '.join(same) or '(none)'}"
        if spec is not None:
            listing = (
                f"{ref.aim}'s {direction} ports: {', '.join(same)}"
                if same
                else f"{ref.aim!r} has no {direction} ports"
            )
            self.problem(
                loc,
                f"{ref} is an {spec.direction} port, but {role} must be an {direction} port; "
                f"{listing}",
            )
        else:
            hint = suggest(ref.port, same)
            self.problem(
                loc, f"AIM {ref.aim!r} has no {direction} port {ref.port!r}{hint}; {listing}"
            )
        return None

    def _check_connections(self) -> dict[PortRef, int]:
        """Check every connection; return the connected input ports (-> first index)."""
        seen: dict[tuple[PortRef, PortRef], int] = {}
        connected: dict[PortRef, int] = {}
        for index, conn in enumerate(self.workflow.connections):
            loc: Loc = ("connections", index)
            key = (conn.source, conn.target)
            if key in seen:
                first: Loc = ("connections", seen[key])
                self.problem(
                    loc,
                    f"duplicate connection {conn} (first at {format_loc(first)}, "
                    f"{self.map.at(first)}); remove one",
                )
                continue
            seen[key] = index
            if self._swapped(conn, loc):
                continue
            source = self._port(conn.source, (*loc, "from"), "output", "'from'")
            target = self._port(conn.target, (*loc, "to"), "input", "'to'")
            connected.setdefault(conn.target, index)
            if source is None or target is None:
                continue
            reason = compatibility_problem(source.type, target.type)
            if reason is not None:
                plain = reason == f"{source.type} does not fit {target.type}"
                self.problem(
                    loc,
                    f"{conn.source} ({source.type_text}) cannot feed {conn.target} "
                    f"({target.type_text}){'' if plain else f': {reason}'}",
                )
        return connected

    def _swapped(self, conn: Connection, loc: Loc) -> bool:
        """Report a connection written backwards (input -> output) as one problem."""
        source_aim, target_aim = self.aims.get(conn.source.aim), self.aims.get(conn.target.aim)
        if source_aim is None or target_aim is None:
            return False
        if conn.source.port in source_aim.inputs and conn.target.port in target_aim.outputs:
            self.unresolved_refs += 1
            self.problem(
                loc,
                f"{conn} runs from an input port to an output port; "
                f"swap the ends: {conn.target} -> {conn.source}",
            )
            return True
        return False

    def _check_inputs(self, connected: Mapping[PortRef, int]) -> None:
        for ref, records in self.workflow.inputs.items():
            loc: Loc = ("inputs", str(ref))
            spec = self._port(ref, loc, "input", "an 'inputs' key")
            if spec is None:
                continue
            if ref in connected:
                conn = self.workflow.connections[connected[ref]]
                self.problem(
                    loc,
                    f"{ref} is fed by 'inputs' and also connected from {conn.source} "
                    f"(connections[{connected[ref]}]); feed it one way: remove one",
                )
            for index, record in enumerate(records):
                item: Loc = (*loc, index)
                try:
                    spec.type.check(record, path=format_loc(item))
                except PortTypeError as exc:
                    self.problems.append((item, str(exc)))

    def _check_outputs(self) -> None:
        seen: dict[PortRef, int] = {}
        for index, ref in enumerate(self.workflow.outputs):
            loc: Loc = ("outputs", index)
            if ref in seen:
                self.problem(loc, f"{ref} is listed twice (first at outputs[{seen[ref]}])")
                continue
            seen[ref] = index
            self._port(ref, loc, "output", "an 'outputs' entry")

    def _check_unfed_inputs(self, connected: Mapping[PortRef, int]) -> None:
        """Every input port needs a writer, or its AIM waits forever.

        Skipped when a connection or ``inputs`` key names a port that does not exist:
        the unfed port is then most likely the one meant, and reporting it twice for one
        typo only buries the real problem.
        """
        if self.unresolved_refs:
            return
        collected = set(self.workflow.outputs)
        feeding = {c.source for c in self.workflow.connections}
        for name, aim in self.aims.items():
            loc: Loc = ("aims", name)
            for port in aim.inputs:
                ref = PortRef(aim=name, port=port)
                if ref in connected or ref in self.workflow.inputs:
                    continue
                self.problem(
                    loc,
                    f"input port {port!r} is neither connected nor fed by 'inputs', so "
                    f"{name!r} would wait forever; add a connection '<aim>.<port> -> {ref}' "
                    f"or records under 'inputs: {{{ref}: [...]}}'",
                )
            for port in aim.outputs:
                ref = PortRef(aim=name, port=port)
                if ref not in feeding and ref not in collected:
                    self.warnings.append(
                        f"{self.map.where(loc)}: output port {port!r} is neither connected "
                        "nor listed in 'outputs'; its records are discarded"
                    )

    def _check_cycles(self) -> None:
        """AIMs that only feed each other wait for each other forever: refuse them.

        Every AIM must be reachable along the connections from a source: an AIM without
        input ports, or one with records under ``inputs``. A connection from an AIM to
        itself is fine as feedback of an AIM fed from elsewhere, and named as the cause
        when it is the AIM's only feed. Skipped while references are unresolved.
        """
        if self.unresolved_refs or len(self.aims) != len(self.workflow.aims):
            return
        starts = {name for name, aim in self.aims.items() if not aim.inputs}
        starts |= {ref.aim for ref in self.workflow.inputs}
        after: dict[str, set[str]] = {}
        for conn in self.workflow.connections:
            after.setdefault(conn.source.aim, set()).add(conn.target.aim)
        reached, todo = set(starts), list(starts)
        while todo:
            for nxt in after.get(todo.pop(), set()) - reached:
                reached.add(nxt)
                todo.append(nxt)
        stuck = [name for name in self.workflow.aims if name not in reached]
        if not stuck:
            return
        for index, conn in enumerate(self.workflow.connections):
            if conn.source.aim == conn.target.aim and conn.source.aim in stuck:
                self.problem(
                    ("connections", index),
                    f"{conn} feeds {conn.source.aim!r} its own output and nothing else "
                    "starts it, so it would wait for itself forever; feed it from an AIM "
                    "without inputs or records under 'inputs', or remove this connection",
                )
                return
        names = ", ".join(repr(n) for n in stuck)
        self.problem(
            ("aims", stuck[0]),
            f"AIMs {names} only receive from each other (a cycle no source starts), so "
            "they would wait forever; connect one of them from an AIM without inputs, "
            "or feed it records under 'inputs'",
        )
