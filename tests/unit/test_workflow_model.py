"""The workflow model, the line-keeping YAML loader and resolution, piece by piece.

The fixture files cover whole documents; these tests pin the parts (short forms,
marks, suggestions, guards) and the API the controller reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pydantic
import pytest

from aif.aims.base import AIM
from aif.aims.builtin import Collect, Source, TensorSourceParams
from aif.errors import WorkflowError
from aif.workflow import (
    AIMDecl,
    Connection,
    PortRef,
    Workflow,
    load_workflow,
    load_workflow_text,
    resolve,
)
from aif.workflow import loader as loader_module
from aif.workflow.loader import parse_yaml
from aif.workflow.messages import suggest
from aif.workflow.model import SourceMap, format_loc


class IntSink(AIM):
    """Takes int32 records (a typed input for the tests)."""

    inputs: ClassVar[dict[str, str]] = {"in": "int32"}


class BadPorts(AIM):
    """Declares a port type that does not parse."""

    outputs: ClassVar[dict[str, str]] = {"out": "int33"}


HERE = f"{__name__}"


def _problems(text: str) -> list[str]:
    with pytest.raises(WorkflowError) as info:
        resolve(load_workflow_text(text, "t.yml"))
    return info.value.problems


# -- model ------------------------------------------------------------------------------


def test_connection_short_and_long_forms_are_the_same_model() -> None:
    short = Connection.model_validate("gen.out -> sum.in")
    long = Connection.model_validate({"from": "gen.out", "to": "sum.in"})
    assert short == long
    assert short.source == PortRef(aim="gen", port="out")
    assert short.target == PortRef(aim="sum", port="in")
    assert short.queue_size == 1000
    assert short.max_message_size is None
    assert str(short) == "gen.out -> sum.in"


def test_connection_can_be_built_in_python_by_field_name() -> None:
    conn = Connection(source=PortRef(aim="a", port="out"), target=PortRef(aim="b", port="in"))
    assert str(conn) == "a.out -> b.in"
    assert conn.model_dump(by_alias=True)["from"] == {"aim": "a", "port": "out"}


def test_short_form_tolerates_spaces_but_not_two_arrows() -> None:
    assert str(Connection.model_validate("  a.out->b.in ")) == "a.out -> b.in"
    with pytest.raises(pydantic.ValidationError, match="is not a connection"):
        Connection.model_validate("a.out -> b.in -> c.in")


def test_port_ref_parses_and_refuses() -> None:
    assert PortRef.model_validate("my_aim-2.port_1") == PortRef(aim="my_aim-2", port="port_1")
    for bad in ("noport", "Gen.out", "gen.", ".out", "gen.out.x"):
        with pytest.raises(pydantic.ValidationError, match="not a port reference"):
            PortRef.model_validate(bad)
    with pytest.raises(pydantic.ValidationError, match="expected a port reference"):
        PortRef.model_validate(3)


def test_aim_decl_defaults() -> None:
    decl = AIMDecl(type="relay")
    assert decl.placement == "inproc"
    assert decl.params == {}
    assert decl.heartbeat_timeout is None


def test_workflow_defaults_and_immutability() -> None:
    wf = load_workflow_text("name: w\naims: {r: {type: relay}}\n")
    assert (wf.version, wf.profile, wf.description) == ("1.0.0", "basic", "")
    assert wf.connections == [] and wf.inputs == {} and wf.outputs == []
    with pytest.raises(pydantic.ValidationError):
        wf.name = "other"  # type: ignore[misc]


def test_inputs_keys_are_port_refs_and_values_lists() -> None:
    wf = load_workflow_text("name: w\naims: {r: {type: relay}}\ninputs: {r.in: [[1, 2], 3]}\n")
    assert wf.inputs == {PortRef(aim="r", port="in"): [[1, 2], 3]}


def test_format_loc() -> None:
    assert format_loc(("connections", 0, "from")) == "connections[0].from"
    assert format_loc(("aims", "gen", "params", "shape", 1)) == "aims.gen.params.shape[1]"
    assert format_loc(()) == ""


def test_source_map_falls_back_to_the_enclosing_key() -> None:
    smap = SourceMap("w.yml", {("aims",): (3, 1), ("aims", "gen"): (4, 3)})
    assert smap.line_of(("aims", "gen", "params", "shape")) == 4
    assert smap.line_of(("name",)) is None
    assert smap.where(("aims", "gen", "type")) == "w.yml:4: aims.gen.type"
    assert smap.where(("name",)) == "w.yml: name"


# -- YAML with marks ----------------------------------------------------------------------


def test_parse_yaml_records_the_line_of_keys_and_items() -> None:
    text = "name: w\naims:\n  gen:\n    type: relay\nconnections:\n  - a.out -> b.in\n"
    data, smap = parse_yaml(text, "w.yml")
    assert data["aims"]["gen"]["type"] == "relay"
    assert smap.marks[("aims", "gen", "type")] == (4, 5)
    assert smap.marks[("connections", 0)] == (6, 5)


def test_merge_keys_and_anchors_are_supported() -> None:
    data, _ = parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert data["other"] == {"x": 1, "y": 3}
    with pytest.raises(WorkflowError, match="duplicate key 'y'"):
        parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 3\n  y: 4\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\n", "t.yml:2: duplicate key 'a' (first at line 1); keep one"),
        ("a: &x [*x]\n", "t.yml:1:4: a recursive alias is not allowed here"),
        ("? [1, 2]\n: 3\n", "t.yml:1:3: mapping keys must be plain strings, got list"),
        ("a: !!set {x}\n", "t.yml:1:4: unsupported YAML tag 'tag:yaml.org,2002:set'"),
        ("a: [1\n", "t.yml:2:1: expected ',' or ']', but got '<stream end>'"),
        (
            "a: 1\n--- \nb: 2\n",
            "t.yml:2:1: expected a single document in the stream, but found another document",
        ),
    ],
)
def test_yaml_problems_name_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(WorkflowError) as info:
        parse_yaml(text, "t.yml")
    assert info.value.problems[0].startswith(message)


def test_alias_expansion_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "MAX_NODES", 50)
    text = "a: &a [1, 2, 3, 4]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    with pytest.raises(WorkflowError, match="more than 50 nodes"):
        parse_yaml(text)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(WorkflowError, match=r"nested too deeply|cannot parse"):
        parse_yaml("a: " + "[" * 600 + "]" * 600)


@pytest.mark.parametrize(
    ("text", "kind"), [("", "an empty document"), ("- 1\n", "a list"), ("3\n", "a number")]
)
def test_document_must_be_a_mapping(text: str, kind: str) -> None:
    with pytest.raises(WorkflowError) as info:
        load_workflow_text(text, "t.yml")
    assert info.value.problems == [
        f"t.yml:1: the workflow must be a mapping with name:, aims:, ... but is {kind}"
    ]


def test_load_workflow_reads_files_and_names_them(tmp_path: Path) -> None:
    path = tmp_path / "w.yml"
    path.write_text("name: w\naims: {r: {type: relay}}\nbogus: 1\n", encoding="utf-8")
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert info.value.problems == [
        f"{path}:3: bogus: unknown field 'bogus'"
        + (
            "; allowed fields: name, description, version, profile, aims, connections, inputs, "
            "outputs, on_restart"
        )
    ]
    path.write_text("name: w\naims: {r: {type: relay}}\n", encoding="utf-8")
    assert load_workflow(path).source == str(path)


def test_load_workflow_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="does not exist"):
        load_workflow(tmp_path / "missing.yml")
    bad = tmp_path / "latin1.yml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(WorkflowError, match="is not UTF-8 text"):
        load_workflow(bad)


# -- messages ---------------------------------------------------------------------------


def test_suggest_prefers_a_prefix_then_similarity() -> None:
    assert suggest("inprocess", ["inproc", "process", "remote"]) == " (did you mean 'inproc'?)"
    assert suggest("proc", ["inproc", "process", "remote"]) == " (did you mean 'process'?)"
    assert suggest("paramz", ["type", "params"]) == " (did you mean 'params'?)"
    assert suggest("zzz", ["type", "params"]) == ""


def test_pydantic_problems_are_one_line_each_in_file_order() -> None:
    text = (
        "aims:\n"  # 1
        "  gen:\n"  # 2
        "    type: relay\n"  # 3
        "    placement: inprocess\n"  # 4
        "    heartbeat_timeout: -1\n"  # 5
        "profile: Basic\n"  # 6
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow_text(text, "t.yml")
    assert info.value.problems == [
        "t.yml: missing required field 'name'",
        "t.yml:4: aims.gen.placement: 'inprocess' is not one of inproc, process, remote, ray "
        "(did you mean 'inproc'?)",
        "t.yml:5: aims.gen.heartbeat_timeout: must be greater than 0.0, got -1",
        "t.yml:6: profile: 'Basic' is not one of basic, secure (did you mean 'basic'?)",
    ]


def test_wrong_container_types_say_what_was_expected() -> None:
    text = "name: w\naims: [relay]\nconnections: {a: b}\n"
    with pytest.raises(WorkflowError) as info:
        load_workflow_text(text, "t.yml")
    assert info.value.problems == [
        "t.yml:2: aims: expected a mapping (key: value), got list ['relay']",
        "t.yml:3: connections: expected a list, got mapping {'a': 'b'}",
    ]


# -- resolve ------------------------------------------------------------------------------


def test_resolve_gives_the_controller_classes_params_and_ports() -> None:
    wf = load_workflow_text(
        "name: w\n"
        "aims:\n"
        "  gen: {type: tensor-source, params: {shape: [2], count: 1}}\n"
        "  src: {type: source, params: {records: [1]}}\n"
        "  sink: {type: collect}\n"
        "connections:\n"
        "  - gen.out -> sink.in\n"
        "  - src.out -> sink.in\n"
        "outputs: [src.out]\n"
    )
    resolved = resolve(wf)
    assert resolved.workflow is wf
    assert resolved.aims["src"].cls is Source
    assert resolved.aims["sink"].cls is Collect
    params = resolved.aims["gen"].params
    assert isinstance(params, TensorSourceParams) and params.shape == [2]
    assert resolved.aims["sink"].params is None
    assert list(resolved.aims["sink"].inputs) == ["in"]
    assert list(resolved.aims["gen"].outputs) == ["out"]
    sink_in = PortRef(aim="sink", port="in")
    assert resolved.port(sink_in).type_text == "any"
    assert [str(c) for c in resolved.connections_to(sink_in)] == [
        "gen.out -> sink.in",
        "src.out -> sink.in",
    ]
    assert resolved.connections_from(PortRef(aim="src", port="out"))[0].target == sink_in
    assert resolved.outputs == (PortRef(aim="src", port="out"),)
    assert resolved.warnings == ()


def test_resolve_warns_about_outputs_nobody_reads() -> None:
    resolved = resolve(load_workflow_text("name: w\naims:\n  src: {type: source}\n", "t.yml"))
    assert resolved.warnings == (
        "t.yml:3: aims.src: output port 'out' is neither connected nor listed in 'outputs'; "
        "its records are discarded",
    )


def test_resolve_a_workflow_built_in_python() -> None:
    wf = Workflow(
        name="py",
        aims={"src": AIMDecl(type="source"), "sink": AIMDecl(type="collect")},
        connections=[Connection.model_validate("src.out -> sink.in")],
    )
    assert resolve(wf).aims["src"].cls is Source
    broken = wf.model_copy(update={"connections": []})
    with pytest.raises(WorkflowError) as info:
        resolve(broken)
    assert info.value.problems[0].startswith("<workflow>: aims.sink: input port 'in'")


def test_inputs_are_type_checked_against_the_port() -> None:
    problems = _problems(
        f"name: w\naims:\n  sink: {{type: '{HERE}:IntSink'}}\n"
        "inputs:\n  sink.in: [1, two, 3000000000]\n"
    )
    assert problems == [
        "t.yml:5: inputs.sink.in[1]: expected int32, got str 'two'",
        "t.yml:5: inputs.sink.in[2]: 3000000000 does not fit int32 (-2147483648..2147483647)",
    ]


def test_any_output_does_not_fit_a_typed_input() -> None:
    problems = _problems(
        f"name: w\naims:\n  src: {{type: source}}\n  sink: {{type: '{HERE}:IntSink'}}\n"
        "connections: [src.out -> sink.in]\n"
    )
    assert problems == [
        "t.yml:5: connections[0]: src.out (any) cannot feed sink.in (int32): "
        "any does not fit int32: the output may send any value"
    ]


def test_an_aim_class_with_a_bad_port_type_is_reported() -> None:
    problems = _problems(f"name: w\naims:\n  bad: {{type: '{HERE}:BadPorts'}}\n")
    assert len(problems) == 1
    assert problems[0].startswith(
        f"t.yml:3: aims.bad.type: AIM class {HERE}:BadPorts declares a port type that does "
        "not parse: "
    )


def test_a_plugin_that_fails_to_import_is_a_problem_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "aif_broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = _problems("name: w\naims:\n  x: {type: 'aif_broken_plugin:Thing'}\n")
    assert len(problems) == 1
    assert problems[0].startswith("t.yml:3: aims.x.type: AIM type 'aif_broken_plugin:Thing'")
    assert "boom" in problems[0]


def test_all_problems_are_collected_across_aims_and_wiring() -> None:
    problems = _problems(
        "name: w\n"
        "aims:\n"
        "  a: {type: relai}\n"  # 3
        "  b: {type: relay, params: {x: 1}}\n"  # 4
        "  c: {type: collect}\n"  # 5
        "connections:\n"
        "  - b.out -> c.inn\n"  # 7
        "  - b.out -> d.in\n"  # 8
        "inputs:\n"
        "  b.in: [1]\n"
        "outputs: [b.in]\n"  # 11
    )
    assert [p.split(":")[1] for p in problems] == ["3", "4", "7", "8", "11"]


def test_unfed_inputs_are_not_reported_while_a_reference_is_broken() -> None:
    problems = _problems(
        "name: w\naims:\n  src: {type: source}\n  sink: {type: collect}\n"
        "connections: [src.out -> sink.inn]\n"
    )
    assert len(problems) == 1 and "has no input port 'inn'" in problems[0]
