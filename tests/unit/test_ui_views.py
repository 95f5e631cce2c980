"""The web UI's pure parts: addresses, the CSRF value, the submitted workflow, the job
views and the differences between jobs (the HTTP side is tests/integration/test_ui_api.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aif.daemon.daemon import is_loopback_host as is_loopback
from aif.daemon.records import EventRow
from aif.errors import ConfigError
from aif.inputs.safe_yaml import load_yaml
from aif.ui.auth import csrf_of, loopback_hosts
from aif.ui.compose import workflow_name, workflow_text
from aif.ui.server import parse_address
from aif.ui.templates import templates
from aif.ui.views import differences, dumps, event_text, experiments_of, flatten, metrics_row


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("8765", ("127.0.0.1", 8765)),
        (":8765", ("127.0.0.1", 8765)),
    ],
)
def test_ui_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:http", "127.0.0.1:70000", "host:-1", ""])
def test_bad_ui_addresses_name_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match="--ui"):
        parse_address(text)


def test_loopback_and_its_host_names() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert loopback_hosts("127.0.0.1", 80) >= {"127.0.0.1:80", "localhost:80", "[::1]:80"}


def test_the_csrf_value_comes_from_the_token_but_is_not_it() -> None:
    assert csrf_of("t") == csrf_of("t") != csrf_of("u")
    assert csrf_of("t") != "t"


def test_the_submitted_workflow_holds_the_experiment_as_data() -> None:
    experiment = {"name": "x: y\n- evil", "training": {"epochs": 1}}
    data, _ = load_yaml(workflow_text(workflow_name("My Run!"), experiment), "<t>")
    assert data["name"] == "my-run"
    assert data["aims"]["experiments"]["params"]["experiments"] == [experiment]
    assert data["aims"]["simulator"]["placement"] == "process"
    assert experiments_of(workflow_text("n", experiment), "/nowhere") == [experiment]
    assert workflow_name("!!!") == "composer"


def test_experiments_are_read_back_from_files_too(tmp_path: Path) -> None:
    (tmp_path / "e.yml").write_text("name: from-file\nmodel: {layers: [Flatten]}\n")
    text = "name: w\naims:\n  src: {type: experiment-source, params: {files: [e.yml, gone.yml]}}\n"
    assert [e["name"] for e in experiments_of(text, str(tmp_path))] == ["from-file"]
    assert experiments_of("not: [valid", str(tmp_path)) == []


def test_a_progress_event_becomes_a_metrics_row_only_for_an_epoch() -> None:
    row = metrics_row({"step": 2, "total": 5, "job": "j", "loss": 0.5, "accuracy": 0.9})
    assert row == {
        "job": "j",
        "epoch": 2,
        "epochs": 5,
        "loss": 0.5,
        "accuracy": 0.9,
        "seconds": None,
        "lr": None,
    }
    assert metrics_row({"job": "j", "phase": "drift inference"}) is None


def test_event_lines_read_as_text() -> None:
    def event(topic: str, data: dict[str, Any]) -> EventRow:
        return EventRow(seq=1, job="j", time=0.0, topic=topic, source="s", data=data)

    assert event_text(event("state", {"job": "failed", "detail": "boom"})) == "failed: boom"
    assert event_text(event("log", {"message": "<b>hi</b>"})) == "<b>hi</b>"  # the page escapes
    assert event_text(event("progress", {"step": 1, "total": 2, "loss": 0.25})).startswith(
        "epoch 1/2 loss=0.25"
    )


def test_differences_name_the_fields_that_differ() -> None:
    a = {"name": "e", "training": {"epochs": 2, "optimizer": {"lr": 0.1}}, "model": {"x": [1]}}
    b = {"name": "e", "training": {"epochs": 3, "optimizer": {"lr": 0.1}}, "model": {"x": [2]}}
    found = {d["field"]: d["values"] for d in differences({"A": [a], "B": [b]})}
    assert found == {"training.epochs": {"A": 2, "B": 3}, "model.x": {"A": [1], "B": [2]}}
    assert flatten({"layers": [{"type": "Linear"}, "ReLU"]}) == {
        "layers.0.type": "Linear",
        "layers.1": "ReLU",
    }
    only_a = differences({"A": [{"name": "e", "rpu": {"config": "X"}}], "B": [{"name": "e"}]})
    assert only_a == [{"field": "rpu.config", "values": {"A": "X", "B": None}}]


def test_templates_come_from_the_source_tree_with_their_data_flag() -> None:
    found = {t["id"]: t for t in templates()}
    assert found["shipped/hwa-cnn"]["needs_data"] is False
    assert found["aihwkit/03-mnist-training"]["needs_data"] is True
    simple = found["aihwkit/01-simple-layer"]
    assert simple["needs_data"] is False
    assert Path(simple["experiment"]["dataset"]["path"]).is_absolute()


def test_json_for_the_browser_has_no_nan() -> None:
    assert dumps({"loss": float("nan"), "x": [float("inf"), 1.5], "t": (2,)}) == (
        '{"loss": null, "x": [null, 1.5], "t": [2]}'
    )
