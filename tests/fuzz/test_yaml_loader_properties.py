"""Properties of the loaders of user YAML: whatever the text, a workflow, an experiment
file or a ``--set`` value is either accepted or refused with aif's own error, never
another exception (no traceback reaches the user)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aif.aims.analog.experiments import read_experiment_file
from aif.aims.analog.validator import spec_problems
from aif.errors import InputError, WorkflowError
from aif.inputs.safe_yaml import load_yaml
from aif.workflow import load_workflow_text, resolve
from aif.workflow.overrides import parse_override

GOOD_WORKFLOW = (
    "name: w\naims:\n  src: {type: source, params: {records: [1]}}\n  sink: {type: collect}\n"
    "connections:\n  - src.out -> sink.in\n"
)

#: Pieces of YAML that have broken loaders: special scalars, tags, anchors, flow marks.
TOKENS = [
    *("name", "aims", "src", "sink", "type", "source", "collect", "params", "records"),
    *("connections", "inputs", "outputs", "peers", "placement", "process", "remote"),
    *("model", "layers", "Linear", "out_features", "dataset", "training", "rpu", "sweep"),
    *("inference", "drift_times", "batch_size", "samples", "synthetic", "forward"),
    *(".nan", ".inf", "-.inf", "1e400", "1e400s", "~", "null", "true", "yes", "2024-01-01"),
    *("2024-13-45", "0x7fffffffffffffffff", "99999999999999999999999", "0o777", "1_000"),
    *("190:20:30", "!!binary aGk=", "!!set", "!!python/name:os.system", "!!str", "!!int"),
    *("!custom", "&a", "*a", "<<", "? ", ": ", "- ", ", ", "[", "]", "{", "}", "'", '"'),
    *("\n", "\n  ", "\n    ", "\t", "\x00", "\x01", "\ufeff", "#", "---", "...", "|", ">"),
    *("src.out -> sink.in", "tcp://h:99999", "%YAML 1.1", "\\x41", "é"),
]
yaml_like = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
texts = st.one_of(st.text(max_size=200), yaml_like)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(text=texts)
def test_any_text_is_a_workflow_or_a_workflow_error(text: str) -> None:
    try:
        workflow = load_workflow_text(text, "f.yml")
    except WorkflowError as exc:
        assert str(exc)
        return
    try:
        resolve(workflow)
    except WorkflowError as exc:
        assert str(exc)


@FUZZ
@given(text=texts)
def test_any_text_is_plain_data_or_an_input_error(text: str) -> None:
    try:
        data, _ = load_yaml(text, "f.yml")
    except InputError as exc:
        assert exc.problems and all(p.startswith("f.yml") for p in exc.problems)
        return
    _assert_plain(data)


def _assert_plain(value: object, depth: int = 0) -> None:
    assert depth <= 64
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str | int | float | bool)
            _assert_plain(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _assert_plain(item, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool):
        assert -(1 << 63) <= value < (1 << 64)


@FUZZ
@given(text=texts)
def test_any_experiment_file_is_read_or_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        entries = read_experiment_file(path)
    except InputError as exc:
        assert str(exc)
        return
    for raw in entries:
        experiment, problems = spec_problems(raw)
        assert experiment is not None or problems


@FUZZ
@given(key=st.sampled_from(["aims.src.params.records", "aims.src", "name", "x.y"]), value=texts)
def test_any_set_value_is_applied_or_refused(key: str, value: str) -> None:
    try:
        parse_override(f"{key}={value}")
        resolve(load_workflow_text(GOOD_WORKFLOW, "w.yml", overrides=[f"{key}={value}"]))
    except WorkflowError as exc:
        assert str(exc)


@FUZZ
@given(text=st.text(max_size=60))
def test_any_set_argument_is_parsed_or_refused(text: str) -> None:
    try:
        path, _ = parse_override(text)
    except WorkflowError as exc:
        assert str(exc)
        return
    assert path and all(path)
