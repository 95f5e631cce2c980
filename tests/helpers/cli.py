"""The ``aif`` command in a child process, as a user runs it, for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def aif(
    *args: str,
    cwd: Path = ROOT,
    timeout: float = 300.0,
    env: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``python -m aif ARGS`` in ``cwd``, its output captured as text; never raises for
    the exit status. ``env``: variables set on top of this process's; ``unset``: ones
    removed (``AIF_CONTROLLER``, say, so a test cannot reach a developer's daemon)."""
    variables = {k: v for k, v in os.environ.items() if k not in set(unset)}
    variables.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "aif", *args],
        cwd=cwd,
        env=variables,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
