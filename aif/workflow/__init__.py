"""AIW files: the YAML model, loading with file:line messages, resolution, export.

``load_workflow`` checks a file's shape; ``resolve`` finds the AIM classes and checks
types and wiring; ``export_metadata`` writes the MPAI-AIF JSON metadata. The JSON Schema
of the file lives in :mod:`aif.workflow.schema`; ``policies`` holds the policy words
(placement, profile, restarts) that the daemon's records share. Names are imported on
first use, so a module that needs only ``policies`` loads no YAML.

May import: ``aif.aims`` (the registry, to find AIM classes), ``aif.communication``,
``aif.errors``; never the Store (its ``store:`` types arrive through the registry).
"""

import typing

from aif import lazy_exports as _lazy

if typing.TYPE_CHECKING:
    from aif.workflow.export import export_metadata
    from aif.workflow.loader import load_workflow, load_workflow_text
    from aif.workflow.model import AIMDecl, Connection, PortRef, Workflow
    from aif.workflow.resolver import ResolvedAIM, ResolvedWorkflow, resolve

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "AIMDecl": "aif.workflow.model",
        "Connection": "aif.workflow.model",
        "PortRef": "aif.workflow.model",
        "ResolvedAIM": "aif.workflow.resolver",
        "ResolvedWorkflow": "aif.workflow.resolver",
        "Workflow": "aif.workflow.model",
        "export_metadata": "aif.workflow.export",
        "load_workflow": "aif.workflow.loader",
        "load_workflow_text": "aif.workflow.loader",
        "resolve": "aif.workflow.resolver",
    },
)

__all__ = [
    "AIMDecl",
    "Connection",
    "PortRef",
    "ResolvedAIM",
    "ResolvedWorkflow",
    "Workflow",
    "export_metadata",
    "load_workflow",
    "load_workflow_text",
    "resolve",
]
