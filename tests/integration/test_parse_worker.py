"""The daemon's YAML parser child (``aif.workflow.parse_worker``), for real: it answers
what an in-process parse answers (data, lines, problems), refuses hostile texts in its
own process, is killed and replaced when a parse outlives the limit, and comes back
after it died."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aif.errors import WorkflowError
from aif.workflow.loader import parse_text
from aif.workflow.parse_worker import ParseProcess
from tests.integration.test_daemon_under_attack import alias_bomb, many_values

pytestmark = pytest.mark.integration

TEXT = """name: demo
aims:
  src:
    type: source
    params: {records: [1, 2.5, "three", null, true]}
  sink: {type: collect}
connections: [src.out -> sink.in]
"""


@pytest.fixture
def parser() -> Iterator[ParseProcess]:
    child = ParseProcess(timeout=60)
    yield child
    child.close()


def test_it_answers_what_an_in_process_parse_answers(parser: ParseProcess) -> None:
    overrides = ["aims.src.params.records=[7, {a: 1}]", "description=set here"]
    data, source_map = parser.parse(TEXT, "demo.yaml", overrides)
    here, here_map = parse_text(TEXT, "demo.yaml", overrides)
    assert data == here
    assert source_map == here_map
    assert source_map.line_of(("aims", "sink", "type")) == 6


@pytest.mark.parametrize(
    ("text", "overrides"),
    [
        (alias_bomb(), []),
        (TEXT, ["aims.src.params.records=" + alias_bomb().split("x0: ", 1)[1].replace("\n", " ")]),
        ("name: [", []),
        (TEXT + "name: again\n", []),
    ],
    ids=["alias-bomb", "bomb-in-set", "broken-yaml", "duplicate-key"],
)
def test_its_refusals_are_the_in_process_ones(
    parser: ParseProcess, text: str, overrides: list[str]
) -> None:
    with pytest.raises(WorkflowError) as here:
        parse_text(text, "w.yaml", overrides)
    with pytest.raises(WorkflowError) as there:
        parser.parse(text, "w.yaml", overrides)
    assert str(there.value).split("\n", 1)[0] == str(here.value).split("\n", 1)[0]
    assert there.value.problems == here.value.problems


def test_a_parse_past_the_limit_kills_the_child_and_the_next_one_works() -> None:
    parser = ParseProcess(timeout=0.0001)  # no 1 MiB text parses this fast
    try:
        with pytest.raises(WorkflowError, match=r"took more than 0\.0001 s"):
            parser.parse(many_values(2**20 - 100), "big.yaml", [])
        parser.timeout = 60
        data, _ = parser.parse(TEXT, "demo.yaml", [])
        assert data["name"] == "demo"
    finally:
        parser.close()


def test_a_child_that_died_is_started_again(parser: ParseProcess) -> None:
    parser.parse(TEXT, "demo.yaml", [])
    parser.close()  # as if it had died
    data, _ = parser.parse(TEXT, "demo.yaml", [])
    assert data["aims"]["sink"] == {"type": "collect"}
