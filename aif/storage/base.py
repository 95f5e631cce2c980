"""The Storage interface (MPAI-AIF Global Storage and AIM Storage) and its key rules.

A storage maps keys to bytes. A key is a relative, ``/``-separated path such as
``checkpoints/epoch-3.pt``: every segment is 1 to 255 characters of
``[A-Za-z0-9._-]``, and ``.`` / ``..`` are refused. The rules are this strict so a
key means the same thing on every backend and can never name a file outside its
store (no traversal, no absolute paths, no hidden separators or control characters).

Writes are atomic: a reader sees the old object or the new one, never a half-written
file, even when the writer is killed mid-write. Libraries that insist on writing a
file themselves (``torch.save``) get a path from ``path_for``; to keep such writes
atomic, write to ``path_for(key + ".tmp")`` and then call ``commit(key + ".tmp", key)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from aif.errors import StorageError

#: Longest segment allowed (the usual NAME_MAX of a file system).
MAX_SEGMENT = 255

_BAD_CHAR = re.compile(r"[^A-Za-z0-9._-]")

#: The rule, as error messages spell it.
KEY_RULE = (
    "keys are '/'-separated segments of letters, digits, '.', '_' and '-' "
    f"(1 to {MAX_SEGMENT} characters each, not '.' or '..'), e.g. 'checkpoints/epoch-3.pt'"
)


def segment_problem(segment: str) -> str | None:
    """Why ``segment`` cannot be one segment of a key, or None when it can."""
    if segment == "":
        return "is empty"
    if segment in (".", ".."):
        return f"is {segment!r}, which would leave or alias its directory"
    if len(segment) > MAX_SEGMENT:
        return f"is {len(segment)} characters long; the limit is {MAX_SEGMENT}"
    bad = _BAD_CHAR.search(segment)
    if bad is not None:
        return f"has the character {bad.group()!r} at column {bad.start() + 1}"
    return None


def key_problem(key: str) -> str | None:
    """Why ``key`` breaks the key rules (naming the segment), or None when it is valid."""
    if key == "":
        return "a key must not be empty"
    if key.startswith("/"):
        return "it starts with '/'; keys are relative to the storage root, drop the leading '/'"
    for index, segment in enumerate(key.split("/"), start=1):
        problem = segment_problem(segment)
        if problem is not None:
            shown = "" if segment == "" else f" {_shorten(segment)!r}"
            return f"segment {index}{shown} {problem}"
    return None


def validate_key(key: str, *, what: str = "storage key") -> str:
    """Return ``key`` unchanged when it follows the key rules, else raise StorageError.

    The message names the key, the offending segment (1-based) and the rule.
    """
    if not isinstance(key, str):
        raise StorageError(f"invalid {what} {key!r}: a key is a str, got {type(key).__name__}")
    problem = key_problem(key)
    if problem is not None:
        raise StorageError(f"invalid {what} {_shorten(key, 300)!r}: {problem}; {KEY_RULE}")
    return key


def validate_segment(name: str, *, what: str = "name") -> str:
    """Return ``name`` when it is a single valid key segment (no ``/``), else raise."""
    if not isinstance(name, str):
        raise StorageError(f"invalid {what} {name!r}: expected a str, got {type(name).__name__}")
    if "/" in name:
        raise StorageError(
            f"invalid {what} {name!r}: it contains '/', but it must be a single segment; {KEY_RULE}"
        )
    problem = segment_problem(name)
    if problem is not None:
        raise StorageError(f"invalid {what} {_shorten(name, 300)!r}: it {problem}; {KEY_RULE}")
    return name


def validate_prefix(prefix: str) -> str:
    """Check a ``keys()`` prefix: whole segments before the last ``/``, key characters after.

    A prefix is matched as a plain string (``"ck"`` matches ``"ckpt/a"``), so its last
    part may be any partial segment; the whole segments before it follow the key rules.
    """
    if not isinstance(prefix, str):
        raise StorageError(f"invalid key prefix {prefix!r}: expected a str")
    head, _, tail = prefix.rpartition("/")
    problem = key_problem(head or prefix) if (head or prefix.startswith("/")) else None
    if problem is None and tail:
        bad = _BAD_CHAR.search(tail)
        if bad is not None:
            problem = f"{tail!r} has the character {bad.group()!r} at column {bad.start() + 1}"
    if problem is not None:
        raise StorageError(f"invalid key prefix {prefix!r}: {problem}; {KEY_RULE}")
    return prefix


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@runtime_checkable
class Storage(Protocol):
    """Key -> bytes store. Every method validates its key first (StorageError).

    Implementations: ``LocalStorage`` (files under a directory); a secure storage
    wraps one and encrypts the bytes.
    """

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key`` atomically, replacing any old object."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; KeyNotFound when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """True when an object is stored under ``key``."""
        ...

    def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Remove the object under ``key`` (KeyNotFound unless ``missing_ok``)."""
        ...

    def keys(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (a plain string prefix)."""
        ...

    def path_for(self, key: str) -> Path:
        """The file where ``key`` lives, parent directories created.

        For libraries that write files themselves. Writing there directly is NOT
        atomic: write ``path_for(key + ".tmp")`` and then ``commit(key + ".tmp", key)``.
        """
        ...

    def commit(self, tmp_key: str, key: str) -> None:
        """Make the file written at ``path_for(tmp_key)`` durable and move it to ``key``."""
        ...

    def put_file(self, key: str, src_path: Path) -> None:
        """Copy the file ``src_path`` into ``key`` (streamed, atomic)."""
        ...

    def open_read(self, key: str) -> BinaryIO:
        """A binary file object on the object under ``key``, for large blobs."""
        ...

    def namespace(self, prefix: str) -> Storage:
        """A storage whose keys all live under ``prefix/`` of this one."""
        ...
