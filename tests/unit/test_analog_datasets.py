"""The data sets of analog experiments: bundled digits, synthetic classes, real IDX files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aif.aims.analog.datasets import IDX_FILES, Dataset, load_dataset
from aif.aims.analog.spec import DatasetSpec
from aif.errors import ExperimentError


def spec(**fields: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(fields)


# -- digits and synthetic -------------------------------------------------------------------


def test_digits_are_8x8_images_split_by_seed() -> None:
    data = load_dataset(spec(name="digits", test_fraction=0.25, seed=3), Path("."))
    assert data.x_train.shape[1:] == (1, 8, 8) and data.sample_shape == (1, 8, 8)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.classes == 10
    total = len(data.y_train) + len(data.y_test)
    assert total == 1797 and len(data.y_test) == total - int(total * 0.75)
    assert data.x_train.min() >= 0.0 and data.x_train.max() == 1.0  # unit: pixels / 16
    again = load_dataset(spec(name="digits", test_fraction=0.25, seed=3), Path("."))
    np.testing.assert_array_equal(again.y_train, data.y_train)
    other = load_dataset(spec(name="digits", test_fraction=0.25, seed=4), Path("."))
    assert not np.array_equal(other.y_train, data.y_train)


def test_normalisation_and_truncation() -> None:
    raw = load_dataset(spec(name="digits", normalize="none", max_train=100, max_test=7), Path("."))
    assert raw.x_train.max() == 16.0
    assert len(raw.x_train) == len(raw.y_train) == 100 and len(raw.y_test) == 7
    std = load_dataset(spec(name="digits", normalize="standard"), Path("."))
    assert abs(float(std.x_train.mean())) < 1e-4 and abs(float(std.x_train.std()) - 1) < 1e-3
    assert abs(float(std.x_test.mean())) < 0.1  # train statistics, applied to test as well


def test_synthetic_is_deterministic_shaped_and_learnable() -> None:
    s = spec(name="synthetic", classes=5, samples=500, image_size=6, seed=1)
    data = load_dataset(s, Path("."))
    assert data.x_train.shape == (375, 1, 6, 6) and data.classes == 5
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert set(np.unique(data.y_train)) == set(range(5))
    np.testing.assert_array_equal(load_dataset(s, Path(".")).x_test, data.x_test)
    assert _nearest_mean_accuracy(data) > 0.8  # chance is 0.2


def test_synthetic_default_is_learnable_but_not_trivial() -> None:
    data = load_dataset(spec(name="synthetic"), Path("."))
    assert data.sample_shape == (1, 8, 8) and data.classes == 10
    assert 0.6 < _nearest_mean_accuracy(data) < 1.0  # chance is 0.1


def _nearest_mean_accuracy(data: Dataset) -> float:
    """A linear classifier with no training loop: the nearest class mean."""
    x_train = data.x_train.reshape(len(data.x_train), -1)
    x_test = data.x_test.reshape(len(data.x_test), -1)
    means = np.stack([x_train[data.y_train == c].mean(axis=0) for c in range(data.classes)])
    distances = ((x_test[:, None, :] - means[None]) ** 2).sum(axis=2)
    return float((distances.argmin(axis=1) == data.y_test).mean())


# -- IDX files ------------------------------------------------------------------------------


def _idx(array: np.ndarray, dims: int | None = None) -> bytes:
    dims = array.ndim if dims is None else dims
    header = bytes((0, 0, 0x08, dims)) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes, gz: bool) -> Path:
    target = path.with_name(path.name + ".gz") if gz else path
    target.write_bytes(gzip.compress(data) if gz else data)
    return target


def _idx_folder(folder: Path, train: int = 12, test: int = 5, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        images = rng.integers(0, 256, (n, 5, 4), dtype=np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        _write(folder / IDX_FILES[f"{split}_images"], _idx(images), gz)
        _write(folder / IDX_FILES[f"{split}_labels"], _idx(labels), not gz)  # mix both forms
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_load_plain_or_gzipped(tmp_path: Path, gz: bool) -> None:
    _idx_folder(tmp_path / "mnist", gz=gz)
    data = load_dataset(spec(name="idx", path="mnist"), tmp_path)  # relative to base_dir
    assert data.x_train.shape == (12, 1, 5, 4) and data.x_test.shape == (5, 1, 5, 4)
    assert data.classes == 3 and data.y_train.tolist()[:4] == [0, 1, 2, 0]
    assert data.x_train.max() <= 1.0 and data.x_train.dtype == np.float32  # unit: / 255
    raw = load_dataset(spec(name="idx", path=str(tmp_path / "mnist"), normalize="none"), tmp_path)
    assert raw.x_train.max() > 1.0 and float(raw.x_train.max()).is_integer()
    cut = load_dataset(spec(name="idx", path="mnist", max_train=4, max_test=2), tmp_path)
    assert len(cut.y_train) == 4 and len(cut.x_test) == 2


def _fault(folder: Path, base: Path | None = None) -> str:
    with pytest.raises(ExperimentError) as info:
        load_dataset(spec(name="idx", path=str(folder)), base or folder)
    assert all(path == "dataset.path" for path, _ in info.value.problems)
    return str(info.value)


def test_idx_bad_magic_names_the_file(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path)
    name = IDX_FILES["train_labels"] + ".gz"
    (folder / name).write_bytes(gzip.compress(_idx(np.zeros((3, 2, 2)))))  # images, not labels
    message = _fault(folder)
    assert name in message and "bad magic number 00000803" in message
    assert "expected 00000801" in message


def test_idx_truncated_data_and_header(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path)
    images = folder / IDX_FILES["test_images"]
    images.write_bytes(images.read_bytes()[:-7])
    labels = folder / (IDX_FILES["test_labels"] + ".gz")
    labels.write_bytes(gzip.compress(bytes((0, 0, 8, 1, 0))))
    message = _fault(folder)
    assert f"{images}: truncated: the header gives shape 5x5x4 (100 bytes of data)" in message
    assert f"{labels}: truncated header (5 bytes, need 8)" in message


def test_idx_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path)
    _write(folder / IDX_FILES["train_labels"], _idx(np.zeros(11)), gz=True)
    assert "train split: 12 images but 11 labels" in _fault(folder)


def test_idx_broken_gzip_empty_and_missing_files(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path, gz=True)
    broken = folder / (IDX_FILES["train_images"] + ".gz")
    broken.write_bytes(broken.read_bytes()[:30])
    (folder / (IDX_FILES["test_images"] + ".gz")).unlink()
    _write(folder / IDX_FILES["train_labels"], _idx(np.zeros(0)), gz=False)
    message = _fault(folder)
    assert f"{broken}: cannot be read" in message
    assert f"{IDX_FILES['test_images']} (or {IDX_FILES['test_images']}.gz) is missing" in message
    assert "holds no labels" in message


def test_idx_image_sizes_must_agree_and_folder_must_exist(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path)
    _write(folder / IDX_FILES["test_images"], _idx(np.zeros((5, 3, 3))), gz=False)
    assert "train images are 5x4 but test images are 3x3" in _fault(folder)
    assert "is not a folder" in _fault(tmp_path / "nowhere")


def test_idx_trailing_bytes_are_an_error(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path)
    labels = folder / (IDX_FILES["test_labels"] + ".gz")
    labels.write_bytes(gzip.compress(_idx(np.zeros(5)) + b"\x00\x00"))
    assert "longer than its header says" in _fault(folder)


def test_the_digits_facts_the_validator_uses_match_the_real_set() -> None:
    from aif.aims.analog.datasets import DIGITS_CLASSES, DIGITS_SAMPLES, DIGITS_SHAPE
    from aif.aims.analog.spec import DatasetSpec

    data = load_dataset(DatasetSpec(name="digits", normalize="none"), Path("."))
    assert len(data.y_train) + len(data.y_test) == DIGITS_SAMPLES
    assert data.sample_shape == DIGITS_SHAPE and data.classes == DIGITS_CLASSES
