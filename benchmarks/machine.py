"""What every benchmark reports about the machine it ran on (ratios travel, seconds do not),
and how it rounds the numbers of its JSON line."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def describe(**versions: Any) -> dict[str, Any]:
    """Core count, CPU model, Python, and the ``versions`` each benchmark cares about."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), **versions}


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits, so the JSON line stays readable."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value
