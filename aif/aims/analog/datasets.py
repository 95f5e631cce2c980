"""The samples an analog experiment trains and tests on, from local sources only.

Experiments run on machines that may have no network, and a download in the middle of
a job would make its timing meaningless, so nothing here fetches anything: ``digits``
is scikit-learn's bundled 8x8 set, ``idx`` reads MNIST-format files the user already
has, ``synthetic`` draws separable classes (1 or 3 channels) from a seed, and
``cifar10``, ``cifar100``, ``npz`` and ``images`` are read by
:mod:`aif.aims.analog.data_files`, ``text`` by :mod:`aif.aims.analog.data_text` and
``torch`` (the user's factory) by :mod:`aif.aims.analog.data_factory`. Every set comes
out the same way, samples in float32
(images ``(N, channels, height, width)``) and int64 labels (float32 targets for an
``npz`` regression set), so the model builder can track shapes without caring where the
data came from. ``validation_fraction`` carves a seeded validation split from the
training set; ``normalize`` uses the statistics of what is left for training.

IDX files are parsed here rather than with a third-party reader because a malformed
file must name itself and say what is wrong (bad magic, a short read, an image count
that does not match the label count) instead of failing later inside training.
"""

from __future__ import annotations

import gzip
import io
import math
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aif.aims.analog.data_files import MAX_DATA_FILE_BYTES, FileSet
from aif.aims.analog.spec import DatasetSpec
from aif.aims.analog.spec_values import MAX_DATASET_BYTES
from aif.errors import ExperimentError, InputError
from aif.inputs.files import file_problem, read_bounded, size_text

#: The four MNIST-format files an ``idx`` folder holds (each may also end in ``.gz``).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: scikit-learn's digits, known without loading it (a test pins them to the real set).
DIGITS_SAMPLES = 1797
DIGITS_SHAPE = (1, 8, 8)
DIGITS_CLASSES = 10
_IDX_UBYTE = 0x08  # the only element type MNIST-format sets use
_INFLATE_CHUNK = 1 << 20  # bytes a gzipped IDX file is decompressed by at a time
#: Synthetic prototypes are uniform in [0.25, 0.75] with this per-pixel noise around them:
#: a linear model reaches about 93% on 8x8 images of 10 classes, so the task is learnable
#: and still leaves room to see analog noise cost accuracy.
_SYNTHETIC_RANGE = (0.25, 0.75)
_SYNTHETIC_NOISE = 0.3


@dataclass(frozen=True)
class Dataset:
    """Train, test and (maybe empty) validation splits: samples float32, labels int64
    (float32 targets when ``task`` is ``regression``)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    #: Carved from the training set by ``validation_fraction`` (empty when 0).
    x_val: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    y_val: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    #: ``classification`` (integer labels) or ``regression`` (float targets, ``npz`` only).
    task: str = "classification"
    #: The class folders of an ``images`` set, in label order; empty for the others.
    class_names: tuple[str, ...] = ()

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: ``(channels, height, width)`` for images."""
        return tuple(int(d) for d in self.x_train.shape[1:])


def load_dataset(spec: DatasetSpec, base_dir: Path) -> Dataset:
    """The data set ``spec`` names; relative paths are read from ``base_dir``.

    Raises :class:`ExperimentError` with paths such as ``dataset.path`` when the data
    cannot be read.
    """
    task = "classification"
    names: tuple[str, ...] = ()  # the file sets' own, below
    if spec.name == "digits":
        x, y, scale = _digits()
        x_train, y_train, x_test, y_test = _split(x, y, spec.test_fraction, spec.seed)
        classes = 10
    elif spec.name == "synthetic":
        x, y = _synthetic(spec.classes, spec.samples, spec.side, spec.seed, spec.depth)
        x_train, y_train, x_test, y_test = _split(x, y, spec.test_fraction, spec.seed)
        classes, scale = spec.classes, 1.0
    elif spec.name == "idx":
        x_train, y_train, x_test, y_test = _idx_set(_path(spec, base_dir))
        classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
        scale = 255.0
    else:
        files = _file_set(spec, base_dir)
        if files.x_test is None or files.y_test is None:
            x_train, y_train, x_test, y_test = _split(
                files.x_train, files.y_train, spec.test_fraction, spec.seed
            )
        else:
            x_train, y_train = files.x_train, files.y_train
            x_test, y_test = files.x_test, files.y_test
        classes, scale, task = files.classes, files.scale, files.task
        names = files.class_names
    x_val, y_val = x_train[:0], y_train[:0]
    if spec.validation_fraction > 0 and len(y_train) >= 2:
        x_train, y_train, x_val, y_val = _split(
            x_train, y_train, spec.validation_fraction, spec.seed + 1
        )
    x_train, y_train = x_train[: spec.max_train], y_train[: spec.max_train]
    x_test, y_test = x_test[: spec.max_test], y_test[: spec.max_test]
    x_train, x_test, x_val = _normalize(x_train, [x_test, x_val], spec.normalize, scale)
    labels = np.float32 if task == "regression" else np.int64
    return Dataset(
        x_train=np.ascontiguousarray(x_train, dtype=np.float32),
        y_train=np.ascontiguousarray(y_train, dtype=labels),
        x_test=np.ascontiguousarray(x_test, dtype=np.float32),
        y_test=np.ascontiguousarray(y_test, dtype=labels),
        classes=classes,
        x_val=np.ascontiguousarray(x_val, dtype=np.float32),
        y_val=np.ascontiguousarray(y_val, dtype=labels),
        task=task,
        class_names=names,
    )


def _path(spec: DatasetSpec, base_dir: Path) -> Path:
    assert spec.path is not None  # DatasetSpec requires a path for the file sets
    path = Path(spec.path)
    return path if path.is_absolute() else base_dir / path


def _file_set(spec: DatasetSpec, base_dir: Path) -> FileSet:
    from aif.aims.analog import data_files

    if spec.name == "torch":
        from aif.aims.analog.data_factory import read_factory

        assert spec.factory is not None  # DatasetSpec requires it
        return read_factory(spec.factory, spec.args, spec.task)
    path = _path(spec, base_dir)
    if spec.name == "text":
        from aif.aims.analog.data_text import read_text

        problem = file_problem(path, "the text file", MAX_DATA_FILE_BYTES)
        if problem is not None:
            raise ExperimentError("dataset 'text' cannot be read", [("dataset.path", problem)])

        return read_text(path, spec.sequence_length, spec.vocabulary)
    if spec.name in ("cifar10", "cifar100"):
        return data_files.read_cifar(spec.name, path, spec.label)
    if spec.name == "npz":
        return data_files.read_npz(path, spec.task)
    return data_files.read_images(path, spec.side, spec.depth)


class DatasetCache:
    """Data sets loaded once per worker and shared by its jobs (a sweep's, or a deployment's).

    Keyed by the whole ``dataset`` spec, so jobs that differ in it get their own copy;
    safe to call from worker threads.
    """

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir
        self._datasets: dict[str, Dataset] = {}
        self._lock = threading.Lock()

    def get(self, spec: DatasetSpec) -> Dataset:
        """The data set ``spec`` describes, loaded on first use."""
        key = spec.model_dump_json()
        with self._lock:
            if key not in self._datasets:
                self._datasets[key] = load_dataset(spec, self._base_dir)
            return self._datasets[key]


def _digits() -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.asarray(data.images, dtype=np.float32)[:, None, :, :]
    return x, np.asarray(data.target, dtype=np.int64), 16.0


def _synthetic(
    classes: int, samples: int, size: int, seed: int, channels: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around one random prototype image per class, clipped to [0, 1].

    Prototypes differ in every pixel, so even a linear model separates the classes well
    above chance; the noise keeps it from being trivial (see ``_SYNTHETIC_NOISE``).
    """
    rng = np.random.default_rng(seed)
    low, high = _SYNTHETIC_RANGE
    shape = (channels, size, size)
    prototypes = low + (high - low) * rng.random((classes, *shape), dtype=np.float32)
    y = rng.permutation(np.arange(samples) % classes).astype(np.int64)
    noise = rng.normal(0.0, _SYNTHETIC_NOISE, (samples, *shape)).astype(np.float32)
    x = np.clip(prototypes[y] + noise, 0.0, 1.0)
    return x, y


def split_sizes(samples: int, test_fraction: float) -> tuple[int, int]:
    """``(train, test)`` sample counts of a split: each keeps at least one sample."""
    train = min(max(int(samples * (1 - test_fraction)), 1), samples - 1)
    return train, samples - train


def _split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(y))
    cut = split_sizes(len(y), test_fraction)[0]
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def _normalize(
    x_train: np.ndarray, others: list[np.ndarray], how: str, scale: float
) -> list[np.ndarray]:
    """``x_train`` then ``others``, scaled in place on float32 copies (so a full MNIST
    never exists three times over) by statistics of ``x_train`` alone."""
    arrays = [x.astype(np.float32) for x in (x_train, *others)]
    x_train = arrays[0]
    if how == "unit":
        shift, spread = np.float32(0.0), np.float32(scale)
    elif how == "standard" and x_train.size:
        shift, spread = np.float32(x_train.mean()), np.float32(x_train.std())
        spread = spread if spread > 0 else np.float32(1.0)
    elif how == "channel" and x_train.size and x_train.ndim >= 2:
        # per channel of images, per feature of flat samples: all axes but the second
        axes = tuple(a for a in range(x_train.ndim) if a != 1)
        shift = x_train.mean(axis=axes, keepdims=True)[0]
        spread = x_train.std(axis=axes, keepdims=True)[0]
        spread[spread <= 0] = 1.0
    else:
        return arrays
    for x in arrays:
        x -= shift
        x /= spread
    return arrays


# -- IDX files -------------------------------------------------------------------------


def _idx_set(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reads all four files, reporting every faulty one at once."""
    if not folder.is_dir():
        raise ExperimentError(
            "dataset 'idx' cannot be read",
            [
                (
                    "dataset.path",
                    f"{str(folder)!r} is not a folder; give the folder holding the "
                    f"IDX files ({', '.join(IDX_FILES.values())})",
                )
            ],
        )
    arrays: dict[str, np.ndarray] = {}
    problems: list[tuple[str, str]] = []
    for key, stem in IDX_FILES.items():
        try:
            arrays[key] = _read_idx(_find_idx(folder, stem), dims=3 if "images" in key else 1)
        except _IdxFault as fault:
            problems.append(("dataset.path", str(fault)))
    for split in ("train", "test"):
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is not None and labels is not None and len(images) != len(labels):
            problems.append(
                (
                    "dataset.path",
                    f"{split} split: {len(images)} images but {len(labels)} labels; the two "
                    "files must come from the same set",
                )
            )
    if "train_images" in arrays and "test_images" in arrays:
        train_hw, test_hw = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
        if train_hw != test_hw:
            problems.append(
                (
                    "dataset.path",
                    f"train images are {train_hw[0]}x{train_hw[1]} but test images are "
                    f"{test_hw[0]}x{test_hw[1]}; both must have the same size",
                )
            )
    if problems:
        raise ExperimentError(f"dataset 'idx' in {str(folder)!r} cannot be read", problems)
    return (
        arrays["train_images"][:, None, :, :],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"][:, None, :, :],
        arrays["test_labels"].astype(np.int64),
    )


class _IdxFault(Exception):
    """One IDX file is missing or malformed; the message names it."""


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir())[:20]
    raise _IdxFault(
        f"{stem} (or {stem}.gz) is missing from {str(folder)!r}; the folder holds: "
        f"{', '.join(present) if present else 'nothing'}"
    )


def _read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``dims`` dimensions, checked against its header.

    A gzip file is decompressed no further than its header promises (and
    ``MAX_DATASET_BYTES``), in chunks, so a small file that inflates to gigabytes, or
    whose header promises gigabytes it does not hold, costs no more than what it holds;
    one whose magic number is wrong is not decompressed past its header.
    """
    expected = bytes((0, 0, _IDX_UBYTE, dims))
    try:
        raw = read_bounded(path, "IDX file", MAX_DATA_FILE_BYTES)
        if raw[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
                head = stream.read(4 + 4 * dims)
                if head[:4] == expected:
                    head += _inflate(stream, _idx_promise(path, head, dims) + 1)
                raw = head
    except InputError as exc:
        raise _IdxFault(str(exc)) from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise _IdxFault(f"{path}: cannot be read ({exc})") from exc
    kind = "image" if dims == 3 else "label"
    if len(raw) < 4 or raw[:4] != expected:
        found = raw[:4].hex() if raw else "an empty file"
        raise _IdxFault(
            f"{path}: bad magic number {found} (expected {expected.hex()} for an IDX {kind} "
            "file of unsigned bytes); is it the right file?"
        )
    header = 4 + 4 * dims
    if len(raw) < header:
        raise _IdxFault(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    size = _idx_promise(path, raw, dims)
    body = len(raw) - header
    if body != size:
        what = "truncated" if body < size else "longer than its header says"
        raise _IdxFault(
            f"{path}: {what}: the header gives shape {'x'.join(map(str, shape))} "
            f"({size} bytes of data) but the file holds {body}"
        )
    if shape[0] == 0:
        raise _IdxFault(f"{path}: holds no {kind}s")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _inflate(stream: gzip.GzipFile, limit: int) -> bytes:
    """At most ``limit`` bytes of ``stream``, read in chunks: ``stream.read(limit)`` would
    allocate ``limit`` bytes at once, however few the stream holds."""
    chunks: list[bytes] = []
    while limit > 0:
        chunk = stream.read(min(limit, _INFLATE_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def _idx_promise(path: Path, head: bytes, dims: int) -> int:
    """The bytes of data the IDX header ``head`` promises (0 if it is cut short; an
    ``_IdxFault`` if over ``MAX_DATASET_BYTES``)."""
    if len(head) < 4 + 4 * dims:
        return 0
    shape = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    size = math.prod(shape)
    if size > MAX_DATASET_BYTES:
        raise _IdxFault(
            f"{path}: the header gives shape {'x'.join(map(str, shape))} ({size_text(size)}), "
            f"over the limit of {size_text(MAX_DATASET_BYTES)}; is it the right file?"
        )
    return size


# -- what the validator asks -------------------------------------------------------------

#: Sample shape of each set whose shape is known without reading it (npz: unknown).
KNOWN_SHAPES: dict[str, tuple[int, ...]] = {
    "digits": DIGITS_SHAPE,
    "idx": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
}


def expected_shape(spec: DatasetSpec) -> tuple[int, ...] | None:
    """The sample shape ``spec`` most likely gives, to check a model against when the
    data cannot be read (MNIST's 28x28 for ``idx``; ``None`` for ``npz``)."""
    if spec.name in ("synthetic", "images"):
        return (spec.depth, spec.side, spec.side)
    return KNOWN_SHAPES.get(spec.name)


def use_problems(
    spec: DatasetSpec, data: Dataset, loss: str | None = None
) -> list[tuple[str, str]]:
    """What training cannot do with ``data`` as ``spec`` asks (empty: nothing).

    ``loss`` is ``training.loss``: regression targets need ``mse``.
    """
    problems = []
    if data.task == "regression" and loss is not None and loss != "mse":
        problems.append(
            (
                "dataset.task",
                f"y holds float targets (regression), but training.loss is {loss}, a "
                "classification loss; use loss: mse, or give integer class labels in y "
                "(task: classification if the floats are whole numbers)",
            )
        )
    if spec.augment is not None and len(data.sample_shape) != 3:
        shape = "x".join(map(str, data.sample_shape))
        problems.append(
            (
                "dataset.augment",
                f"crop and flip need images (channels x height x width), but samples are "
                f"{shape}; remove 'augment' or reshape x to (N, channels, height, width)",
            )
        )
    if spec.validation_fraction > 0 and not len(data.y_val):
        problems.append(
            ("dataset.validation_fraction", "leaves no validation sample; raise it or remove it")
        )
    return problems
