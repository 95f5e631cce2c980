"""benchmarks/gpu_wheels.py: the folder benchmarks/gpu.sh takes to a GPU machine.

Fake wheels stand in for the real ones, so nothing is downloaded.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from benchmarks.gpu_wheels import ARCHIVE, REQUIRED, check, openblas, pack, unpack


def _wheel(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    path = folder / name
    info = name.split("-")[0] + "-" + name.split("-")[1] + ".dist-info"
    record = "".join(f"{f},sha256=x,{len(b)}\n" for f, b in files.items())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for file, data in files.items():
            whl.writestr(file, data)
        whl.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")
    return path


def _complete(folder: Path) -> None:
    """A fake wheel (or sdist) for every name gpu.sh needs."""
    for prefix in REQUIRED:
        if prefix.endswith(".tar.gz"):
            (folder / prefix).write_bytes(b"sdist")
        elif prefix != "cmake-":
            _wheel(folder, f"{prefix}1.0-cp312-cp312-manylinux_2_28_x86_64.whl", {"m.py": b""})
    (folder / "requirements.txt").write_text("numpy\n")


def test_wheels_travel_uncompressed_in_one_xz_and_cmake_loses_what_the_build_skips(
    tmp_path: Path,
) -> None:
    _complete(tmp_path)
    cmake = _wheel(
        tmp_path,
        "cmake-4.0-py3-none-manylinux2014_x86_64.whl",
        {
            "cmake/data/bin/cmake": b"c" * 1000,
            "cmake/data/bin/ctest": b"t" * 1000,
            "cmake/data/bin/cpack": b"p" * 1000,
            "cmake/data/share/cmake-4.0/Help/manual.rst": b"h",
            "cmake/data/share/cmake-4.0/Modules/X.cmake": b"m",
        },
    )
    pack(tmp_path)
    assert not cmake.exists() and (tmp_path / ARCHIVE).is_file()
    assert check(tmp_path) == []
    out = tmp_path / "out"
    unpack(tmp_path, out)
    with zipfile.ZipFile(out / cmake.name) as whl:
        names = whl.namelist()
        assert {i.compress_type for i in whl.infolist()} == {zipfile.ZIP_STORED}
        record = whl.read("cmake-4.0.dist-info/RECORD").decode()
    assert "cmake/data/bin/cmake" in names and "cmake/data/share/cmake-4.0/Modules/X.cmake" in names
    assert not [n for n in names if n.endswith(("ctest", "cpack")) or "/Help/" in n]
    assert "ctest" not in record and "cmake/data/bin/cmake," in record


def test_check_names_what_is_missing_or_built_for_another_python(tmp_path: Path) -> None:
    assert "run benchmarks/gpu.sh --prepare" in check(tmp_path)[0]
    _complete(tmp_path)
    (tmp_path / "scipy-1.0-cp312-cp312-manylinux_2_28_x86_64.whl").unlink()
    _wheel(tmp_path, "scipy-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", {"s.py": b""})
    pack(tmp_path)
    problems = check(tmp_path)
    assert any("has no cmake-*" in p for p in problems)
    assert any("another Python than 3.12" in p and "cp311" in p for p in problems)


def test_an_archive_member_outside_the_folder_is_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / ARCHIVE, "w:xz") as tar:
        tar.add(__file__, arcname="../evil.whl")
    with pytest.raises(SystemExit, match="unexpected member"):
        unpack(tmp_path, tmp_path / "out")


def test_the_openblas_shim_maps_aihwkits_cblas_names_onto_scipy_openblas(
    tmp_path: Path,
) -> None:
    base = tmp_path / "site" / "scipy_openblas32"
    (base / "include").mkdir(parents=True)
    (base / "lib").mkdir()
    (base / "lib" / "libscipy_openblas.so").write_bytes(b"")
    (base / "include" / "openblas_config.h").write_text("")
    (base / "include" / "cblas.h").write_text(
        "void scipy_cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER Order);\n"
        "float scipy_cblas_snrm2 (OPENBLAS_CONST blasint N);\n"
        "int scipy_openblas_get_num_threads(void);\n"
    )
    include, library = openblas(tmp_path / "site", tmp_path / "shim")
    assert library == base / "lib" / "libscipy_openblas.so"
    shim = (include / "cblas.h").read_text()
    assert f'#include "{base / "include" / "cblas.h"}"' in shim
    for name in ("cblas_sgemm", "cblas_snrm2", "openblas_get_num_threads"):
        assert f"#define {name} scipy_{name}\n" in shim
    assert (include / "openblas_config.h").is_file()
    with pytest.raises(SystemExit, match="scipy-openblas32 is not installed"):
        openblas(tmp_path / "elsewhere", tmp_path / "shim")
