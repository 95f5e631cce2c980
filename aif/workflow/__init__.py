"""AIW files: the YAML model, loading with file:line messages, resolution, export.

``load_workflow`` checks a file's shape; ``resolve`` finds the AIM classes and checks
types and wiring; ``export_metadata`` writes the MPAI-AIF JSON metadata. The JSON Schema
of the file lives in :mod:`aif.workflow.schema` (not imported here, so that
``python -m aif.workflow.schema`` runs it cleanly).
"""

from aif.workflow.export import export_metadata
from aif.workflow.loader import load_workflow, load_workflow_text
from aif.workflow.model import AIMDecl, Connection, PortRef, Workflow
from aif.workflow.resolve import ResolvedAIM, ResolvedWorkflow, resolve

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
