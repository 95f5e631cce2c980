"""workflows/workflow.schema.json is generated from the model and must not drift from it."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import yaml

from aif.workflow.model import AIMDecl, Connection, Workflow
from aif.workflow.schema import SCHEMA_ID, schema_text, workflow_json_schema

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "workflows" / "workflow.schema.json"
REGENERATE = "python -m aif.workflow.schema > workflows/workflow.schema.json"


def test_checked_in_schema_matches_the_model() -> None:
    assert CHECKED_IN.exists(), f"{CHECKED_IN} is missing; create it with: {REGENERATE}"
    assert CHECKED_IN.read_text(encoding="utf-8") == schema_text(), (
        f"workflows/workflow.schema.json is out of date with aif.workflow.model; "
        f"regenerate it with: {REGENERATE}"
    )


def test_schema_describes_the_yaml_spelling() -> None:
    schema = workflow_json_schema()
    assert schema["$id"] == SCHEMA_ID
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(Workflow.model_fields)
    assert schema["required"] == ["name", "aims"]
    defs = schema["$defs"]
    aim = defs["AIMDecl"]
    assert set(aim["properties"]) == set(AIMDecl.model_fields)
    placement = AIMDecl.model_fields["placement"].annotation
    assert aim["properties"]["placement"]["enum"] == list(typing.get_args(placement))
    short, long = defs["Connection"]["anyOf"]
    assert short["type"] == "string"
    assert set(long["properties"]) == {"from", "to", "queue_size", "max_message_size"}
    assert set(long["properties"]) == {
        info.validation_alias or name for name, info in Connection.model_fields.items()
    }
    assert defs["PortRef"]["type"] == "string"


def test_schema_accepts_the_valid_fixtures_and_refuses_unknown_fields() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(CHECKED_IN.read_text()))
    for path in sorted((ROOT / "tests" / "workflows").glob("valid-*.yml")):
        validator.validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert not validator.is_valid({"name": "x", "aims": {"a": {"type": "relay"}}, "bogus": 1})
