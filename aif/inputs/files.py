"""Reading a user's file without trusting it: only regular files, only up to a limit.

A path may name ``/dev/zero``, a FIFO nobody writes to, or a file of many gigabytes. The
readers here look before they read: :func:`file_problem` says why a path is not a
regular file of a sensible size (without opening it), and :func:`read_bounded` opens it
without blocking, checks the open file again and reads at most ``limit`` bytes, so a
bad path costs a ``stat`` and a clear :class:`~aif.errors.InputError`, never a hang or
the machine's memory.

Shared by the workflow loader, experiment files (:mod:`aif.inputs.safe_yaml`) and
the data set readers; it lives here, below ``aif.workflow``, so all of them may import it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aif.errors import InputError

#: Largest workflow or experiment file read (YAML is parsed in Python: ~40 µs a node).
MAX_TEXT_BYTES = 1 << 20


def size_text(size: int) -> str:
    """``1048576`` -> ``1 MiB``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:g} {unit}" if unit != "bytes" else f"{size} bytes"
        value /= 1024
    raise AssertionError("unreachable")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def file_problem(path: Path, what: str, limit: int | None = None) -> str | None:
    """Why ``path`` cannot be read as ``what`` (``None``: it is a regular file within
    ``limit`` bytes). Only ``stat`` is called: a device or a pipe is never opened."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"{what} {str(path)!r} does not exist"
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot read {what} {str(path)!r}: {reason}"
    if not stat.S_ISREG(info.st_mode):
        return f"{what} {str(path)!r} is {_kind(info.st_mode)}; give a regular file"
    if limit is not None and info.st_size > limit:
        return (
            f"{what} {str(path)!r} is {size_text(info.st_size)}, over the limit of "
            f"{size_text(limit)}; is it the right file?"
        )
    return None


def read_bounded(path: Path, what: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (raises
    ``InputError`` naming ``what`` and the fix otherwise)."""
    problem = file_problem(path, what, limit)
    if problem is not None:
        raise InputError(problem)
    try:
        # O_NONBLOCK: should the path have become a pipe since the stat, open does not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InputError(f"{what} {str(path)!r} is not a regular file; give a regular file")
        # Memory follows the size the file has, not the limit (which may be GiBs for a
        # data set); one byte more shows a file that grew since the stat, read on to the
        # limit then.
        first = min(os.fstat(handle.fileno()).st_size, limit) + 1
        data = handle.read(first)
        if len(data) == first <= limit:
            data += handle.read(limit + 1 - first)
    if len(data) > limit:
        raise InputError(f"{what} {str(path)!r} is over the limit of {size_text(limit)}")
    return data


def read_text_file(path: Path, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """:func:`read_bounded`, decoded as UTF-8 (an ``InputError`` says where it is not)."""
    data = read_bounded(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{what} {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}, "
            f"line {line}); save it as UTF-8"
        ) from exc
