"""Read an AIW file into a :class:`~aif.workflow.model.Workflow`, or say precisely why not.

Two things make the messages good, and both live here:

* The file is read as a regular file of at most :data:`MAX_FILE_BYTES`
  (:mod:`aif.inputs.files`) and its YAML with the one safe loader of user
  YAML (:func:`aif.inputs.safe_yaml.load_yaml`), which records the line of every
  key and list item under the pydantic location it will have
  (``("aims", "gen", "placement")``) and bounds size, depth and alias expansion.
  Duplicate keys, which ``yaml.safe_load`` silently drops, are errors.
* pydantic's errors are rewritten one per line as ``file:line: dotted.path: problem``
  by :mod:`aif.workflow.messages`.

Whether AIM types exist and ports fit is :func:`aif.workflow.resolver.resolve`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic

from aif.errors import InputError, WorkflowError
from aif.inputs import safe_yaml
from aif.inputs.files import MAX_TEXT_BYTES, read_text_file
from aif.workflow.messages import format_validation_errors, kind_of
from aif.workflow.model import SourceMap, Workflow
from aif.workflow.overrides import apply_overrides

#: Upper bound on YAML nodes after alias expansion (guards against "billion laughs").
MAX_NODES = safe_yaml.MAX_NODES
#: Largest workflow file read.
MAX_FILE_BYTES = MAX_TEXT_BYTES


def load_workflow(path: Path | str, overrides: Sequence[str] = ()) -> Workflow:
    """Load and check the shape of the AIW in ``path`` (raises ``WorkflowError``).

    ``overrides`` are ``KEY=VALUE`` changes applied before the check (``--set``).
    """
    path = Path(path)
    try:
        text = read_text_file(path, "workflow file", MAX_FILE_BYTES)
    except InputError as exc:
        raise as_workflow_error(exc) from exc
    return load_workflow_text(text, source=str(path), overrides=overrides)


def load_workflow_text(
    text: str, source: str = "<string>", overrides: Sequence[str] = ()
) -> Workflow:
    """Load an AIW from YAML text; ``source`` names it in messages (raises ``WorkflowError``)."""
    data, source_map = parse_text(text, source, overrides)
    return workflow_from_data(data, source_map, source)


def parse_text(
    text: str, source: str = "<string>", overrides: Sequence[str] = ()
) -> tuple[Any, SourceMap]:
    """The plain data of a workflow text with its ``--set`` values applied, and the line
    of every key (raises ``WorkflowError``): the part of loading that reads YAML, which
    the daemon runs in a child process (:mod:`aif.workflow.parse_worker`)."""
    data, source_map = parse_yaml(text, source)
    if overrides:
        data = apply_overrides(data, overrides)
    return data, source_map


def workflow_from_data(data: Any, source_map: SourceMap, source: str) -> Workflow:
    """The ``Workflow`` of parsed data, its problems placed by ``source_map``."""
    if not isinstance(data, dict):
        kind = "an empty document" if data is None else f"a {kind_of(data)}"
        raise WorkflowError(
            f"invalid workflow {source}",
            [f"{source}:1: the workflow must be a mapping with name:, aims:, ... but is {kind}"],
        )
    try:
        workflow = Workflow.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = format_validation_errors(exc, Workflow, source_map)
        raise WorkflowError(f"invalid workflow {source}", problems) from exc
    workflow.attach_source(source_map)
    return workflow


# -- YAML with line numbers ------------------------------------------------------------


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse YAML safely, returning the data and the line of every key and list item."""
    try:
        data, marks = safe_yaml.load_yaml(text, source, max_nodes=MAX_NODES)
    except InputError as exc:
        raise as_workflow_error(exc) from exc
    return data, SourceMap(source, marks)


def as_workflow_error(exc: InputError) -> WorkflowError:
    """The same faults, as the workflow's error."""
    return WorkflowError(str(exc).split("\n", 1)[0], exc.problems)
