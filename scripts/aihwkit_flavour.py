"""Which aihwkit to build here: its CPU simulator only, or with CUDA too.

Run by ``scripts/setup.sh`` and ``benchmarks/gpu.sh`` with the venv's Python (stdlib
only; torch is not imported, its ``torch/version.py`` is read). Prints one line:

    cpu
    cuda <nvcc version> <label> <architectures>     e.g. ``cuda 12.8 128 90``

``<label>`` goes into aihwkit's version (``AIHWKIT_CUDA_VERSION``: ``1.2.0+cu128``), so
a CUDA build is told from a CPU one by its metadata alone; ``<architectures>`` is
``RPU_CUDA_ARCHITECTURES`` (``AIF_CUDA_ARCHITECTURES``, else the compute capability of
the GPUs ``nvidia-smi`` lists, else ``-`` for aihwkit's own list). Why, when it is not
obvious, goes to stderr.

The rule (``AIF_AIHWKIT_CUDA``): unset or ``auto``, CUDA when nvcc, a CUDA torch of the
same CUDA major version and the cuBLAS and cuRAND headers are all here, else CPU;
``1``, CUDA or exit 1 saying what is missing; ``0``, CPU. A CPU build of aihwkit still
runs the torch-tile families (``TorchInferenceRPUConfig`` ...) on any GPU torch sees.

Every input can be given on the command line instead (the tests do):
``--want auto|0|1 --nvcc none|12.8 --torch-cuda none|12.8 --cuda-headers yes|no
--gpu-arch 90``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: Headers of the CUDA libraries aihwkit's RPUCuda links (cublas, curand).
HEADERS = ("cublas_v2.h", "curand.h")


def find_nvcc() -> str | None:
    """nvcc on PATH, in $CUDA_HOME/bin or in /usr/local/cuda/bin."""
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(Path(home, "bin", "nvcc"), os.X_OK):
            return str(Path(home, "bin", "nvcc"))
    return None


def nvcc_version(nvcc: str | None) -> str | None:
    """``12.8`` from ``nvcc --version`` (``release 12.8, V12.8.93``)."""
    if nvcc is None:
        return None
    try:
        out = subprocess.run(
            [nvcc, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def torch_cuda() -> str | None:
    """``torch.version.cuda`` of the installed torch (``None``: a CPU build, or no torch)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder, "version.py")
        if path.is_file():
            found = re.search(r"^cuda\b[^=]*=\s*['\"]([^'\"]+)['\"]", path.read_text(), re.M)
            return found.group(1) if found else None
    return None


def cuda_headers(nvcc: str | None) -> bool:
    """Whether cuBLAS and cuRAND headers are where a CUDA build looks for them.

    The toolkit's include folder (beside nvcc), or the nvidia-* wheels a CUDA torch
    from PyPI brings (``site-packages/nvidia/{cublas,curand}/include``).
    """
    folders = [Path(p) for p in os.environ.get("CPATH", "").split(os.pathsep) if p]
    if nvcc is not None:
        folders.append(Path(nvcc).resolve().parent.parent / "include")
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda", "/usr/include"):
        if home:
            folders += [Path(home, "include"), Path(home)]
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        folders += [Path(base, "cublas", "include"), Path(base, "curand", "include")]
        folders += [Path(base, "cu13", "include")]
    return all(any((f / h).is_file() for f in folders) for h in HEADERS)


def gpu_architectures() -> str | None:
    """``90`` (or ``80;90``) from ``nvidia-smi``'s compute capabilities; None without."""
    chosen = os.environ.get("AIF_CUDA_ARCHITECTURES")
    if chosen:
        return chosen
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    caps = sorted({line.strip().replace(".", "") for line in out.splitlines() if line.strip()})
    return ";".join(caps) if caps and all(c.isdigit() for c in caps) else None


def decide(
    want: str, nvcc: str | None, torch: str | None, headers: bool, arch: str | None
) -> tuple[str, str]:
    """``(line, why)``: the line to print and the reason, or raise ``SystemExit``."""
    if want not in ("auto", "0", "1"):
        raise SystemExit(f"AIF_AIHWKIT_CUDA={want!r}: use 1 (CUDA), 0 (CPU) or leave it unset")
    if want == "0":
        return "cpu", "AIF_AIHWKIT_CUDA=0"
    missing = None
    if torch is None:
        missing = "torch is a CPU build (torch.version.cuda is None)"
    elif nvcc is None:
        missing = f"torch has CUDA {torch} but no nvcc was found (PATH, $CUDA_HOME/bin)"
    elif nvcc.split(".")[0] != torch.split(".")[0]:
        missing = f"nvcc is CUDA {nvcc} but torch was built with CUDA {torch}"
    elif not headers:
        missing = f"nvcc {nvcc} has no cuBLAS/cuRAND headers ({', '.join(HEADERS)})"
    if missing is None:
        label = "".join(nvcc.split(".")[:2]) if nvcc else ""
        return f"cuda {nvcc} {label} {arch or '-'}", f"CUDA {nvcc} (torch CUDA {torch})"
    if want == "1":
        raise SystemExit(f"AIF_AIHWKIT_CUDA=1, but {missing}: aihwkit cannot be built with CUDA")
    tiles = " (torch-tile families still run on cuda)" if torch else ""
    return "cpu", f"{missing}{tiles}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--want", default=os.environ.get("AIF_AIHWKIT_CUDA") or "auto")
    parser.add_argument("--nvcc", help="nvcc's CUDA version, or none (default: found)")
    parser.add_argument("--torch-cuda", help="torch.version.cuda, or none (default: read)")
    parser.add_argument("--cuda-headers", choices=["yes", "no"], help="(default: looked for)")
    parser.add_argument("--gpu-arch", help="RPU_CUDA_ARCHITECTURES (default: nvidia-smi)")
    args = parser.parse_args(argv)

    def given(value: str | None) -> str | None:
        return None if value in (None, "", "none") else value

    nvcc_path = find_nvcc() if args.nvcc is None else None
    nvcc = given(args.nvcc) if args.nvcc is not None else nvcc_version(nvcc_path)
    torch = given(args.torch_cuda) if args.torch_cuda is not None else torch_cuda()
    if args.cuda_headers is not None:
        headers = args.cuda_headers == "yes"
    else:
        headers = nvcc is not None and cuda_headers(nvcc_path)
    arch = given(args.gpu_arch) if args.gpu_arch is not None else gpu_architectures()
    line, why = decide(args.want.strip().lower(), nvcc, torch, headers, arch)
    print(line)
    print(f"aihwkit {line.split()[0]} build: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
