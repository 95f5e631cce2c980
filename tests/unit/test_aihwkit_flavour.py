"""scripts/aihwkit_flavour.py: when scripts/setup.sh builds aihwkit with CUDA.

Every input is given on the command line, so no GPU, nvcc or CUDA torch is needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "aihwkit_flavour.py"
CUDA_BOX = ["--nvcc", "12.8", "--torch-cuda", "12.6", "--cuda-headers", "yes"]


def flavour(*args: str, want: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if want is not None:
        env["AIF_AIHWKIT_CUDA"] = want
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def test_nvcc_and_a_cuda_torch_of_its_major_version_build_with_cuda() -> None:
    done = flavour(*CUDA_BOX, "--gpu-arch", "90")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "cuda 12.8 128 90\n"  # version label +cu128, RPU_CUDA_ARCHITECTURES


def test_without_a_gpu_to_ask_the_architecture_aihwkit_keeps_its_own_list() -> None:
    assert flavour(*CUDA_BOX, "--gpu-arch", "none").stdout == "cuda 12.8 128 -\n"


@pytest.mark.parametrize(
    ("nvcc", "torch", "headers", "why"),
    [
        ("13.0", "none", "yes", "torch is a CPU build"),  # this machine: nvcc, CPU torch
        ("none", "12.6", "no", "no nvcc was found"),
        ("13.0", "12.6", "yes", "nvcc is CUDA 13.0 but torch was built with CUDA 12.6"),
        ("12.8", "12.6", "no", "no cuBLAS/cuRAND headers"),
    ],
)
def test_anything_missing_builds_for_the_cpu_as_before(
    nvcc: str, torch: str, headers: str, why: str
) -> None:
    args = ["--nvcc", nvcc, "--torch-cuda", torch, "--cuda-headers", headers]
    done = flavour(*args, "--gpu-arch", "90")
    assert (done.returncode, done.stdout) == (0, "cpu\n")
    assert why in done.stderr
    # asked for CUDA, the same machine is refused with the same reason
    asked = flavour(*args, want="1")
    assert asked.returncode == 1 and asked.stdout == ""
    assert "AIF_AIHWKIT_CUDA=1" in asked.stderr and why in asked.stderr


def test_a_gpu_torch_without_nvcc_still_runs_torch_tiles_on_cuda() -> None:
    done = flavour("--nvcc", "none", "--torch-cuda", "12.6", "--cuda-headers", "no")
    assert "torch-tile families still run on cuda" in done.stderr


def test_zero_builds_for_the_cpu_even_where_cuda_could_be_built() -> None:
    assert flavour(*CUDA_BOX, want="0").stdout == "cpu\n"
    assert flavour(*CUDA_BOX, "--want", "0").stdout == "cpu\n"


def test_a_value_that_is_neither_is_refused() -> None:
    done = flavour(*CUDA_BOX, want="yes")
    assert done.returncode == 1 and "use 1 (CUDA), 0 (CPU)" in done.stderr


def test_this_machine_is_read_without_importing_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(SCRIPT), "--want", "auto"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.split()[0] in ("cpu", "cuda")
    assert "| torch\n" not in done.stderr and "| numpy\n" not in done.stderr
