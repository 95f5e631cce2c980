"""``--set KEY=VALUE``: one run's changes to a workflow file, checked like the file."""

from __future__ import annotations

import pytest

from aif.errors import WorkflowError
from aif.workflow import load_workflow_text
from aif.workflow.overrides import apply_overrides, parse_override

WORKFLOW = """
name: w
aims:
  src: {type: source, params: {count: 3}}
  sink: {type: collect}
connections: [src.out -> sink.in]
"""


def test_values_keep_their_yaml_types() -> None:
    assert parse_override("a.b=8") == (["a", "b"], 8)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=[1s, 1h]") == (["a"], ["1s", "1h"])
    assert parse_override("a={seed: 3}") == (["a"], {"seed": 3})
    assert parse_override("a='8'") == (["a"], "8")
    assert parse_override("chip=tcp://lab:5555") == (["chip"], "tcp://lab:5555")
    assert parse_override("a=") == (["a"], "")


def test_overrides_apply_in_order_and_create_mappings() -> None:
    data = {"aims": {"x": {"type": "source"}}}
    apply_overrides(data, ["aims.x.params.count=2", "aims.x.params.count=5"])
    assert data["aims"]["x"]["params"] == {"count": 5}


def test_an_override_reaches_the_loaded_workflow() -> None:
    wf = load_workflow_text(WORKFLOW, overrides=["aims.src.params.count=7"])
    assert wf.aims["src"].params == {"count": 7}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("count", "is not KEY=VALUE"),
        ("=3", "is not KEY=VALUE"),
        ("aims..x=1", "is not KEY=VALUE"),
        ("aims.src.type.x=1", "aims.src.type is a str, not a mapping"),
        ("aims.src.params.count=[", "the value is not YAML"),
    ],
)
def test_malformed_overrides_name_the_fault(text: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message.replace(".", r"\.")):
        load_workflow_text(WORKFLOW, overrides=[text])


def test_an_override_that_breaks_the_workflow_gets_the_usual_message() -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(WORKFLOW, overrides=["aims.src.placement=moon"])
    assert "aims.src.placement" in str(caught.value)
