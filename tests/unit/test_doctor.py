"""`aif doctor`: the real checks against this venv, and each failure path with its fix."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from aif.cli.doctor import (
    ABI_FIX,
    SETUP_FIX,
    Check,
    check_analog_tile,
    check_python,
    check_state_dir,
    format_report,
    guarded,
    has_failures,
    run_checks,
    tile_failure,
)

EXPECTED_NAMES = [
    "python",
    "torch",
    "aihwkit",
    "analog tile",
    "cuda",
    "aihwkit cuda",
    "pyzmq",
    "msgpack",
    "state dir",
]


@pytest.fixture(scope="module")
def real_checks(tmp_path_factory: pytest.TempPathFactory) -> list[Check]:
    """One real run of every check (the analog tile probe takes a few seconds)."""
    return run_checks(tmp_path_factory.mktemp("doctor") / "state")


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_real_environment_passes(real_checks: list[Check]) -> None:
    assert [c.name for c in real_checks] == EXPECTED_NAMES
    failed = [c for c in real_checks if c.level == "fail"]
    assert failed == [], format_report(real_checks)
    assert not has_failures(real_checks)
    for check in real_checks:
        assert check.level in ("ok", "warn")
        assert check.detail


def test_real_analog_tile_check_passes(real_checks: list[Check]) -> None:
    import torch

    tile = by_name(real_checks)["analog tile"]
    assert tile.level == "ok", tile
    assert tile.detail.startswith(f"torch {torch.__version__}: ")
    assert "AnalogSGD update" in tile.detail
    assert "InferenceRPUConfig forward" in tile.detail


def test_real_versions_reported(real_checks: list[Check]) -> None:
    import msgpack
    import torch
    import zmq

    checks = by_name(real_checks)
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    assert checks["torch"].detail == f"torch {torch.__version__} ({build})"
    assert checks["aihwkit"] == Check("aihwkit", "ok", "aihwkit 1.2.0")
    assert checks["pyzmq"].detail.startswith(
        f"pyzmq {zmq.pyzmq_version()}, libzmq {zmq.zmq_version()}"
    )
    assert checks["pyzmq"].level == ("ok" if zmq.has("curve") else "warn")
    version = ".".join(map(str, msgpack.version))
    assert checks["msgpack"].detail.startswith(f"msgpack {version}")
    major, minor = sys.version_info[:2]
    assert checks["python"].detail.startswith(f"{major}.{minor}.")


def test_cuda_absence_is_a_warning_not_a_failure(real_checks: list[Check]) -> None:
    import torch

    cuda = by_name(real_checks)["cuda"]
    if torch.cuda.is_available():
        assert cuda.level == "ok"
        assert torch.cuda.get_device_name(0) in cuda.detail
    else:
        assert cuda.level == "warn"
        assert cuda.ok
        assert cuda.fix is not None
        assert "USE_CUDA=ON" in cuda.fix


def test_state_dir_created_and_left_clean(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    check = check_state_dir(state)
    assert check.level == "ok", check
    assert check.detail.startswith(f"{state} is writable, ")
    assert state.is_dir()
    assert list(state.iterdir()) == []


@pytest.mark.parametrize("where", ["is-a-file", "under-a-file"])
def test_state_dir_not_usable(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    state = blocker if where == "is-a-file" else blocker / "state"
    check = check_state_dir(state)
    assert check.level == "fail"
    assert check.detail.startswith(f"{state} is not usable: cannot ")
    assert check.fix is not None
    assert f"mkdir -p {state}" in check.fix


def test_old_python_fails_with_fix() -> None:
    check = check_python((3, 10, 12))
    assert check.level == "fail"
    assert check.detail.startswith("3.10.12 (")
    assert check.detail.endswith("is too old; aif needs 3.11 or newer")
    assert check.fix is not None
    assert "python3.11 -m venv" in check.fix
    assert check_python((3, 11, 0)).level == "ok"


# -- the analog tile probe, broken on purpose ---------------------------------------------


def _broken_env(tmp_path: Path, nn_body: str) -> dict[str, str]:
    """A PYTHONPATH that shadows torch and aihwkit; importing aihwkit.nn runs ``nn_body``.

    The probe runs in a real child process; only the packages it imports are fakes,
    so each failure mode of the compiled simulator can be produced on demand.
    """
    fake = tmp_path / "fake-site"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("")
    (fake / "aihwkit" / "nn").mkdir(parents=True)
    (fake / "aihwkit" / "__init__.py").write_text("")
    (fake / "aihwkit" / "nn" / "__init__.py").write_text(nn_body)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(fake)
    return env


@pytest.mark.parametrize(
    ("nn_body", "error"),
    [
        (
            "raise RuntimeError('Invalid weights dimensions')",
            "RuntimeError: Invalid weights dimensions",
        ),
        (
            "raise ValueError('weights must be a CPU tensor')",
            "ValueError: weights must be a CPU tensor",
        ),
        (
            "raise ImportError(\"cannot import name 'rpu_base' from 'aihwkit.simulator'\")",
            "ImportError: cannot import name 'rpu_base' from 'aihwkit.simulator'",
        ),
    ],
    ids=["invalid-weights-dimensions", "weights-cpu-tensor", "rpu-base-import"],
)
def test_known_abi_symptoms_give_the_rebuild_fix(tmp_path: Path, nn_body: str, error: str) -> None:
    check = check_analog_tile(env=_broken_env(tmp_path, nn_body), cwd=tmp_path, timeout=60)
    assert check == Check(
        "analog tile",
        "fail",
        f"the compiled aihwkit simulator does not work with this torch ({error})",
        ABI_FIX,
    )


def test_a_crash_of_the_simulator_is_reported_not_fatal(tmp_path: Path) -> None:
    body = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    check = check_analog_tile(env=_broken_env(tmp_path, body), cwd=tmp_path, timeout=60)
    assert check.level == "fail"
    assert check.detail.startswith(
        "the compiled aihwkit simulator does not work with this torch "
        "(the probe process was killed by SIGSEGV"
    )
    assert check.fix == ABI_FIX


def test_a_silent_exit_of_the_probe_is_reported(tmp_path: Path) -> None:
    body = "import os, sys\nsys.stderr.write('boom\\n')\nos._exit(3)\n"
    check = check_analog_tile(env=_broken_env(tmp_path, body), cwd=tmp_path, timeout=60)
    assert check.level == "fail"
    assert (
        check.detail == "a tiny analog layer failed: the probe process exited with status 3: boom"
    )
    assert check.fix is not None
    assert check.fix.startswith(ABI_FIX)


def test_a_hanging_probe_times_out(tmp_path: Path) -> None:
    body = "import time\ntime.sleep(60)\n"
    check = check_analog_tile(env=_broken_env(tmp_path, body), cwd=tmp_path, timeout=1)
    assert check.level == "fail"
    assert check.detail == "the analog tile probe did not finish within 1 s"


def test_missing_aihwkit_points_at_setup() -> None:
    check = tile_failure("ModuleNotFoundError: No module named 'aihwkit'")
    assert check.level == "fail"
    assert check.fix == SETUP_FIX


def test_abi_fix_text() -> None:
    """The fix is setup.sh's rebuild: a plain pip install of aihwkit would bring back its
    torchvision requirement, which the venv's guard then refuses (pip check fails)."""
    assert ABI_FIX.startswith(
        "rebuild aihwkit==1.2.0 from its sdist against the installed torch: re-run scripts/setup.sh"
    )
    assert "pip install --no-build-isolation" not in ABI_FIX


# -- report -----------------------------------------------------------------------------


def test_format_report_is_pinned() -> None:
    checks = [
        Check("python", "ok", "3.11.7 (/venv/bin/python)"),
        Check("cuda", "warn", "no CUDA GPU available", "use a GPU machine"),
        Check("analog tile", "fail", "Invalid weights dimensions", "rebuild aihwkit"),
        Check("state dir", "ok", "line one\nline two", "never shown for ok"),
    ]
    assert format_report(checks) == (
        "OK    python       3.11.7 (/venv/bin/python)\n"
        "WARN  cuda         no CUDA GPU available\n"
        "      fix: use a GPU machine\n"
        "FAIL  analog tile  Invalid weights dimensions\n"
        "      fix: rebuild aihwkit\n"
        "OK    state dir    line one\n"
        "                   line two\n"
        "4 checks: 2 ok, 1 warning(s), 1 failed"
    )


def test_ok_and_has_failures() -> None:
    assert Check("a", "ok", "").ok
    assert Check("a", "warn", "").ok
    assert not Check("a", "fail", "", "fix").ok
    assert not has_failures([Check("a", "ok", ""), Check("b", "warn", "")])
    assert has_failures([Check("a", "ok", ""), Check("b", "fail", "", "fix")])


def test_a_crashing_check_becomes_a_failure() -> None:
    def broken() -> Check:
        raise RuntimeError("surprise")

    check = guarded("broken", broken)
    assert check.level == "fail"
    assert check.detail == "the check itself crashed: RuntimeError: surprise"
    assert check.fix is not None
