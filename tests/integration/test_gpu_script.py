"""benchmarks/gpu.sh as far as a machine without a GPU can run it.

``--self-test`` checks the prepared wheel folder when there is one (``--prepare`` needs
the network, so it is not run here), prints the setup's CUDA decision, then runs
``benchmarks/gpu.py`` on the CPU with its small sizes: here only the device sweep, so
the test stays well under a minute; the JSON line it prints is the one the GPU run
prints, with ``cuda_speedup`` null for want of a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python").exists(),
        reason="gpu.sh --self-test runs this checkout's .venv (scripts/setup.sh makes it)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def gpu_sh(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_self_test_runs_the_sweep_on_the_cpu_and_prints_the_json_line() -> None:
    done = gpu_sh("--self-test", "--budget", "60", timeout=110, AIF_GPU_WORKLOADS="sweep")
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["cuda_speedup"] is None and line["sweep_cuda_speedup"] is None
    assert line["devices"] == ["cpu"] and line["family"] == "InferenceRPUConfig"
    sweep = line["sweep"]["cpu"]
    assert sweep["epochs_done"] == 4 and not sweep["timed_out"]  # 2 experiments x 2 epochs
    assert sweep["accuracy"] > 0.2  # trained, on 10 classes
    assert "the flavour decision: cpu" in done.stderr or "cuda" in done.stderr
    assert "[gpu.py" in done.stderr and "[gpu.sh" in done.stderr  # progress, with times


def test_help_and_a_wrong_option() -> None:
    helped = gpu_sh("--help")
    assert (
        helped.returncode == 0 and "--prepare" in helped.stdout and "--cuda-build" in helped.stdout
    )
    wrong = gpu_sh("--fast")
    assert wrong.returncode == 2 and "unknown option --fast" in wrong.stderr


def test_on_a_machine_without_torch_it_says_so() -> None:
    env = {"PATH": str(Path(sys.base_prefix) / "bin") + ":/usr/bin:/bin", "HOME": "/tmp"}
    for name in ("python3.12", "python3", "python"):
        found = shutil.which(name, path=env["PATH"])
        probe = [found, "-c", "import torch"] if found else []
        if probe and subprocess.run(probe, env=env, capture_output=True).returncode == 0:
            pytest.skip(f"{found} imports torch: gpu.sh would set up and benchmark for real")
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "no Python here imports torch" in done.stderr
