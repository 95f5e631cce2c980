"""Data sets in files the user already has: CIFAR binaries, ``.npz`` arrays, image folders.

Each reader checks what it reads and raises :class:`ExperimentError` at ``dataset.path``
naming the file and the fix (a truncated CIFAR file, an ``.npz`` without ``x`` and ``y``,
an image Pillow cannot decode), so a bad file is refused by the validator instead of
failing inside training. Nothing is unpickled: CIFAR is read in its *binary* version
(the Python version is a pickle) and ``.npz`` files are opened with
``allow_pickle=False``, which refuses object arrays.

File layouts::

    cifar10/   data_batch_1.bin ... data_batch_5.bin, test_batch.bin
               each record: 1 label byte, then 3x32x32 bytes (R, G, B planes)
    cifar100/  train.bin, test.bin
               each record: 1 coarse label byte, 1 fine label byte, then 3x32x32 bytes
    x.npz      x, y  or  x_train, y_train, x_test, y_test
    images/    <class>/<image>...  or  train/<class>/..., test/<class>/...

Either CIFAR folder may also be the one above the archive's own folder
(``cifar-10-batches-bin``, ``cifar-100-binary``). numpy is imported at the top (as in
``datasets``); Pillow only when an image folder is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aif.aims.analog.spec_values import MAX_DATASET_BYTES
from aif.errors import ExperimentError, InputError
from aif.inputs.files import read_bounded, size_text

#: Largest data file read whole (IDX, CIFAR batches, text).
MAX_DATA_FILE_BYTES = 2 << 30

#: A CIFAR image: 3 planes (R, G, B) of 32x32 bytes.
CIFAR_SHAPE = (3, 32, 32)
_CIFAR_PIXELS = 3 * 32 * 32
#: The folder each CIFAR archive unpacks to, looked into when ``path`` is its parent.
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-bin", "cifar100": "cifar-100-binary"}
#: File suffixes an image folder's images may have (others are ignored).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
_PATH = "dataset.path"


@dataclass(frozen=True)
class FileSet:
    """What a file set holds before splitting: ``x_test`` ``None`` when it has no test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    #: Number of classes; 0 for regression targets.
    classes: int
    #: What ``normalize: unit`` divides by (255 for bytes).
    scale: float
    task: str = "classification"
    class_names: tuple[str, ...] = ()


def _fault(name: str, where: Path, message: str) -> ExperimentError:
    return ExperimentError(f"dataset {name!r} in {str(where)!r} cannot be read", [(_PATH, message)])


def _folder(name: str, folder: Path, holds: str) -> Path:
    if not folder.is_dir():
        raise _fault(
            name, folder, f"{str(folder)!r} is not a folder; give the folder holding {holds}"
        )
    return folder


# -- CIFAR ------------------------------------------------------------------------------


def read_cifar(name: str, folder: Path, label: str = "fine") -> FileSet:
    """CIFAR-10 (``name`` ``cifar10``) or CIFAR-100 in the binary format; ``label``:
    CIFAR-100's ``fine`` (100) or ``coarse`` (20) classes."""
    if name == "cifar10":
        train_glob, test_name, label_bytes = "data_batch_*.bin", "test_batch.bin", 1
        holds = "data_batch_1.bin ... data_batch_5.bin and test_batch.bin (CIFAR-10 binary version)"
    else:
        train_glob, test_name, label_bytes = "train.bin", "test.bin", 2
        holds = "train.bin and test.bin (CIFAR-100 binary version)"
    _folder(name, folder, holds)
    inner = folder / _CIFAR_FOLDERS[name]
    if not any(folder.glob(train_glob)) and inner.is_dir():
        folder = inner
    train_files = sorted(folder.glob(train_glob))
    test_file = folder / test_name
    missing = [] if train_files else [train_glob]
    missing += [] if test_file.is_file() else [test_name]
    if missing:
        present = sorted(p.name for p in folder.iterdir())[:20]
        raise _fault(
            name,
            folder,
            f"{' and '.join(missing)} missing; the folder must hold {holds}, it holds: "
            f"{', '.join(present) or 'nothing'}",
        )
    classes = 10 if name == "cifar10" else (100 if label == "fine" else 20)
    column = 0 if name == "cifar10" or label == "coarse" else 1
    problems: list[tuple[str, str]] = []
    parts: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
    for path in [*train_files, test_file]:
        try:
            parts[path] = _cifar_file(path, name, label_bytes, column, classes)
        except _FileFault as fault:
            problems.append((_PATH, str(fault)))
    if problems:
        raise ExperimentError(f"dataset {name!r} in {str(folder)!r} cannot be read", problems)
    x_test, y_test = parts.pop(test_file)
    return FileSet(
        x_train=np.concatenate([x for x, _ in parts.values()]),
        y_train=np.concatenate([y for _, y in parts.values()]),
        x_test=x_test,
        y_test=y_test,
        classes=classes,
        scale=255.0,
    )


class _FileFault(Exception):
    """One file is malformed; the message names it."""


def _cifar_file(
    path: Path, name: str, label_bytes: int, column: int, classes: int
) -> tuple[np.ndarray, np.ndarray]:
    record = label_bytes + _CIFAR_PIXELS
    try:
        raw = read_bounded(path, f"{name} file", MAX_DATA_FILE_BYTES)
    except InputError as exc:
        raise _FileFault(str(exc)) from exc
    whole, over = divmod(len(raw), record)
    if over or not whole:
        got = f"{whole} records and {over} bytes over" if whole else f"only {len(raw)} bytes"
        raise _FileFault(
            f"{path}: {len(raw)} bytes is not a whole number of {record}-byte {name} records "
            f"({got}): the file is truncated or not a {name} binary file; copy it again"
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(whole, record)
    labels = rows[:, column].astype(np.int64)
    if labels.max() >= classes:
        bad = int(np.argmax(labels >= classes))
        raise _FileFault(
            f"{path}: record {bad} has label {int(labels[bad])}, but {name} has {classes} "
            "classes; is it a file of the other CIFAR set?"
        )
    return rows[:, label_bytes:].reshape(whole, *CIFAR_SHAPE), labels


# -- .npz -------------------------------------------------------------------------------

_NPZ_KEYS = (("x", "y"), ("x_train", "y_train", "x_test", "y_test"))


def read_npz(path: Path, task: str | None) -> FileSet:
    """Arrays ``x``/``y`` (split later) or ``x_train``/``y_train``/``x_test``/``y_test``.

    ``task`` ``None`` is inferred: integer (or bool) ``y`` is classification, float
    ``y`` regression.
    """
    import zipfile

    if not path.is_file():
        raise _fault("npz", path, f"{str(path)!r} is not a file; give the .npz file to read")
    try:
        # opened here: numpy leaves its own handle open when the zip is broken
        with path.open("rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise _fault("npz", path, "is a single .npy array, not an .npz archive of x and y")
            keys = set(archive.files)
            wanted = next((k for k in _NPZ_KEYS if set(k) <= keys), None)
            if wanted is None:
                raise _fault(
                    "npz",
                    path,
                    f"has arrays {', '.join(sorted(keys)) or 'none'}; it needs 'x' and 'y', "
                    "or 'x_train', 'y_train', 'x_test' and 'y_test'",
                )
            _npz_sizes(archive, wanted, path)
            arrays = {key: archive[key] for key in wanted}
    except ValueError as exc:
        text = str(exc)
        if "allow_pickle" in text or "Object arrays" in text:
            text = "holds object arrays (or pickled data), which are refused; save numeric arrays"
        raise _fault("npz", path, f"cannot be read: {text}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _fault("npz", path, f"cannot be read, is it an .npz file? ({exc})") from exc
    return array_set(arrays, task, _PATH, f"dataset 'npz' in {str(path)!r} cannot be read")


def _npz_sizes(archive: Any, keys: tuple[str, ...], path: Path) -> None:
    """Refuse arrays whose headers declare more than ``MAX_DATASET_BYTES`` together,
    before numpy allocates them (a few bytes of header can declare petabytes)."""
    from numpy.lib import format as npy

    names = set(archive.zip.namelist())
    total = 0
    for key in keys:
        with archive.zip.open(f"{key}.npy" if f"{key}.npy" in names else key) as member:
            version = npy.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(member)
            else:
                shape, _, dtype = npy.read_array_header_2_0(member)
        size = math.prod(shape) * dtype.itemsize
        total += size
        if total > MAX_DATASET_BYTES:
            raise _fault(
                "npz",
                path,
                f"array {key!r} declares shape {'x'.join(map(str, shape)) or '()'} of {dtype} "
                f"({size_text(size)}); the arrays may hold {size_text(MAX_DATASET_BYTES)} "
                "together",
            )


def array_set(arrays: dict[str, np.ndarray], task: str | None, where: str, title: str) -> FileSet:
    """``x``/``y`` or ``x_train``/``y_train``/``x_test``/``y_test`` checked and typed;
    problems at ``where``, raised under ``title`` (``task`` ``None``: inferred)."""
    problems = _npz_problems(arrays, where)
    if problems:
        raise ExperimentError(title, problems)
    y_all = [arrays[k] for k in arrays if k.startswith("y")]
    integral = all(y.dtype.kind in "biu" for y in y_all)
    task = task or ("classification" if integral else "regression")
    if task == "classification":
        for y in y_all:
            if y.ndim != 1:
                problems.append((where, f"class labels must be one per sample, y is {y.shape}"))
            elif not integral and not np.array_equal(y, np.round(y)):
                problems.append(
                    ("dataset.task", "is classification but y holds fractions; give integer labels")
                )
            elif y.size and y.min() < 0:
                problems.append((where, f"class labels start at 0, y holds {int(y.min())}"))
        if problems:
            raise ExperimentError(title, problems)
        y_all = [y.astype(np.int64) for y in y_all]
        classes = int(max(int(y.max(initial=0)) for y in y_all)) + 1
    else:
        y_all = [y.astype(np.float32) for y in y_all]
        classes = 0
    x_all = [arrays[k] for k in arrays if k.startswith("x")]
    scale = 255.0 if all(x.dtype == np.uint8 for x in x_all) else 1.0
    return FileSet(
        x_train=x_all[0],
        y_train=y_all[0],
        x_test=x_all[1] if len(x_all) > 1 else None,
        y_test=y_all[1] if len(y_all) > 1 else None,
        classes=classes,
        scale=scale,
        task=task,
    )


def _npz_problems(arrays: dict[str, np.ndarray], where: str = _PATH) -> list[tuple[str, str]]:
    problems = []
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":
            problems.append((where, f"array {key!r} is {array.dtype}; give numbers"))
        elif array.ndim == 0 or len(array) == 0:
            problems.append((where, f"array {key!r} holds no samples"))
        elif key.startswith("x") and array.ndim < 2:
            problems.append(
                (where, f"array {key!r} must be (samples, features...), not {array.shape}")
            )
    if problems:
        return problems
    for split in ("", "_train", "_test"):
        x, y = arrays.get(f"x{split}"), arrays.get(f"y{split}")
        if x is not None and y is not None and len(x) != len(y):
            problems.append(
                (
                    where,
                    f"'x{split}' has {len(x)} samples but 'y{split}' has {len(y)}; "
                    "they must have one label per sample",
                )
            )
    if "x_test" in arrays and arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        train, test = arrays["x_train"].shape[1:], arrays["x_test"].shape[1:]
        problems.append((where, f"x_train samples are {train} but x_test samples are {test}"))
    return problems


# -- image folders ------------------------------------------------------------------------


def read_images(folder: Path, side: int, channels: int) -> FileSet:
    """One sub-folder per class (or ``train/`` and ``test/`` each holding them), every
    image decoded by Pillow, converted to RGB or grayscale, resized to ``side`` x ``side``."""
    _folder("images", folder, "one sub-folder of images per class")
    splits = {"train": folder / "train", "test": folder / "test"}
    if all(p.is_dir() for p in splits.values()):
        train = _class_files(splits["train"])
        test: dict[str, list[Path]] | None = _class_files(splits["test"])
    else:
        train, test = _class_files(folder), None
    names = tuple(sorted(train))
    problems: list[tuple[str, str]] = []
    if test is not None and set(test) - set(train):
        extra = ", ".join(sorted(set(test) - set(train)))
        problems.append((_PATH, f"test/ has classes train/ does not: {extra}"))
    x_train, y_train = _decode(train, names, side, channels, problems)
    x_test, y_test = (
        (None, None) if test is None else _decode(test, names, side, channels, problems)
    )
    if problems:
        raise ExperimentError(f"dataset 'images' in {str(folder)!r} cannot be read", problems)
    return FileSet(x_train, y_train, x_test, y_test, len(names), 255.0, class_names=names)


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes = {
        d.name: sorted(
            p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }
    if len(classes) < 2:
        found = f"only {next(iter(classes))!r}" if classes else "no sub-folders"
        raise _fault(
            "images",
            folder,
            f"holds {found}; give a folder with one sub-folder of images per class "
            "(at least two), e.g. cats/, dogs/",
        )
    empty = [name for name, files in classes.items() if not files]
    if empty:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise _fault(
            "images", folder, f"class folder(s) {', '.join(empty)} hold no images ({suffixes})"
        )
    return classes


def _decode(
    files: dict[str, list[Path]],
    names: tuple[str, ...],
    side: int,
    channels: int,
    problems: list[tuple[str, str]],
) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    images, labels, bad = [], [], []
    for name, paths in files.items():
        for path in paths:
            try:
                with Image.open(path) as image:
                    pixels = image.convert(mode).resize((side, side), Image.Resampling.BILINEAR)
                    array = np.asarray(pixels, dtype=np.uint8)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                bad.append(f"{path} ({type(exc).__name__}: {exc})")
                continue
            images.append(array.reshape(side, side, channels).transpose(2, 0, 1))
            labels.append(names.index(name))
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        problems.append(
            (_PATH, f"Pillow cannot decode {'; '.join(bad[:5])}{more}; remove or replace them")
        )
    x = np.stack(images) if images else np.zeros((0, channels, side, side), np.uint8)
    return x, np.asarray(labels, dtype=np.int64)
