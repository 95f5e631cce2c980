"""The AIW (workflow) file as pydantic models: what a user may write, nothing more.

The YAML is a friendlier spelling of MPAI-AIF AIW metadata (``aif export`` writes the
standard JSON)::

    name: three-stage              # [a-z0-9-], required
    description: ...               # optional
    version: 1.0.0                 # optional, a string
    profile: basic                 # basic | secure
    aims:                          # AIM name ([a-z][a-z0-9_-]*) -> declaration
      gen:
        type: tensor-source        # built-in name, package.module:Class, or entry point
        placement: inproc          # inproc | process | remote | ray
        params: {shape: [4, 4]}    # checked against the AIM class's Params
        heartbeat_timeout: 5.0
        restart: on-failure        # never | on-failure (daemon: the job runs again)
        max_restarts: 3
        restart_backoff: 1.0       # seconds, doubled each time
        peers: [tcp://b:7000]      # placement: remote only: controllers asked to host it
        resources: {num_cpus: 1, custom: {imc: 1}}  # placement: ray only (docs/ray.md)
    connections:                   # short form, or long form with options
      - gen.out -> sum.in
      - {from: gen.out, to: sum.in, queue_size: 100}
    inputs:                        # records fed into input ports at start, then end-of-stream
      sum.in: [1, 2, 3]            # always a list of records: [[1, 2]] is one record [1, 2]
    outputs:                       # output ports whose records are the AIW's result
      - sum.out
    on_restart: requeue            # requeue | interrupt, when the daemon restarts mid-run

Every model forbids unknown fields, so a typo is an error rather than a silently ignored
setting. These models check the shape of the document only; whether AIM types exist,
ports match and types fit is decided by :func:`aif.workflow.resolver.resolve`, which needs
the AIM classes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PrivateAttr,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from aif.communication.limits import DEFAULT_QUEUE_SIZE, MAX_QUEUE_SIZE
from aif.workflow.policies import OnRestart, Placement, Profile, RestartPolicy

#: Workflow names: lowercase letters, digits and dashes (they become ids and file names).
WORKFLOW_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
#: AIM names: a lowercase letter, then lowercase letters, digits, '_' or '-'.
AIM_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
#: Port names as AIM classes declare them (Python-identifier-like).
PORT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_REF = r"[a-z][a-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_]*"
#: ``aim.port`` as written in connections, inputs and outputs.
PORT_REF_PATTERN = rf"^{_REF}$"
#: ``aim.port -> aim.port``, the short form of a connection.
SHORT_CONNECTION_PATTERN = rf"^\s*{_REF}\s*->\s*{_REF}\s*$"

_PORT_REF_RE = re.compile(PORT_REF_PATTERN)

#: A position in the document, as pydantic spells error locations.
Loc = tuple[str | int, ...]

#: A peer controller's User API, which it serves on tcp for the C2C API.
PEER_ADDRESS_PATTERN = r"^tcp://[^\s:]+:[0-9]{1,5}$"
#: Longest AIM name (it names processes, sockets and log lines).
MAX_AIM_NAME = 64


def _port_in_range(address: str) -> str:
    port = int(address.rsplit(":", 1)[1])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} of {address!r} is not a TCP port; give 1 to 65535")
    return address


def _short_name(name: str) -> str:
    if len(name) > MAX_AIM_NAME:
        raise ValueError(
            f"the AIM name {name[:20]!r}... has {len(name)} characters; "
            f"give it at most {MAX_AIM_NAME}"
        )
    return name


PeerAddress = Annotated[
    str, StringConstraints(pattern=PEER_ADDRESS_PATTERN), AfterValidator(_port_in_range)
]
AIMName = Annotated[str, StringConstraints(pattern=AIM_NAME_PATTERN), AfterValidator(_short_name)]
#: A custom resource of a Ray node (``ray start --resources '{"imc": 1}'``).
RayResourceName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)
]


@dataclass(frozen=True)
class SourceMap:
    """File name plus the (line, column), 1-based, of every key and list item.

    Keys are pydantic locations (``("aims", "gen", "placement")``), so a validation
    error's ``loc`` finds its line directly, or through its nearest enclosing key.
    """

    source: str
    marks: Mapping[Loc, tuple[int, int]] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of the nearest enclosing key or item of ``loc``; None if unknown."""
        for end in range(len(loc), 0, -1):
            mark = self.marks.get(tuple(loc[:end]))
            if mark is not None:
                return mark[0]
        return None

    def at(self, loc: Loc) -> str:
        """``file:line`` of ``loc`` (just ``file`` when the line is unknown)."""
        line = self.line_of(loc)
        return f"{self.source}:{line}" if line is not None else self.source

    def where(self, loc: Loc) -> str:
        """``file:line: dotted.path`` for a message about ``loc``."""
        path = format_loc(loc)
        return f"{self.at(loc)}: {path}" if path else self.at(loc)


def format_loc(loc: Loc) -> str:
    """``("connections", 0, "to")`` -> ``connections[0].to``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Model(BaseModel):
    """Base of the workflow models: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PortRef(_Model):
    """One port of one AIM, written ``aim.port`` in YAML."""

    aim: str
    port: str

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            return cls.parse_text(data)
        if isinstance(data, dict | PortRef):
            return data  # the Python spelling, PortRef(aim=..., port=...)
        raise ValueError(f"expected a port reference 'aim.port', got {data!r}")

    @staticmethod
    def parse_text(text: str) -> dict[str, str]:
        """Split ``aim.port``; raises ValueError saying what a port reference looks like."""
        stripped = text.strip()
        if not _PORT_REF_RE.match(stripped):
            raise ValueError(
                f"{text!r} is not a port reference; write 'aim.port', e.g. 'gen.out' "
                "(AIM names: lowercase letters, digits, '_' and '-')"
            )
        aim, _, port = stripped.partition(".")
        return {"aim": aim, "port": port}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # YAML writes a port reference as one string; the object form is Python-only.
        return {
            "type": "string",
            "pattern": PORT_REF_PATTERN,
            "description": "A port of an AIM, written 'aim.port'.",
        }

    def __str__(self) -> str:
        return f"{self.aim}.{self.port}"


class Connection(_Model):
    """A channel from an output port to an input port.

    YAML long form ``{from: gen.out, to: sum.in, queue_size: 100}`` or short form
    ``"gen.out -> sum.in"`` (default options).
    """

    model_config = ConfigDict(populate_by_name=True)

    source: PortRef = Field(
        validation_alias="from",
        serialization_alias="from",
        description="The output port records come from, 'aim.port'.",
    )
    target: PortRef = Field(
        validation_alias="to",
        serialization_alias="to",
        description="The input port records go to, 'aim.port'.",
    )
    queue_size: int = Field(
        default=DEFAULT_QUEUE_SIZE,
        ge=1,
        le=MAX_QUEUE_SIZE,
        description="Records buffered before the writer waits (backpressure, never drops).",
    )
    max_message_size: int | None = Field(
        default=None,
        ge=1,
        description="Largest message in bytes; larger records are refused at the writer.",
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        source, arrow, target = data.partition("->")
        if not arrow or not source.strip() or not target.strip() or "->" in target:
            raise ValueError(
                f"{data!r} is not a connection; write 'aim.port -> aim.port' "
                "(e.g. 'gen.out -> sum.in') or the long form {from: gen.out, to: sum.in}"
            )
        return {"from": source.strip(), "to": target.strip()}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        long_form = handler.resolve_ref_schema(handler(schema))
        return {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": SHORT_CONNECTION_PATTERN,
                    "description": "Short form 'aim.port -> aim.port'.",
                },
                long_form,
            ],
            "description": "A channel from an output port to an input port.",
        }

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}"


class RayResources(_Model):
    """What a ``placement: ray`` AIM asks of its node: Ray places it where these are free."""

    num_cpus: float | None = Field(
        default=None, ge=0, le=100_000, description="CPUs (Ray's CPU resource); default 1."
    )
    num_gpus: float | None = Field(
        default=None, ge=0, le=10_000, description="GPUs (Ray's GPU resource); default 0."
    )
    memory: int | None = Field(
        default=None, ge=0, description="Bytes of memory the node reserves for it (Ray's memory)."
    )
    custom: dict[RayResourceName, Annotated[float, Field(gt=0, le=1e9)]] = Field(
        default_factory=dict,
        description="Custom resources a node declares (ray start --resources), e.g. {imc: 1}.",
    )


class AIMDecl(_Model):
    """One AIM instance of the workflow."""

    type: str = Field(
        min_length=1,
        description="Built-in short name, 'package.module:ClassName', or an 'aif.aims' "
        "entry point name.",
    )
    placement: Placement = Field(
        default="inproc",
        description="inproc: an asyncio task in the controller; process: a child process; "
        "remote: a process started elsewhere that registers itself; ray: a Ray actor on "
        "whichever node of a Ray cluster has its resources.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters, checked against the AIM's Params model."
    )
    heartbeat_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds without a heartbeat after which the AIM counts as failed.",
    )
    restart: RestartPolicy = Field(
        default="never",
        description="What the controller daemon does when this AIM fails or its host is "
        "lost: never (the job fails) or on-failure (the job runs again, on another "
        "instance when there is one, up to max_restarts times).",
    )
    max_restarts: int = Field(
        default=3, ge=0, le=100, description="Most restarts under restart: on-failure."
    )
    restart_backoff: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description="Seconds before the first restart; doubled for each further one.",
    )
    peers: list[PeerAddress] = Field(
        default_factory=list,
        description="Controllers (their tcp://HOST:PORT User API) asked, in order, to host "
        "this placement: remote AIM; the next is tried when one cannot.",
    )

    resources: RayResources | None = Field(
        default=None,
        description="What a placement: ray AIM asks of the Ray node it runs on (default: one CPU).",
    )

    @model_validator(mode="after")
    def _peers_need_remote(self) -> AIMDecl:
        if self.peers and self.placement != "remote":
            raise ValueError(
                "peers: only a placement: remote AIM is hosted by another controller; "
                "set placement: remote or remove peers"
            )
        if self.resources is not None and self.placement != "ray":
            raise ValueError(
                "resources: only a placement: ray AIM asks a Ray cluster for resources; "
                "set placement: ray or remove resources"
            )
        return self


class Workflow(_Model):
    """An AIW: AIMs, the channels between their ports, and what goes in and comes out."""

    model_config = ConfigDict(title="aif workflow (AIW)")

    name: str = Field(
        pattern=WORKFLOW_NAME_PATTERN,
        description="Workflow name: lowercase letters, digits and '-'.",
    )
    description: str = Field(default="", description="What the workflow does.")
    version: str = Field(
        default="1.0.0",
        pattern=r"^[0-9]+(\.[0-9]+)*([-+][0-9A-Za-z.-]+)?$",
        description="Version of this workflow (quote it in YAML: '1.0').",
    )
    profile: Profile = Field(default="basic", description="MPAI-AIF API profile.")
    aims: dict[AIMName, AIMDecl] = Field(
        min_length=1, description="AIM name -> declaration; at least one."
    )
    connections: list[Connection] = Field(
        default_factory=list, description="Channels between output and input ports."
    )
    inputs: dict[PortRef, list[Any]] = Field(
        default_factory=dict,
        description="Input port 'aim.port' -> list of records fed at start, then end-of-stream.",
    )
    outputs: list[PortRef] = Field(
        default_factory=list,
        description="Output ports 'aim.port' whose records are the workflow's result.",
    )
    on_restart: OnRestart = Field(
        default="requeue",
        description="When the controller daemon restarts while this workflow runs: requeue "
        "(run it again) or interrupt (mark it interrupted).",
    )

    _source_map: SourceMap = PrivateAttr(default_factory=lambda: SourceMap("<workflow>"))

    @property
    def source_map(self) -> SourceMap:
        """Where this workflow came from: file name and the line of every key."""
        return self._source_map

    @property
    def source(self) -> str:
        """The file (or ``<string>``) this workflow was loaded from."""
        return self._source_map.source

    def attach_source(self, source_map: SourceMap) -> None:
        """Record where the document came from so later messages can name file:line."""
        self._source_map = source_map

    def where(self, loc: Loc) -> str:
        """``file:line: dotted.path`` prefix for a message about ``loc``."""
        return self._source_map.where(loc)
