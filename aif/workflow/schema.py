"""The JSON Schema of AIW files, generated from :class:`~aif.workflow.model.Workflow`.

Editors use it to complete and check workflow YAML. The checked-in copy
``workflows/workflow.schema.json`` is regenerated with::

    python -m aif.workflow.schema > workflows/workflow.schema.json

and a test fails when it drifts from the model.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aif.workflow.model import Workflow

SCHEMA_ID = "urn:aif:workflow.schema.json"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a workflow file."""
    schema = Workflow.model_json_schema(mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        **schema,
        "title": "aif workflow (AIW)",
        "description": (
            "An AI Workflow for the aif runtime: AIMs, the channels between their typed "
            "ports, and the records fed in and collected. Generated from "
            "aif.workflow.model.Workflow; regenerate with "
            "'python -m aif.workflow.schema > workflows/workflow.schema.json'."
        ),
    }


def schema_text() -> str:
    """The schema as the checked-in file spells it (sorted keys, two-space indent)."""
    return json.dumps(workflow_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Print the schema to stdout."""
    sys.stdout.write(schema_text())


if __name__ == "__main__":
    main()
