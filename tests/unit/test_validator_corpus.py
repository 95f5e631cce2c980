"""The validator's corpus: every experiment in tests/experiments/ is judged as it says.

Each ``invalid-*.yml`` is a mistake users make, pinned by ``# expect: <path>: <text>``
header lines: ``<path>`` is the exact field path of a problem and ``<text>`` a part of
its message. A file passes when every expectation finds its problem *and* every problem
the validator reports is pinned, so a file with three mistakes must get all three
reasons back, not only the first. Several lines may pin parts of one long message.

Each ``valid-*.yml`` must be accepted, and its ``# route: <config> -> <aim> <device>``
lines pin where each job goes (``<config>`` is ``rpu`` or ``sweep.<label>``; AIM ``-``
means no simulator was declared).

A ``# simulators: <set>`` line picks the simulators connected while the file is
reviewed (see ``_SIMULATORS``); the default is one CPU simulator running every config
family aihwkit has. A ``# known-bug: <what>`` line marks a file whose pinned problems
are what the validator *should* say but does not yet: it runs as a strict xfail, so
fixing the bug turns it into a failure until the line is removed. Relative data paths
are read from tests/experiments/ (a tiny gzipped three-class IDX set lives in
``data/tiny-idx``). Everything runs through ``review_experiment`` in this process, on
the YAML after the JSON round trip experiment-source gives it. When a message improves
on purpose, update the file's ``# expect:`` lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from _pytest.mark import ParameterSet

from aif.aims.analog.build import config_families
from aif.aims.analog.capabilities import Device, SimulatorCapabilities, TileKind
from aif.aims.analog.validator import Verdict, review_experiment

CORPUS = Path(__file__).resolve().parent.parent / "experiments"
VALID = sorted(CORPUS.glob("valid-*.yml"))
INVALID = sorted(CORPUS.glob("invalid-*.yml"))
EXPECT, ROUTE, SIMULATORS, KNOWN_BUG = "# expect: ", "# route: ", "# simulators: ", "# known-bug: "

Simulators = dict[str, SimulatorCapabilities]
BOTH: list[TileKind] = ["torch", "rpucuda"]


def _simulator(
    devices: dict[Device, list[TileKind]], families: list[str] | None = None
) -> SimulatorCapabilities:
    """A simulator's declaration; by default it runs every family this aihwkit has."""
    return SimulatorCapabilities(devices=devices, families=families or config_families())


#: The simulator sets a file may ask for; ``none`` reviews without routing.
_SIMULATORS: dict[str, Callable[[], Simulators]] = {
    "cpu-only": lambda: {"simulator": _simulator({"cpu": BOTH})},
    "torch-only": lambda: {
        "torch-sim": _simulator({"cpu": ["torch"]}, ["TorchInferenceRPUConfig"])
    },
    "two-cpu": lambda: {"sim-a": _simulator({"cpu": BOTH}), "sim-b": _simulator({"cpu": BOTH})},
    "cpu-and-gpu": lambda: {
        "cpu-sim": _simulator({"cpu": BOTH}),
        "gpu-sim": _simulator({"cpu": BOTH, "cuda": BOTH}),
    },
    # a GPU machine whose aihwkit was compiled without CUDA: only torch tiles on cuda
    "gpu-without-cuda-build": lambda: {"gpu-box": _simulator({"cpu": BOTH, "cuda": ["torch"]})},
    # every family declared, but no RPUCuda extension: only torch tiles anywhere
    "torch-tiles-only": lambda: {"torch-box": _simulator({"cpu": ["torch"]})},
    "none": dict,
}


@dataclass
class Header:
    """What a corpus file's comment lines promise."""

    expects: list[tuple[str, str]] = field(default_factory=list)
    routes: dict[str, tuple[str, str]] = field(default_factory=dict)
    simulators: str = "cpu-only"
    known_bug: str = ""


#: A line meant as one of the directives above, however misspelt.
_DIRECTIVE = re.compile(r"^#\s*(expects?|routes?|simulators?|known[-_ ]?bugs?)\s*:", re.IGNORECASE)


def _header(path: Path) -> Header:
    header = Header()
    for line in path.read_text(encoding="utf-8").splitlines():
        exact = line.startswith((EXPECT, ROUTE, SIMULATORS, KNOWN_BUG))
        assert exact or not _DIRECTIVE.match(line), f"{path.name}: misspelt directive '{line}'"
        if line.startswith(EXPECT):
            where, sep, text = line[len(EXPECT) :].partition(": ")
            assert sep and text, f"{path.name}: '{line}' is not '# expect: <path>: <text>'"
            header.expects.append((where, text))
        elif line.startswith(ROUTE):
            config, arrow, target = line[len(ROUTE) :].partition(" -> ")
            aim, _, device = target.partition(" ")
            assert arrow and device, f"{path.name}: '{line}' is not '# route: <c> -> <aim> <dev>'"
            label = "" if config == "rpu" else config.removeprefix("sweep.")
            header.routes[label] = ("" if aim == "-" else aim, device)
        elif line.startswith(KNOWN_BUG):
            header.known_bug = line[len(KNOWN_BUG) :].strip()
        elif line.startswith(SIMULATORS):
            header.simulators = line[len(SIMULATORS) :].strip()
            assert header.simulators in _SIMULATORS, f"{path.name}: unknown simulator set"
    return header


def _review(path: Path, header: Header) -> Verdict:
    """As the pipeline does: experiment-source sends the YAML as JSON to the validator."""
    raw = json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))
    candidates = _SIMULATORS[header.simulators]()
    return review_experiment(raw, CORPUS, candidates or None)


def _listing(problems: list[tuple[str, str]]) -> str:
    return "\n".join(f"  {where}: {message}" for where, message in problems) or "  (none)"


def test_the_corpus_is_big_enough_and_every_invalid_file_pins_its_problems() -> None:
    assert len(INVALID) >= 30
    assert len(VALID) >= 4
    unpinned = [p.name for p in INVALID if not _header(p).expects]
    assert not unpinned, f"invalid files without an '{EXPECT.strip()}' line: {unpinned}"
    unrouted = [p.name for p in VALID if not _header(p).routes or _header(p).expects]
    assert not unrouted, f"valid files need '{ROUTE.strip()}' lines and no expect: {unrouted}"


def _cases(paths: list[Path]) -> list[ParameterSet]:
    """One case per file; a '# known-bug:' file is a strict xfail until the bug is fixed."""
    return [
        pytest.param(
            path,
            id=path.name,
            marks=[pytest.mark.xfail(raises=AssertionError, reason=bug, strict=True)]
            if (bug := _header(path).known_bug)
            else [],
        )
        for path in paths
    ]


@pytest.mark.parametrize("path", _cases(INVALID))
def test_invalid_experiment_reports_every_pinned_problem(path: Path) -> None:
    header = _header(path)
    verdict = _review(path, header)
    got = verdict.problems
    assert not verdict.accepted, f"{path.name} was accepted"
    missing = [
        f"  {where}: ...{text}..."
        for where, text in header.expects
        if not any(where == have and text in message for have, message in got)
    ]
    unpinned = [
        (have, message)
        for have, message in got
        if not any(where == have and text in message for where, text in header.expects)
    ]
    assert not missing and not unpinned, (
        f"{path.name}\nexpected but not reported:\n{chr(10).join(missing) or '  (none)'}"
        f"\nreported but not pinned:\n{_listing(unpinned)}\nall problems:\n{_listing(got)}"
    )
    assert len(set(got)) == len(got), f"{path.name} repeats a problem:\n{_listing(got)}"


@pytest.mark.parametrize("path", _cases(VALID))
def test_valid_experiment_is_accepted_and_routed(path: Path) -> None:
    header = _header(path)
    verdict = _review(path, header)
    assert verdict.accepted, f"{path.name} was rejected:\n{_listing(verdict.problems)}"
    assert verdict.routes == header.routes
