"""``dataset: {name: text}``: a UTF-8 text file as character sequences for recurrent models.

Character modelling as in aihwkit's example 22 (an LSTM on War and Peace): the file is
cut into consecutive, non-overlapping windows of ``sequence_length`` characters; each
sample is its window one-hot encoded, ``(sequence_length, vocabulary)`` float32 (time x
features, what the zoo's ``lstm`` reads), and its label is the index of the character
right after the window (classification over the vocabulary). The vocabulary is
``dataset.vocabulary`` in its order, or the file's own characters sorted.

A file that cannot be read, is not UTF-8, is empty, holds NUL bytes or is shorter than
one window and its next character is refused at ``dataset.path``; a character the
given vocabulary lacks, at ``dataset.vocabulary``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aif.aims.analog.data_files import FileSet
from aif.errors import ExperimentError

_PATH = "dataset.path"


def _fault(path: Path, where: str, message: str) -> ExperimentError:
    return ExperimentError(f"dataset 'text' in {str(path)!r} cannot be read", [(where, message)])


def read_text(path: Path, sequence_length: int, vocabulary: str | None = None) -> FileSet:
    """Windows of ``sequence_length`` characters one-hot, labels the next character."""
    if not path.is_file():
        raise _fault(path, _PATH, f"{str(path)!r} is not a file; give the UTF-8 text file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fault(path, _PATH, f"cannot be read ({exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fault(
            path,
            _PATH,
            f"is not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 1]!r}); "
            "save it as UTF-8 (e.g. iconv -t UTF-8) or give a text file",
        ) from exc
    if not text:
        raise _fault(path, _PATH, "is empty; give a text file with at least one sequence")
    if "\x00" in text:
        raise _fault(path, _PATH, "holds NUL bytes, so it is not text; give a UTF-8 text file")
    need = sequence_length + 1
    if len(text) < need:
        raise _fault(
            path,
            _PATH,
            f"holds {len(text)} characters, fewer than one sequence of {sequence_length} and "
            f"its next character ({need}); give a longer text or a smaller sequence_length",
        )
    chars = _vocabulary(path, text, vocabulary)
    index = {c: i for i, c in enumerate(chars)}
    codes = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    windows = (len(codes) - 1) // sequence_length
    starts = np.arange(windows) * sequence_length
    tokens = codes[starts[:, None] + np.arange(sequence_length)]
    x = np.eye(len(chars), dtype=np.float32)[tokens]
    y = codes[starts + sequence_length]
    return FileSet(x, y, None, None, classes=len(chars), scale=1.0)


def _vocabulary(path: Path, text: str, vocabulary: str | None) -> str:
    if vocabulary is None:
        chars = "".join(sorted(set(text)))
        if len(chars) < 2:
            raise _fault(
                path, _PATH, f"holds only {chars!r}; give a text of at least two characters"
            )
        return chars
    twice = sorted({c for c in vocabulary if vocabulary.count(c) > 1})
    if twice:
        raise _fault(
            path, "dataset.vocabulary", f"lists {''.join(twice)!r} more than once; list each once"
        )
    missing = sorted(set(text) - set(vocabulary))
    if missing:
        shown = "".join(missing[:40]) + ("..." if len(missing) > 40 else "")
        raise _fault(
            path,
            "dataset.vocabulary",
            f"lacks {len(missing)} character(s) of the file: {shown!r}; add them or leave "
            "vocabulary out to use the file's own",
        )
    return vocabulary
