"""Every file of tests/corpus/bad-inputs/ is refused with aif's own error and a message,
in bounded time and memory: workflows by the loader and resolver, experiments by
``read_experiment_file`` and the validator, ``--set`` values by the override parser;
a few also through ``aif validate`` / ``aif check`` as a user runs them."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from aif.aims.analog.experiments import experiment_json, read_experiment_file
from aif.errors import AIFError, InputError, WorkflowError
from aif.workflow import load_workflow, load_workflow_text, resolve
from tests.helpers.cli import aif

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus" / "bad-inputs"
WORKFLOWS = sorted((CORPUS / "workflows").glob("*.yaml"))
EXPERIMENTS = sorted((CORPUS / "experiments").glob("*.yaml"))
SET_VALUES = [
    codecs.decode(line, "unicode_escape")
    for line in (CORPUS / "set-values.txt").read_text().splitlines()
    if line and not line.startswith("#")
]
GOOD_WORKFLOW = (
    "name: w\naims:\n  src: {type: source, params: {records: [1]}}\n  sink: {type: collect}\n"
    "connections:\n  - src.out -> sink.in\n"
)
TRACEBACK = "Traceback (most recent call last)"

#: What each workflow's refusal must say (besides naming the file).
WORKFLOW_SAYS = {
    "nul-byte.yaml": ":1:8: a NUL byte",
    "deep-nesting.yaml": "nested more than 64 levels",
    "billion-laughs.yaml": "more than 1000000 nodes",
    "date-key.yaml": ":4:3: mapping keys must be plain strings, got date",
    "null-key.yaml": ":2:1: mapping keys must be plain strings, got null",
    "big-integer.yaml": "beyond 64 bits",
    "huge-integer-digits.yaml": "beyond 64 bits",
    "bad-date.yaml": ":2:14: '2024-13-45' cannot be read",
    "duplicate-keys.yaml": ":4: duplicate key 'src' (first at line 3)",
    "cycle.yaml": "only receive from each other",
    "self-loop.yaml": "its own output",
    "port-99999.yaml": ":3: aims.r.peers[0]: port 99999",
    "long-aim-name.yaml": "has 300 characters; give it at most 64",
    "recursive-alias.yaml": "recursive alias",
    "python-tag.yaml": "unsupported YAML tag",
    "not-utf8.yaml": "is not UTF-8 text",
}

#: What each experiment's refusal must say: (field path or "", text).
EXPERIMENT_SAYS = {
    "nul-byte.yaml": ("", ":5:22: a NUL byte"),
    "deep-nesting.yaml": ("", "nested more than 64 levels"),
    "billion-laughs.yaml": ("", "more than 1000000 nodes"),
    "date-key.yaml": ("", ":5:1: mapping keys must be plain strings, got date"),
    "duplicate-keys.yaml": ("", ":6: duplicate key 'training' (first at line 5)"),
    "big-integer-seed.yaml": ("", "beyond 64 bits"),
    "drift-nan.yaml": ("inference.drift_times.0", "nan"),
    "drift-inf.yaml": ("inference.drift_times.1", "not a finite duration"),
    "drift-overflow.yaml": ("inference.drift_times.0", "not a finite duration"),
    "drift-past-the-clock.yaml": ("inference.drift_times.1", "past the longest drift time"),
    "out-noise-negative.yaml": ("rpu.forward", "out_noise is -0.1; a noise or deviation"),
    "out-noise-nan.yaml": ("rpu.forward", "out_noise is nan; give a finite number"),
    "noise-model-inf.yaml": ("rpu.noise_model.params", "prog_noise_scale is inf"),
    "device-param-inf.yaml": ("rpu.device_params", "dw_min is inf"),
    "weight-decay-nan.yaml": ("training.optimizer.params", "weight_decay is nan"),
    "lr-nan.yaml": ("training.optimizer.lr", "finite number"),
    "lr-inf.yaml": ("training.optimizer.lr", "finite number"),
    "batch-size-true.yaml": ("dataset.batch_size", "got the boolean true"),
    "synthetic-billion-samples.yaml": ("dataset", "'samples': 1000000000 samples"),
    "huge-layers.yaml": ("model.layers.2.out_features", "1,000,000,000,000 weights"),
    "dataset-dev-zero-npz.yaml": ("dataset.path", "/dev/zero"),
    "dataset-dev-zero-text.yaml": ("dataset.path", "'/dev/zero' is a device"),
    "npz-4pb.yaml": ("dataset.path", "declares shape 1000000000000000 of float32"),
    "idx-overflow.yaml": ("dataset.path", "over the limit of 1 GiB"),
    "idx-gzip-bomb.yaml": ("dataset.path", "longer than its header says"),
    "not-a-mapping.yaml": ("<experiment>", "an experiment is a mapping"),
}


def test_every_corpus_file_has_an_expected_message() -> None:
    assert {p.name for p in WORKFLOWS} == set(WORKFLOW_SAYS)
    assert {p.name for p in EXPERIMENTS} == set(EXPERIMENT_SAYS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_a_bad_workflow_is_refused_with_file_and_message(path: Path) -> None:
    with pytest.raises(WorkflowError) as caught:
        resolve(load_workflow(path))
    text = str(caught.value)
    assert str(path) in text
    assert WORKFLOW_SAYS[path.name] in text, text
    assert len(text) < 4000  # a message, not a dump of the document


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_a_bad_experiment_is_refused_with_field_and_message(path: Path) -> None:
    from aif.aims.analog.validator import review_experiment

    field, says = EXPERIMENT_SAYS[path.name]
    try:
        entries = read_experiment_file(path)
    except InputError as exc:
        assert not field, f"refused while reading, not at {field}: {exc}"
        assert str(path) in str(exc) and says in str(exc), str(exc)
        return
    assert field, f"{path.name} was read; expected a refusal while reading"
    problems = []
    for raw in entries:
        verdict = review_experiment(json.loads(experiment_json(raw)), path.parent)
        assert not verdict.accepted
        problems += verdict.problems
    assert any(where == field and says in message for where, message in problems), problems


@pytest.mark.parametrize("value", SET_VALUES, ids=lambda v: v[:30])
def test_a_bad_set_value_is_refused(value: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        resolve(load_workflow_text(GOOD_WORKFLOW, "w.yml", overrides=[value]))
    assert "--set" in str(caught.value) or "w.yml" in str(caught.value)
    assert len(str(caught.value)) < 4000


def test_a_long_set_value_is_refused_by_its_size() -> None:
    value = "aims.src.params.records=[" + "1, " * 40_000 + "1]"
    with pytest.raises(WorkflowError, match="over the limit"):
        load_workflow_text(GOOD_WORKFLOW, "w.yml", overrides=[value])


def test_five_million_inline_records_are_refused_by_size(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    records = ", ".join(["1"] * 5_000_000)
    path.write_text(f"name: w\naims:\n  src: {{type: source, params: {{records: [{records}]}}}}\n")
    with pytest.raises(WorkflowError, match="over the limit of 1 MiB"):
        load_workflow(path)


def test_too_many_values_in_a_small_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("name: w\nx: [" + ",".join(["1"] * 120_000) + "]\n")
    with pytest.raises(WorkflowError, match="more than 100000 values"):
        load_workflow(path)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/"])
def test_special_files_are_refused_without_reading_them(path: str) -> None:
    with pytest.raises(WorkflowError, match="give a regular file"):
        load_workflow(path)
    with pytest.raises(InputError, match="give a regular file"):
        read_experiment_file(Path(path))


def test_a_path_with_a_nul_byte_is_refused() -> None:
    with pytest.raises(AIFError, match="cannot read"):
        load_workflow("work\x00flow.yaml")


@pytest.mark.timeout(240)
def test_the_cli_refuses_bad_inputs_without_a_traceback() -> None:
    for name in ("nul-byte.yaml", "cycle.yaml", "billion-laughs.yaml", "long-aim-name.yaml"):
        done = aif("validate", str(CORPUS / "workflows" / name))
        assert done.returncode == 2, done.stderr
        assert TRACEBACK not in done.stderr and WORKFLOW_SAYS[name] in done.stderr
    done = aif("validate", "/dev/zero")
    assert done.returncode == 2 and "give a regular file" in done.stderr
    done = aif("validate", str(CORPUS / "workflows" / "cycle.yaml"), "--set", SET_VALUES[0])
    assert done.returncode == 2 and "nested more than 64" in done.stderr
    files = [CORPUS / "experiments" / n for n in ("date-key.yaml", "huge-layers.yaml")]
    done = aif("check", *map(str, files), "/dev/zero")
    assert done.returncode == 1, done.stderr
    assert TRACEBACK not in done.stderr
    assert "got date" in done.stderr and "weights" in done.stderr
    assert "give a regular file" in done.stderr
