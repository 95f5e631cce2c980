"""The wheel folder ``benchmarks/gpu.sh`` brings to a GPU machine without network.

Standard library only: the GPU machine runs it with its own Python before any venv.

    python benchmarks/gpu_wheels.py pack FOLDER       loose wheels -> FOLDER/wheels.tar.xz
    python benchmarks/gpu_wheels.py unpack FOLDER OUT  FOLDER/wheels.tar.xz -> OUT/*.whl
    python benchmarks/gpu_wheels.py check FOLDER [3.12]  the layout gpu.sh needs, or exit 1
    python benchmarks/gpu_wheels.py openblas SITE OUT  a cblas.h for aihwkit over scipy-openblas32

Why packed: the device machine takes at most 64 MiB of ignored files along, and aif's
dependencies for Python 3.12 are about 110 MiB as wheels (scipy, cmake and numpy are
most of it). Each wheel is rewritten uncompressed (``ZIP_STORED``; pip verifies the
RECORD hashes of the files, not how the zip stores them) and the lot is xz-compressed
in one tar, about a third smaller than the wheels' own deflate. cmake's wheel loses
ctest, cpack and its documentation, which the aihwkit build does not run.

Why the OpenBLAS shim: aihwkit's C++ simulator needs a CBLAS at build time, and a bare
GPU machine may have no ``libopenblas-dev`` (and no network for apt). The
scipy-openblas32 wheel has one, with every symbol prefixed ``scipy_``; the shim's
``cblas.h`` includes its header and maps aihwkit's ``cblas_*`` names onto it.
"""

from __future__ import annotations

import io
import re
import sys
import tarfile
import zipfile
from pathlib import Path

ARCHIVE = "wheels.tar.xz"
#: What must be in the archive for gpu.sh to install and build offline (name prefixes).
REQUIRED = (
    "aihwkit-1.2.0.tar.gz",
    "cmake-",
    "scikit_build-",
    "pybind11-",
    "ninja-",
    "setuptools-",
    "wheel-",
    "scipy_openblas32-",
    "numpy-",
    "scipy-",
    "scikit_learn-",
    "pyzmq-",
    "pydantic-",
)
#: Parts of cmake's wheel the aihwkit build never uses.
CMAKE_DROP = re.compile(
    r"cmake/data/(bin/(ctest|cpack|ccmake)$|share/(doc|vim|emacs|bash-completion|aclocal)/"
    r"|share/cmake-[^/]+/Help/)"
)


def stored(wheel: Path) -> bytes:
    """``wheel`` rewritten without compression (and, for cmake, without the unused parts)."""
    out = io.BytesIO()
    trim = wheel.name.startswith("cmake-")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        dropped = {i.filename for i in src.infolist() if trim and CMAKE_DROP.search(i.filename)}
        for info in src.infolist():
            if info.filename in dropped:
                continue
            data = src.read(info.filename)
            if trim and info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(r for r in lines if r.split(",", 1)[0] not in dropped).encode()
            info.compress_type = zipfile.ZIP_STORED
            dst.writestr(info, data)
    return out.getvalue()


def pack(folder: Path) -> None:
    """Every ``*.whl`` and ``*.tar.gz`` in ``folder`` into ``folder/wheels.tar.xz``."""
    loose = sorted([*folder.glob("*.whl"), *folder.glob("*.tar.gz")])
    partial = folder / (ARCHIVE + ".part")  # renamed when whole: never half an archive
    with tarfile.open(partial, "w:xz", preset=6) as tar:
        for path in loose:
            data = stored(path) if path.suffix == ".whl" else path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    partial.replace(folder / ARCHIVE)
    for path in loose:
        path.unlink()


def unpack(folder: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / ARCHIVE) as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or member.name.startswith("."):
                raise SystemExit(f"{folder / ARCHIVE}: unexpected member {member.name!r}")
            source = tar.extractfile(member)
            assert source is not None
            (out / member.name).write_bytes(source.read())


def check(folder: Path, python: str = "3.12") -> list[str]:
    """What is missing from ``folder`` for gpu.sh on ``python`` (empty when it is ready)."""
    problems = []
    archive = folder / ARCHIVE
    if not archive.is_file():
        return [f"{archive} is missing: run benchmarks/gpu.sh --prepare where there is network"]
    if not (folder / "requirements.txt").is_file():
        problems.append(f"{folder / 'requirements.txt'} is missing")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    for prefix in REQUIRED:
        if not any(n.startswith(prefix) for n in names):
            problems.append(f"{archive} has no {prefix}*")
    tag = "cp" + python.replace(".", "")
    wrong = [n for n in names if re.search(rf"-(?!{tag}-)cp\d+-cp", n)]  # abi3 ones fit
    if wrong:
        listed = ", ".join(wrong)
        problems.append(f"{archive} has wheels for another Python than {python}: {listed}")
    return problems


def openblas(site: Path, out: Path) -> tuple[Path, Path]:
    """``(include dir, library)`` for aihwkit's CMake, over scipy-openblas32 in ``site``."""
    base = site / "scipy_openblas32"
    header, library = base / "include" / "cblas.h", base / "lib" / "libscipy_openblas.so"
    if not header.is_file() or not library.is_file():
        raise SystemExit(f"scipy-openblas32 is not installed in {site}")
    text = header.read_text()
    names = sorted(set(re.findall(r"\bscipy_((?:cblas|openblas)_\w+)\s*\(", text)))
    include = out / "include"
    include.mkdir(parents=True, exist_ok=True)
    lines = [
        "/* Written by benchmarks/gpu_wheels.py: aihwkit's CBLAS names onto scipy-openblas32. */",
        "#pragma once",
        f'#include "{header}"',
        *(f"#define {name} scipy_{name}" for name in names),
    ]
    (include / "cblas.h").write_text("\n".join(lines) + "\n")
    config = base / "include" / "openblas_config.h"
    (include / "openblas_config.h").write_text(f'#include "{config}"\n')
    return include, library


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "pack":
        pack(Path(argv[1]))
    elif len(argv) >= 3 and argv[0] == "unpack":
        unpack(Path(argv[1]), Path(argv[2]))
    elif len(argv) >= 2 and argv[0] == "check":
        problems = check(Path(argv[1]), *argv[2:3])
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    elif len(argv) >= 3 and argv[0] == "openblas":
        include, library = openblas(Path(argv[1]), Path(argv[2]))
        print(include, library)
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
