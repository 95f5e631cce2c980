"""``dataset: text`` (character sequences) and ``dataset: torch`` (a user's factory)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aif.aims.analog import spec as s
from aif.aims.analog.datasets import load_dataset
from aif.aims.analog.runs import JobOutcome, JobRunner
from aif.aims.analog.validator import review_experiment
from aif.errors import ExperimentError
from aif.storage.local import LocalStorage

ROOT = Path(__file__).resolve().parents[2]
TEXT = "the quick brown fox jumps over the lazy dog. " * 8


def _problems(dataset: dict[str, Any], base: Path = ROOT) -> list[tuple[str, str]]:
    with pytest.raises(ExperimentError) as caught:
        load_dataset(s.DatasetSpec.model_validate(dataset), base)
    return caught.value.problems


# -- text ---------------------------------------------------------------------------------


def test_text_is_one_hot_sequences_labelled_with_the_next_character(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    spec = s.DatasetSpec(name="text", path="t.txt", sequence_length=10, test_fraction=0.25)
    data = load_dataset(spec, tmp_path)
    vocabulary = sorted(set(TEXT))
    assert data.classes == len(vocabulary)
    assert data.sample_shape == (10, len(vocabulary))
    assert len(data.y_train) + len(data.y_test) == (len(TEXT) - 1) // 10
    assert np.all(data.x_train.sum(axis=2) == 1.0)
    # every sample's label is the character after its window
    windows = {
        "".join(vocabulary[i] for i in row.argmax(1)): vocabulary[label]
        for row, label in zip(data.x_train, data.y_train, strict=True)
    }
    for window, after in windows.items():
        assert TEXT[TEXT.index(window) + 10] == after


def test_a_given_vocabulary_fixes_the_one_hot_order(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("abab" * 10, encoding="utf-8")
    spec = s.DatasetSpec(name="text", path="t.txt", sequence_length=3, vocabulary="bac")
    data = load_dataset(spec, tmp_path)
    assert data.classes == 3 and data.sample_shape == (3, 3)
    missing = _problems(
        {"name": "text", "path": "t.txt", "sequence_length": 3, "vocabulary": "xyz"}, tmp_path
    )
    assert missing[0][0] == "dataset.vocabulary" and "'ab'" in missing[0][1]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xff\xfe not utf-8", "is not UTF-8 text"),
        (b"", "is empty"),
        (b"short", "fewer than one sequence"),
        (b"abc\x00def" * 20, "NUL"),
    ],
)
def test_a_text_that_is_not_usable_is_refused_at_its_path(
    tmp_path: Path, content: bytes, says: str
) -> None:
    (tmp_path / "t.txt").write_bytes(content)
    problems = _problems({"name": "text", "path": "t.txt", "sequence_length": 10}, tmp_path)
    assert [p for p, _ in problems] == ["dataset.path"]
    assert says in problems[0][1]
    assert _problems({"name": "text", "path": "none.txt"}, tmp_path)[0][0] == "dataset.path"


def test_the_lstm_zoo_model_trains_on_a_text_for_one_epoch(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    raw = {
        "name": "chars",
        "dataset": {"name": "text", "path": "t.txt", "sequence_length": 8, "batch_size": 8},
        "model": {"zoo": "lstm", "args": {"hidden": 8}},
        "rpu": {"config": "TorchInferenceRPUConfig"},
        "training": {"epochs": 1},
    }
    experiment = s.Experiment.model_validate(raw)
    job = s.Experiment.model_validate_json(experiment.job("").model_dump_json())
    verdict = review_experiment(job.model_dump(mode="json"), tmp_path)
    assert verdict.accepted, verdict.problems
    prepared = JobRunner(LocalStorage(tmp_path / "store"), tmp_path).prepare(
        job, JobOutcome("j", "chars", "", "cpu")
    )
    epoch = prepared.epoch(1)
    while not epoch.step(60.0):
        pass
    assert math.isfinite(epoch.loss) and epoch.batches == epoch.total_batches
    assert 0.0 <= prepared.evaluate() <= 1.0


# -- a user's factory ---------------------------------------------------------------------


def test_a_factory_gives_the_train_and_test_splits_it_returns() -> None:
    spec = s.DatasetSpec(
        name="torch", factory="tests.helpers.torch_data:blobs", args={"samples": 20}
    )
    data = load_dataset(spec, ROOT)
    assert (len(data.y_train), len(data.y_test), data.classes) == (15, 5, 3)
    assert data.sample_shape == (6,) and data.y_train.dtype == np.int64


def test_a_factory_of_tensors_and_one_set_is_split() -> None:
    spec = s.DatasetSpec(name="torch", factory="tests.helpers.torch_data:tensors")
    data = load_dataset(spec, ROOT)
    assert len(data.y_train) + len(data.y_test) == 20 and data.classes == 2


@pytest.mark.parametrize(
    ("factory", "args", "where", "says"),
    [
        ("tests.helpers.no_such_module:f", {}, "dataset.factory", "cannot import module"),
        ("tests.helpers.torch_data:blob", {}, "dataset.factory", "did you mean 'blobs'"),
        ("tests.helpers.torch_data:blobs", {"size": 3}, "dataset.args.size", "unknown"),
        ("tests.helpers.torch_data:raises", {}, "dataset.factory", "raises FileNotFoundError"),
        ("tests.helpers.torch_data:a_list", {}, "dataset.factory", "returns a list"),
        ("tests.helpers.torch_data:wrong_keys", {}, "dataset.factory", "returns keys"),
        ("tests.helpers.torch_data:objects", {}, "dataset.factory", "as a list"),
    ],
)
def test_a_factory_that_fails_is_refused_with_the_field(
    factory: str, args: dict[str, Any], where: str, says: str
) -> None:
    problems = _problems({"name": "torch", "factory": factory, "args": args})
    assert problems[0][0] == where
    assert says in problems[0][1], problems


def test_a_factory_needs_its_field_and_others_refuse_it() -> None:
    verdict = review_experiment({"name": "f", "dataset": {"name": "torch"}}, ROOT)
    assert any(p == "dataset" and "needs 'factory'" in m for p, m in verdict.problems)
    raw = {"name": "f", "dataset": {"name": "digits", "args": {"a": 1}}}
    assert any(
        "only read for dataset 'torch'" in m for _, m in review_experiment(raw, ROOT).problems
    )


# -- the secure profile: a user's code only from a signed Store package --------------------


def _experiment_with_code(module: str) -> dict[str, Any]:
    return {
        "name": "secure-code",
        "dataset": {"name": "torch", "factory": f"{module}:blobs"},
        "model": {"torch": f"{module}:Net"},
    }


def test_a_secure_run_refuses_code_from_the_environment_before_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    (tmp_path / "env_code_x1.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = _experiment_with_code("env_code_x1")
    verdict = review_experiment(raw, ROOT, trusted_from=tmp_path / "state")
    assert [p for p, _ in verdict.problems] == ["model.torch", "dataset.factory"]
    assert all("imported from the environment" in m for _, m in verdict.problems)
    assert all("publish the module as a Store package" in m for _, m in verdict.problems)
    assert "env_code_x1" not in sys.modules
    missing = review_experiment(
        _experiment_with_code("no_such_code_x1"), ROOT, trusted_from=tmp_path
    )
    assert all("in no installed Store package" in m for _, m in missing.problems)
    # the basic profile trusts the environment: the same module is imported (and fails)
    basic = review_experiment(raw, ROOT)
    assert any("cannot import module 'env_code_x1'" in m for _, m in basic.problems)


def test_a_file_dropped_into_the_install_cache_is_not_a_store_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lying under packages/ is not enough: the Store must vouch for the package (a
    signed, installed one is accepted: tests/integration/test_secure_user_code.py)."""
    from aif.aims.analog.trusted_code import untrusted_code

    site = tmp_path / "packages" / "my-data" / "1.0.0" / "site"
    (site / "store_code_x1").mkdir(parents=True)
    (site / "store_code_x1" / "__init__.py").write_text("")
    (site / "store_code_x1" / "data.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    raw = {"dataset": {"name": "torch", "factory": "store_code_x1.data:blobs"}}
    (where, message), *_ = untrusted_code(raw, tmp_path)
    assert where == "dataset.factory" and "not a complete install" in message
    assert untrusted_code(raw, tmp_path / "elsewhere")[0][0] == "dataset.factory"
