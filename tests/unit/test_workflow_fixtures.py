"""Every fixture in tests/workflows/ loads as it says it does.

``valid-*.yml`` must load, resolve with the real registry and export valid MPAI-AIF
metadata. ``invalid-*.yml`` must fail with exactly the problems pinned in their
``# expect:`` header lines, in order (a line ending in ``...`` is a prefix match, for
messages that list things other parts of aif may add to, such as the built-in types).
When a message improves on purpose, update the fixture's ``# expect:`` lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aif.errors import WorkflowError
from aif.workflow import export_metadata, load_workflow, resolve
from aif.workflow.export import WorkflowMetadata

FIXTURES = Path(__file__).resolve().parent.parent / "workflows"
VALID = sorted(FIXTURES.glob("valid-*.yml"))
INVALID = sorted(FIXTURES.glob("invalid-*.yml"))
EXPECT = "# expect: "


def _expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line[len(EXPECT) :] for line in lines if line.startswith(EXPECT)]


def _problems(path: Path) -> list[str]:
    """Problems of load + resolve, with the path shortened to the file name."""
    try:
        resolve(load_workflow(path))
    except WorkflowError as exc:
        return [problem.replace(str(path), path.name) for problem in exc.problems]
    return []


def test_there_are_enough_fixtures() -> None:
    assert len(VALID) >= 6
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_fixture_loads_resolves_and_exports(path: Path) -> None:
    resolved = resolve(load_workflow(path))
    assert resolved.name == resolved.workflow.name
    metadata = export_metadata(resolved)
    again = json.loads(json.dumps(metadata))
    WorkflowMetadata.model_validate(again)
    assert [sub["Name"] for sub in again["AIW"]["SubAIMs"]] == list(resolved.aims)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_fixture_reports_the_pinned_problems(path: Path) -> None:
    expected = _expectations(path)
    assert expected, f"{path.name} pins no '{EXPECT.strip()}' line"
    got = _problems(path)
    report = "\n".join(got) or "(no problem at all)"
    assert len(got) == len(expected), (
        f"{path.name}: expected {len(expected)} problem(s), got {len(got)}:\n{report}"
    )
    for want, have in zip(expected, got, strict=True):
        if want.endswith("..."):
            assert have.startswith(want[:-3]), f"{path.name}:\n  want {want}\n  have {have}"
        else:
            assert have == want, f"{path.name}:\n  want {want}\n  have {have}"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_problem_names_the_file_and_line(path: Path) -> None:
    for problem in _problems(path):
        head = problem.split(": ", 1)[0]
        name, _, position = head.partition(":")
        assert name == path.name
        assert position.split(":")[0].isdigit(), problem
