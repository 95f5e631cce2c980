"""Properties of the IDX reader: whatever the bytes of an IDX file (plain or gzipped, a
valid header mutated in its magic, element type, dimension count or sizes, a body cut
short or too long, a gzip stream that inflates past what its header promises), it is
read as the array its header describes or refused with ``ExperimentError``, never
another exception; and reading it costs memory in proportion to what the file holds,
never to what its header promises."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aif.aims.analog import datasets
from aif.aims.analog.datasets import IDX_FILES, load_dataset
from aif.aims.analog.spec import DatasetSpec
from aif.errors import ExperimentError

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: The readers' limits during these tests, scaled down so a header that promises "the
#: limit" is cheap to act on and a reader that allocated what it promises would show.
FILE_LIMIT = 1 << 20
DATASET_LIMIT = 16 << 20
#: Seconds one file may take to read or refuse (generous: a busy CI machine).
TIME_BOUND = 5.0
U32 = st.integers(0, 2**32 - 1)


def idx(dims: int, shape: list[int], body: bytes, magic: bytes | None = None) -> bytes:
    head = magic if magic is not None else bytes((0, 0, 0x08, dims))
    return head + b"".join(n.to_bytes(4, "big") for n in shape) + body


@st.composite
def idx_files(draw: st.DrawFn) -> tuple[int, bytes, int]:
    """``(dims the reader asks for, file bytes, bytes they inflate to)``."""
    dims = draw(st.sampled_from([1, 3]))
    kind = draw(st.sampled_from(["bytes", "valid", "mutated", "mutated", "bomb", "promise"]))
    if kind == "bytes":
        content = draw(st.binary(max_size=300))
    else:
        shape = [draw(st.integers(0, 6)) for _ in range(dims)]
        size = int(np.prod(shape))
        body = draw(st.binary(min_size=size, max_size=size))
        magic = None
        if kind == "mutated":
            what = draw(st.sampled_from(["magic", "dtype", "ndim", "dims", "cut", "extra"]))
            if what == "magic":
                magic = draw(st.binary(min_size=4, max_size=4))
            elif what == "dtype":
                magic = bytes((0, 0, draw(st.sampled_from([0x09, 0x0B, 0x0C, 0x0D, 0x0E])), dims))
            elif what == "ndim":
                magic = bytes((0, 0, 0x08, draw(st.integers(0, 255))))
            elif what == "dims":
                # any u32, small, or a promise between the two limits (cheap to refuse)
                sizes = st.one_of(U32, st.integers(0, 6), st.integers(FILE_LIMIT, DATASET_LIMIT))
                shape = [draw(sizes), *(draw(st.integers(1, 2)) for _ in range(dims - 1))]
            elif what == "cut":
                body = body[: draw(st.integers(0, len(body)))]
                shape = shape[: draw(st.integers(0, dims))]
            else:
                body += draw(st.binary(min_size=1, max_size=20))
        elif kind == "bomb":  # a header that promises little, a stream of much more
            body += bytes(draw(st.integers(1, 4 * FILE_LIMIT)))
        elif kind == "promise":  # a header that promises up to the limit, a short stream
            shape = [draw(st.integers(FILE_LIMIT, DATASET_LIMIT)), *[1] * (dims - 1)]
        content = idx(dims, shape, body, magic)
        if draw(st.booleans()):
            content = content[: draw(st.integers(0, len(content)))]
    inflated = len(content)
    if kind in ("bomb", "promise") or draw(st.booleans()):
        content = gzip.compress(content, compresslevel=1)
        if draw(st.integers(0, 4)) == 0:  # a damaged stream
            at = draw(st.integers(0, len(content) - 1))
            content = content[:at] + bytes([content[at] ^ 0x55]) + content[at + 1 :]
    return dims, content, inflated


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "MAX_DATA_FILE_BYTES", FILE_LIMIT)
    monkeypatch.setattr(datasets, "MAX_DATASET_BYTES", DATASET_LIMIT)


@FUZZ
@given(case=idx_files())
def test_any_idx_file_is_read_or_refused_in_bounded_memory(
    tmp_path: Path, small_limits: None, case: tuple[int, bytes, int]
) -> None:
    dims, content, inflated = case
    path = tmp_path / ("f.gz" if content[:2] == b"\x1f\x8b" else "f")
    path.write_bytes(content)
    tracemalloc.start()
    start = time.monotonic()
    try:
        array = datasets._read_idx(path, dims)
    except datasets._IdxFault as fault:  # load_dataset turns these into ExperimentError
        assert str(path) in str(fault)
        array = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - start < TIME_BOUND
    # read_bounded's buffer of the file limit (or one chunk of gzip's), the file, and what
    # it inflates to twice over (the chunks, then joined): never what its header promises
    buffer = max(FILE_LIMIT, datasets._INFLATE_CHUNK)
    assert peak < buffer + len(content) + 2 * min(inflated, DATASET_LIMIT) + (64 << 10)
    if array is not None:
        assert array.dtype == np.uint8 and array.ndim == dims and len(array)
        assert content[:4] == bytes((0, 0, 8, dims)) or content[:2] == b"\x1f\x8b"


def test_a_gzip_header_that_promises_the_limit_costs_only_what_the_file_holds(
    tmp_path: Path, small_limits: None
) -> None:
    """Regression: the reader asked gzip for the promised size at once, which allocates
    all of it, however little the stream holds."""
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(idx(3, [DATASET_LIMIT // 4, 2, 2], bytes(100))))
    tracemalloc.start()
    try:
        with pytest.raises(datasets._IdxFault, match="truncated"):
            datasets._read_idx(path, 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < FILE_LIMIT + (256 << 10)


def test_a_gzipped_file_that_is_not_idx_is_refused_for_its_magic(tmp_path: Path) -> None:
    """Not decompressed past its header, and refused for what it is, not for a size its
    first bytes happen to spell."""
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(b"\xff" * 64))
    with pytest.raises(datasets._IdxFault, match="bad magic number ffffffff"):
        datasets._read_idx(path, 3)


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("idx")
    for split, n in (("train", 6), ("test", 3)):
        images = bytes(range(n * 4))
        (folder / IDX_FILES[f"{split}_images"]).write_bytes(idx(3, [n, 2, 2], images))
        (folder / IDX_FILES[f"{split}_labels"]).write_bytes(idx(1, [n], bytes(n)))
    return folder


@FUZZ
@given(case=idx_files(), which=st.sampled_from(sorted(IDX_FILES)))
def test_any_idx_file_in_a_set_loads_or_is_an_experiment_error(
    idx_folder: Path, small_limits: None, case: tuple[int, bytes, int], which: str
) -> None:
    _, content, _ = case
    plain = idx_folder / IDX_FILES[which]
    saved = plain.read_bytes()
    target = plain.with_name(plain.name + ".gz") if content[:2] == b"\x1f\x8b" else plain
    plain.unlink()
    target.write_bytes(content)
    try:
        data = load_dataset(DatasetSpec.model_validate({"name": "idx", "path": "."}), idx_folder)
    except ExperimentError as exc:
        assert exc.problems and all(path == "dataset.path" for path, _ in exc.problems)
    else:
        assert len(data.y_train) and len(data.y_test) and data.classes >= 1
    finally:
        target.unlink(missing_ok=True)
        plain.write_bytes(saved)
