"""Deterministic tar.gz building and safe unpacking of tar.gz and wheel (zip) archives.

Unpacking assumes hostile input. Every member must be a regular file or a directory
under a clean relative name (no absolute path, ``..``, ``.``, empty part, backslash or
control character), appear once, and stay under the per-file limit; the archive stays
under the member count, the total unpacked size and the download size. The bytes
actually written are counted (a header may lie), and for tar the decompressed stream is
bounded too (a gzip bomb made of headers). Links, devices and FIFOs are refused, never
skipped, so a refused archive is reported, not half-used.

Everything is written into a fresh directory that nobody else writes to (see
:func:`staged`): with no links allowed in it, no path can lead outside it, and when
anything is refused the directory is removed, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aif.errors import StoreError, UnsafeArchive

MiB = 1024 * 1024
_CHUNK = 256 * 1024
#: Allowance per tar member for its header, PAX header and padding.
_TAR_OVERHEAD = 8 * 1024


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a package may be; a Store client and installer take them."""

    max_download: int = 256 * MiB
    max_total: int = 512 * MiB
    max_file: int = 256 * MiB
    max_members: int = 10_000
    #: Zip members over 1 MiB may not unpack to more than this many times their size.
    max_ratio: int = 200


DEFAULT_LIMITS = Limits()


def check_member_name(name: str, where: str) -> tuple[str, ...]:
    """The parts of a member name, or UnsafeArchive when it is not a clean relative path."""
    clean = name[:-1] if name.endswith("/") else name  # zip directories end with "/"
    parts = tuple(clean.split("/"))
    bad = (
        not clean
        or clean.startswith("/")
        or len(clean) > 1024
        or any(not p or p in (".", "..") or len(p) > 255 for p in parts)
        or any(ord(c) < 32 or c in "\\\x7f" for c in clean)
        or (len(parts[0]) >= 2 and parts[0][1] == ":")  # C:..., a drive
    )
    if bad:
        raise UnsafeArchive(
            f"{where}: member {name!r} is not a clean relative path (absolute, '..', '.', "
            "empty parts, backslashes or control characters); refusing the archive"
        )
    return parts


def _too_big(where: str, what: str, size: int, limit: int) -> UnsafeArchive:
    return UnsafeArchive(
        f"{where}: {what} is {size} bytes, over the limit of {limit} bytes; refusing the "
        "archive (raise the limit only for a publisher you trust)"
    )


class _Budget:
    """Counts members and written bytes against the limits, naming the first excess."""

    def __init__(self, limits: Limits, where: str) -> None:
        self.limits = limits
        self.where = where
        self.members = 0
        self.total = 0
        self.seen: set[tuple[str, ...]] = set()

    def member(self, name: str) -> tuple[str, ...]:
        self.members += 1
        if self.members > self.limits.max_members:
            raise UnsafeArchive(
                f"{self.where}: more than {self.limits.max_members} members; refusing the archive"
            )
        parts = check_member_name(name, self.where)
        if parts in self.seen:
            raise UnsafeArchive(f"{self.where}: member {name!r} appears twice; refusing it")
        self.seen.add(parts)
        return parts

    def declared(self, name: str, size: int) -> None:
        if size > self.limits.max_file:
            raise _too_big(self.where, f"member {name!r}", size, self.limits.max_file)

    def wrote(self, name: str, written: int, n: int) -> None:
        self.total += n
        if written > self.limits.max_file:
            raise _too_big(self.where, f"member {name!r}", written, self.limits.max_file)
        if self.total > self.limits.max_total:
            raise _too_big(self.where, "the unpacked content", self.total, self.limits.max_total)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _write(
    dest: Path,
    parts: tuple[str, ...],
    name: str,
    src: _Readable,
    budget: _Budget,
    executable: bool = False,
    compressed: int | None = None,
) -> int:
    """Copy ``src`` to a new file, counting every byte; ``compressed``: a zip member's size."""
    limits = budget.limits
    cap = None if compressed is None else max(MiB, limits.max_ratio * max(compressed, 1))
    path = dest.joinpath(*parts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise UnsafeArchive(f"{budget.where}: cannot place member {name!r}: {exc}") from exc
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            budget.wrote(name, written, len(chunk))
            if cap is not None and written > cap:
                raise UnsafeArchive(
                    f"{budget.where}: member {name!r} unpacks to over {written} bytes out of "
                    f"{compressed} (over {limits.max_ratio}x): a zip bomb; refusing it"
                )
            out.write(chunk)
    if executable:
        path.chmod(0o755)
    return written


def _mkdir(dest: Path, parts: tuple[str, ...], name: str, where: str) -> None:
    try:
        dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnsafeArchive(f"{where}: cannot place directory {name!r}: {exc}") from exc


class _BoundedStream(io.RawIOBase):
    """A read-only stream that raises once more than ``limit`` bytes came out of ``inner``."""

    def __init__(self, inner: io.BufferedIOBase, limit: int, where: str) -> None:
        self.inner = inner
        self.limit = limit
        self.where = where
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise _too_big(self.where, "the decompressed tar stream", self.count, self.limit)
        buffer[: len(data)] = data
        return len(data)


def extract_tar(data: bytes, dest: Path, limits: Limits = DEFAULT_LIMITS, *, where: str) -> int:
    """Unpack tar.gz ``data`` into the empty directory ``dest``; returns the bytes written."""
    if len(data) > limits.max_download:
        raise _too_big(where, "the archive", len(data), limits.max_download)
    budget = _Budget(limits, where)
    bound = limits.max_total + limits.max_members * _TAR_OVERHEAD + 64 * 1024
    raw = _BoundedStream(gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb"), bound, where)
    stream = io.BufferedReader(raw, _CHUNK)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                parts = budget.member(member.name)
                if member.isdir():
                    _mkdir(dest, parts, member.name, where)
                    continue
                if not member.isreg():
                    kind = (
                        "a symbolic link" if member.issym() else
                        "a hard link" if member.islnk() else
                        "a device or FIFO"
                    )  # fmt: skip
                    raise UnsafeArchive(
                        f"{where}: member {member.name!r} is {kind}; packages may hold only "
                        "regular files and directories; refusing the archive"
                    )
                budget.declared(member.name, member.size)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isreg() members always have data
                    raise UnsafeArchive(f"{where}: member {member.name!r} has no data")
                executable = bool(member.mode & 0o100)
                _write(dest, parts, member.name, source, budget, executable)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise StoreError(
            f"{where} is not a readable tar.gz archive ({exc}); fetch it again"
        ) from exc
    return budget.total


def extract_zip(data: bytes, dest: Path, limits: Limits = DEFAULT_LIMITS, *, where: str) -> int:
    """Unpack zip (wheel) ``data`` into the empty directory ``dest``; returns the bytes written."""
    if len(data) > limits.max_download:
        raise _too_big(where, "the archive", len(data), limits.max_download)
    budget = _Budget(limits, where)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > limits.max_members:
                raise UnsafeArchive(
                    f"{where}: {len(infos)} members, more than {limits.max_members}; refusing it"
                )
            declared = 0
            for info in infos:  # refuse on what the directory says before writing a byte
                budget.member(info.filename)
                budget.declared(info.filename, info.file_size)
                declared += info.file_size
                _check_zip_member(info, where)
            if declared > limits.max_total:
                raise _too_big(where, "the declared unpacked content", declared, limits.max_total)
            for info in infos:
                parts = check_member_name(info.filename, where)
                if info.is_dir():
                    _mkdir(dest, parts, info.filename, where)
                    continue
                with archive.open(info) as source:
                    mode = info.external_attr >> 16
                    executable = bool(mode & 0o100)
                    _write(
                        dest, parts, info.filename, source, budget, executable, info.compress_size
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise StoreError(
            f"{where} is not a readable zip archive ({exc}); rebuild the wheel"
        ) from exc
    return budget.total


def _check_zip_member(info: zipfile.ZipInfo, where: str) -> None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"{where}: member {info.filename!r} is encrypted; refusing it")
    if kind == stat.S_IFLNK:
        raise UnsafeArchive(
            f"{where}: member {info.filename!r} is a symbolic link; wheels may hold only "
            "regular files and directories; refusing the archive"
        )
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchive(
            f"{where}: member {info.filename!r} is a device, FIFO or socket; refusing it"
        )


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A fresh directory beside ``target``, renamed to ``target`` if the block succeeds.

    On any exception the directory and everything in it is removed, and so are the
    parents of ``target`` this call created. The rename fails (OSError) when ``target``
    appeared meanwhile; callers decide what that means.
    """
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in created:  # deepest first; one that is not empty now stays
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def build_tar(files: dict[str, bytes | Path]) -> bytes:
    """A deterministic tar.gz of ``files`` (member name -> content or a file to read).

    Sorted members, mtime 0, uid/gid 0, no user or group names, mode 0644 (0755 for
    files executable at the source), gzip header without name or time: the same input
    gives the same bytes, hence the same digest.
    """
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(files):
            check_member_name(name, "package being built")
            content = files[name]
            executable = False
            if isinstance(content, Path):
                executable = bool(content.stat().st_mode & 0o100)
                content = content.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o755 if executable else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
