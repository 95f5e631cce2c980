"""LocalStorage: the embedded default storage, one file per key under a directory.

Why the write path is shaped the way it is: a process may be killed at any moment
(SIGKILL, OOM, power loss), and a checkpoint that is half old and half new is worse
than either. So every write goes to a temporary file in the key's own directory
(same file system, so the rename is atomic), is flushed and fsync'ed, then renamed
over the key with ``os.replace``, and finally the directory is fsync'ed so the rename
itself survives a crash. Temporary files are named ``~aif-<random>.tmp``: ``~`` is not
a key character, so they can never collide with a key and ``keys()`` never lists them.

Layout::

    <state_dir>/global/<key>           global_storage(state_dir)
    <state_dir>/aims/<aim>/<key>       aim_storage(state_dir, aim)
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from aif.errors import KeyNotFound, StorageError
from aif.storage.base import (
    Storage,
    segment_problem,
    validate_key,
    validate_prefix,
    validate_segment,
)

_TMP_PREFIX = "~aif-"
_TMP_SUFFIX = ".tmp"
_COPY_CHUNK = 1 << 20

_HINTS = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some space within your disk quota",
    errno.EACCES: "check the permissions of the storage directory",
    errno.EPERM: "check the permissions of the storage directory",
    errno.EROFS: "the file system is read-only; point the state directory somewhere writable",
    errno.EEXIST: "a file stands where a directory is needed (is a leading part of the key "
    "stored as an object? delete it or choose another key)",
    errno.ENOTDIR: "a leading part of the key is already stored as an object; "
    "delete that object or choose another key",
    errno.EISDIR: "the key names a directory holding other keys; choose another key",
    errno.ENAMETOOLONG: "use a shorter key or a shorter state directory path",
}


def _os_error(action: str, path: Path | str, exc: OSError) -> StorageError:
    """A StorageError naming the path, the OS reason and, where known, the fix."""
    reason = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0)
    return StorageError(f"cannot {action} {path}: {reason}" + (f"; {hint}" if hint else ""))


def _fsync_dir(directory: Path) -> None:
    """Make a rename or file creation in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage(Storage):
    """Objects as files under ``root``; the directory is created on the first write."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self.root.joinpath(*key.split("/"))

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and its missing parents, fsync'ing each new entry."""
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for new_dir in reversed(missing):
            try:
                new_dir.mkdir(exist_ok=True)
                _fsync_dir(new_dir.parent)
            except OSError as exc:
                raise _os_error("create directory", new_dir, exc) from exc

    @contextlib.contextmanager
    def _temp_file(self, final: Path) -> Iterator[tuple[BinaryIO, Path]]:
        """A fresh temp file beside ``final``; removed again unless it was renamed away."""
        self._make_dirs(final.parent)
        while True:
            tmp = final.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}{_TMP_SUFFIX}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise _os_error("create a temporary file in", final.parent, exc) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle, tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _replace(self, tmp: Path, final: Path) -> None:
        try:
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            raise _os_error("store", final, exc) from exc

    # -- Storage ----------------------------------------------------------------------

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key`` atomically (temp file, fsync, rename, dir fsync)."""
        final = self._path(key)
        with self._temp_file(final) as (handle, tmp):
            try:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as exc:
                raise _os_error("write", final, exc) from exc
            self._replace(tmp, final)

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key`` (KeyNotFound when there are none)."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise _os_error("read", path, exc) from exc

    def exists(self, key: str) -> bool:
        """True when an object (not a directory of keys) is stored under ``key``."""
        return self._path(key).is_file()

    def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Remove ``key``. Empty directories stay: removing them would race with writers."""
        path = self._path(key)
        if path.is_dir():
            if missing_ok:
                return
            raise self._not_found(key)
        try:
            path.unlink()
            _fsync_dir(path.parent)
        except (FileNotFoundError, NotADirectoryError) as exc:
            if not missing_ok:
                raise self._not_found(key) from exc
        except OSError as exc:
            raise _os_error("delete", path, exc) from exc

    def keys(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix``; temporary files are never listed.

        Only the directory named by the whole segments of ``prefix`` is walked, so
        listing one namespace does not read the rest of the store.
        """
        validate_prefix(prefix)
        head = prefix.rpartition("/")[0]
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return []
        found: list[str] = []

        def raise_walk_error(exc: OSError) -> None:
            raise _os_error("list", exc.filename or start, exc) from exc

        for dirpath, dirnames, filenames in os.walk(start, onerror=raise_walk_error):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel_dir == "." else rel_dir + "/"
            # Skip directories that cannot hold keys (and cannot be named by one).
            dirnames[:] = [d for d in dirnames if segment_problem(d) is None]
            for name in filenames:
                key = base + name
                if segment_problem(name) is None and key.startswith(prefix):
                    found.append(key)
        found.sort()
        return found

    def path_for(self, key: str) -> Path:
        """Where ``key`` lives, parents created; for libraries that write files themselves.

        Writing this path directly is not atomic (a crash leaves a partial file under
        ``key``). For atomic writes, write ``path_for(key + ".tmp")`` and then call
        ``commit(key + ".tmp", key)``.
        """
        path = self._path(key)
        self._make_dirs(path.parent)
        return path

    def commit(self, tmp_key: str, key: str) -> None:
        """fsync the file a library wrote under ``tmp_key`` and rename it to ``key``."""
        tmp = self._path(tmp_key)
        final = self._path(key)
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise self._not_found(tmp_key) from exc
        except OSError as exc:
            raise _os_error("open", tmp, exc) from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise _os_error("fsync", tmp, exc) from exc
        finally:
            os.close(fd)
        self._make_dirs(final.parent)
        self._replace(tmp, final)
        if tmp.parent != final.parent:
            try:
                _fsync_dir(tmp.parent)
            except OSError as exc:
                raise _os_error("fsync", tmp.parent, exc) from exc

    def put_file(self, key: str, src_path: Path) -> None:
        """Copy the file ``src_path`` into ``key``, streamed in 1 MiB chunks, atomically."""
        final = self._path(key)
        try:
            source = open(src_path, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            raise _os_error("read source file", src_path, exc) from exc
        with source, self._temp_file(final) as (handle, tmp):
            try:
                shutil.copyfileobj(source, handle, _COPY_CHUNK)
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as exc:
                raise _os_error(f"copy {src_path} to", final, exc) from exc
            self._replace(tmp, final)

    def open_read(self, key: str) -> BinaryIO:
        """A binary file object on ``key`` (the caller closes it; use ``with``)."""
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise _os_error("open", path, exc) from exc

    def namespace(self, prefix: str) -> LocalStorage:
        """A LocalStorage rooted at ``root/prefix`` (a trailing '/' is allowed)."""
        trimmed = prefix[:-1] if prefix.endswith("/") else prefix
        validate_key(trimmed, what="namespace prefix")
        return LocalStorage(self.root.joinpath(*trimmed.split("/")))

    def _not_found(self, key: str) -> KeyNotFound:
        return KeyNotFound(f"no object under key {key!r} in storage {self.root}")


def global_storage(state_dir: Path) -> LocalStorage:
    """Global Storage: shared by every AIM of the AIF, at ``state_dir/global``."""
    return LocalStorage(Path(state_dir) / "global")


def aim_storage(state_dir: Path, aim: str) -> LocalStorage:
    """AIM Storage: private to AIM ``aim``, at ``state_dir/aims/<aim>``."""
    validate_segment(aim, what="AIM name for AIM storage")
    return LocalStorage(Path(state_dir) / "aims" / aim)
