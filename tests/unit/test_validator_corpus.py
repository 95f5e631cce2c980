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
family aihwkit has. Relative data paths are read from tests/experiments/ (a tiny
gzipped IDX set lives in ``data/tiny-idx``). Everything runs through
``review_experiment`` in this process, as the validator AIM does. When a message
improves on purpose, update the file's ``# expect:`` lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from _pytest.mark import ParameterSet

from aif.aims.analog.build import config_families
from aif.aims.analog.capabilities import SimulatorCapabilities
from aif.aims.analog.validator import Verdict, review_experiment

CORPUS = Path(__file__).resolve().parent.parent / "experiments"
VALID = sorted(CORPUS.glob("valid-*.yml"))
INVALID = sorted(CORPUS.glob("invalid-*.yml"))
EXPECT, ROUTE, SIMULATORS, KNOWN_BUG = "# expect: ", "# route: ", "# simulators: ", "# known-bug: "

Simulators = dict[str, SimulatorCapabilities]


def _cpu() -> SimulatorCapabilities:
    return SimulatorCapabilities(devices={"cpu": ["torch", "rpucuda"]}, families=config_families())


def _gpu() -> SimulatorCapabilities:
    both: list[str] = ["torch", "rpucuda"]
    return SimulatorCapabilities.model_validate(
        {"devices": {"cpu": both, "cuda": both}, "families": config_families()}
    )


def _gpu_without_cuda_build() -> SimulatorCapabilities:
    """A GPU machine whose aihwkit was compiled without CUDA: only torch tiles on cuda."""
    return SimulatorCapabilities.model_validate(
        {"devices": {"cpu": ["torch", "rpucuda"], "cuda": ["torch"]}, "families": config_families()}
    )


def _torch_only() -> SimulatorCapabilities:
    return SimulatorCapabilities(devices={"cpu": ["torch"]}, families=["TorchInferenceRPUConfig"])


#: The simulator sets a file may ask for; ``none`` reviews without routing.
_SIMULATORS: dict[str, Callable[[], Simulators]] = {
    "cpu-only": lambda: {"simulator": _cpu()},
    "torch-only": lambda: {"torch-sim": _torch_only()},
    "two-cpu": lambda: {"sim-a": _cpu(), "sim-b": _cpu()},
    "cpu-and-gpu": lambda: {"cpu-sim": _cpu(), "gpu-sim": _gpu()},
    "gpu-without-cuda-build": lambda: {"gpu-box": _gpu_without_cuda_build()},
    "none": dict,
}


@dataclass
class Header:
    """What a corpus file's comment lines promise."""

    expects: list[tuple[str, str]] = field(default_factory=list)
    routes: dict[str, tuple[str, str]] = field(default_factory=dict)
    simulators: str = "cpu-only"
    known_bug: str = ""


def _header(path: Path) -> Header:
    header = Header()
    for line in path.read_text(encoding="utf-8").splitlines():
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
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
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
