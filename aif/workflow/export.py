"""A resolved workflow as MPAI-AIF JSON metadata (what ``aif export FILE`` prints).

The result holds the AIW's metadata and each AIM's, every part validated by the models
in :mod:`aif.aims.metadata`::

    {"AIW": {"Identifier": ..., "SubAIMs": [...], "Topology": [...], ...},
     "AIMs": {"gen": {"Identifier": ..., "Ports": [...], "Implementations": [...]}, ...}}

Mapping from the YAML: each AIM becomes a ``SubAIMs`` entry (``Specification.AIM`` is its
``type``) and a full AIM metadata record (``Ports`` with their ``RecordType`` strings,
``IsRemote`` from ``placement: remote`` or ``ray``, ``Implementations[0].BinaryName`` its
class path, ``ResourcePolicies`` its placement, heartbeat timeout and a Ray AIM's
resources: ``CPU:Number``, ``GPU:Number``, ``Memory``, ``aif:Resource:NAME``); each
connection becomes a ``Topology`` channel; ``inputs`` and ``outputs`` become the AIW's
own ``Ports`` and channels whose AIW end has ``AIMName`` ``""``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from aif.aims.metadata import (
    INPUT,
    OUTPUT,
    AIMMetadata,
    AIWMetadata,
    Channel,
    Identifier,
    Implementation,
    Port,
    PortID,
    ResourcePolicy,
    Specification,
    SubAIM,
    aim_identifier,
    aim_ports,
)
from aif.workflow.model import AIMDecl
from aif.workflow.resolver import ResolvedAIM, ResolvedWorkflow

#: ``ImplementerID`` of the AIW itself: the runtime that composed it.
IMPLEMENTER = "aif"


class WorkflowMetadata(BaseModel):
    """The AIW's metadata plus the metadata of each of its AIMs, by instance name."""

    model_config = ConfigDict(extra="forbid")

    AIW: AIWMetadata
    AIMs: dict[str, AIMMetadata]


def resource_policies(decl: AIMDecl) -> list[ResourcePolicy]:
    """aif's placement and supervision settings as ``ResourcePolicies`` entries."""
    policies = [
        ResourcePolicy(Name="aif:Placement", Request=decl.placement),
    ]
    if decl.heartbeat_timeout is not None:
        policies.append(ResourcePolicy(Name="aif:HeartbeatTimeout", Request=decl.heartbeat_timeout))
    wanted = decl.resources
    if wanted is not None:  # placement: ray: what it asks of its node, in the spec's names
        for name, amount in (
            ("CPU:Number", wanted.num_cpus),
            ("GPU:Number", wanted.num_gpus),
            ("Memory", wanted.memory),
        ):
            if amount is not None:
                policies.append(ResourcePolicy(Name=name, Request=amount))
        for custom, amount in sorted(wanted.custom.items()):
            policies.append(ResourcePolicy(Name=f"aif:Resource:{custom}", Request=amount))
    return policies


def _aim(resolved: ResolvedWorkflow, aim: ResolvedAIM) -> AIMMetadata:
    cls = aim.cls
    return AIMMetadata(
        Identifier=aim_identifier(cls, aim.decl.type, resolved.name),
        APIProfile="Secure" if resolved.workflow.profile == "secure" else "Basic",
        Description=cls.description(),
        Ports=aim_ports(cls, is_remote=aim.decl.placement in ("remote", "ray")),
        Implementations=[Implementation(BinaryName=cls.class_path(), Version=cls.version)],
        ResourcePolicies=resource_policies(aim.decl),
    )


def aiw_metadata(resolved: ResolvedWorkflow) -> AIWMetadata:
    """The AIW's own metadata: its ports, SubAIMs and Topology."""
    workflow = resolved.workflow
    ports: list[Port] = []
    topology = [
        Channel(
            Output=PortID(AIMName=c.source.aim, PortName=c.source.port),
            Input=PortID(AIMName=c.target.aim, PortName=c.target.port),
        )
        for c in resolved.connections
    ]
    for ref in resolved.inputs:
        ports.append(Port(Name=str(ref), Direction=INPUT, RecordType=resolved.port(ref).type_text))
        topology.append(
            Channel(
                Output=PortID(AIMName="", PortName=str(ref)),
                Input=PortID(AIMName=ref.aim, PortName=ref.port),
            )
        )
    for ref in resolved.outputs:
        ports.append(Port(Name=str(ref), Direction=OUTPUT, RecordType=resolved.port(ref).type_text))
        topology.append(
            Channel(
                Output=PortID(AIMName=ref.aim, PortName=ref.port),
                Input=PortID(AIMName="", PortName=str(ref)),
            )
        )
    return AIWMetadata(
        Identifier=Identifier(
            ImplementerID=IMPLEMENTER,
            Specification=Specification(AIW=workflow.name, AIM="", Version=workflow.version),
        ),
        APIProfile="Secure" if workflow.profile == "secure" else "Basic",
        Description=workflow.description,
        Ports=ports,
        SubAIMs=[
            SubAIM(Name=name, Identifier=aim_identifier(aim.cls, aim.decl.type, workflow.name))
            for name, aim in resolved.aims.items()
        ],
        Topology=topology,
    )


def workflow_metadata(resolved: ResolvedWorkflow) -> WorkflowMetadata:
    """The AIW's metadata and every AIM's, as validated models."""
    return WorkflowMetadata(
        AIW=aiw_metadata(resolved),
        AIMs={name: _aim(resolved, aim) for name, aim in resolved.aims.items()},
    )


def export_metadata(resolved: ResolvedWorkflow) -> dict[str, Any]:
    """MPAI-AIF JSON metadata of a resolved workflow, ready for ``json.dumps``."""
    return workflow_metadata(resolved).model_dump(mode="json", exclude_none=True)
