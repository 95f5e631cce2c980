"""Large arrays between two processes on one host, through shared memory.

An ``ipc`` channel's writer copies an array of ``SHM_MIN_BYTES`` or more into a
segment, a file in ``/dev/shm``, and the message carries only a handle to it (see the
layout in ``aif.communication.codec``); the reader maps the segment and hands out an
array over that memory without copying it. Segments are files, not
``multiprocessing.shared_memory`` blocks, because their lifetime must be ours to
decide: in Python 3.11 every process that attaches such a block registers it with
the resource tracker, which unlinks it when that process exits, whoever still needs
it; files can be named by owner, swept by prefix, opened without following links
(``O_NOFOLLOW``) and checked (``fstat``) before they are mapped.

Names and ownership::

    /dev/shm/aif-R.live       the reader's marker: it holds a shared flock on it while open
    /dev/shm/aif-R-W-I        segment I of writer W to that reader (R, W: 16 hex digits)

``R`` is derived from the reader's normal-lane address, which both ends know, so a
reader accepts only handles that name its own segments: ``aif-<its R>-<16 hex>-<digits>``
and nothing else (no path, no other reader's segment). ``W`` is random per writer.

Each segment starts with a 64-byte header whose first 8 bytes hold the ticket of the
message in it (0 when free). A writer keeps up to ``SHM_SLOTS`` segments mapped and
reuses a free one (its pages are already in memory: fresh pages cost more than the
copy on a VM). It stamps the ticket before it sends; the reader checks the ticket,
wraps the data, and stores 0 when the last array over it is garbage collected. A
writer with no free segment sends the array inline, on the socket, so a reader that
keeps arrays never makes it wait or grow without bound.

Cleanup, whoever dies:

* the reader closes: it removes every ``aif-R-*`` segment and its marker (what was
  mapped stays valid for the arrays that hold it; the kernel frees it with them);
* a writer closes: it removes its free segments; its busy ones too when the reader is
  gone (its marker missing or unlocked: the kernel drops a dead process's flocks);
* a writer dies: the reader removes its segments when it closes;
* both die: ``sweep()`` removes every segment whose reader's marker is unlocked.

A handle from the wire is checked before anything is mapped (name, size, owner, kind
of file, ticket); a bad one raises ``MalformedMessage``, which the reader counts as a
dropped message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import re
import secrets
import stat
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from aif.communication.limits import SHM_MIN_BYTES, SHM_SLOTS
from aif.errors import MalformedMessage

__all__ = [
    "HEADER",
    "SHM_DIR",
    "ReaderSegments",
    "SegmentBatch",
    "WriterSegments",
    "available",
    "reader_token",
    "sweep",
]

SHM_DIR: Final = Path("/dev/shm")
#: Bytes before a segment's data: the ticket (uint64, little-endian), then padding.
HEADER: Final = 64
_PREFIX: Final = "aif-"
_MARKER: Final = ".live"
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)


def available() -> bool:
    """Whether this host has a ``/dev/shm`` this process may write."""
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK | os.X_OK)


def reader_token(address: str) -> str:
    """The reader's part of segment names: 16 hex digits derived from its normal lane."""
    return hashlib.blake2b(address.encode(), digest_size=8).hexdigest()


def _marker(token: str) -> Path:
    return SHM_DIR / f"{_PREFIX}{token}{_MARKER}"


def _reader_alive(token: str) -> bool:
    """Whether the reader behind ``token`` still holds its marker (a held flock)."""
    try:
        fd = os.open(_marker(token), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _remove(prefix: str) -> int:
    """Unlink every ``/dev/shm`` entry whose name starts with ``prefix``."""
    removed = 0
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(SHM_DIR / name)
                removed += 1
    return removed


def sweep() -> int:
    """Remove the segments and markers of readers that are gone; returns how many.

    Safe to run at any time: a live reader holds its marker's lock, and a segment
    whose reader is gone can never be read.
    """
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    tokens = {n[len(_PREFIX) : len(_PREFIX) + 16] for n in names if re.match(_ANY_NAME, n)}
    removed = 0
    for token in tokens:
        if not _reader_alive(token):
            removed += _remove(f"{_PREFIX}{token}")
    return removed


_ANY_NAME: Final = re.compile(r"aif-[0-9a-f]{16}(-[0-9a-f]{16}-[0-9]{1,20}|\.live)\Z")


# --------------------------------------------------------------------------- writer


class _Slot:
    __slots__ = ("capacity", "map", "name")

    def __init__(self, name: str, capacity: int, segment: mmap.mmap) -> None:
        self.name = name
        self.capacity = capacity
        self.map = segment

    @property
    def ticket(self) -> int:
        return int.from_bytes(self.map[:8], "little")

    def stamp(self, ticket: int) -> None:
        self.map[:8] = ticket.to_bytes(8, "little")


class SegmentBatch:
    """The segments one message fills; ``discard`` frees them when it is not sent."""

    __slots__ = ("nbytes", "owner", "slots")

    def __init__(self, owner: WriterSegments) -> None:
        self.owner = owner
        self.slots: list[_Slot] = []
        self.nbytes = 0

    def put(self, data: memoryview) -> tuple[str, int] | None:
        """Copy ``data`` into a free segment: its (name, ticket), or None to send it inline."""
        if data.nbytes < SHM_MIN_BYTES:
            return None
        slot = self.owner.slot_for(data.nbytes)
        if slot is None:
            return None
        ticket = self.owner.next_ticket()
        slot.map[HEADER : HEADER + data.nbytes] = data
        slot.stamp(ticket)
        self.slots.append(slot)
        self.nbytes += data.nbytes
        return slot.name, ticket

    def discard(self) -> None:
        for slot in self.slots:
            slot.stamp(0)
        self.slots.clear()
        self.nbytes = 0


class WriterSegments:
    """A writer's pool of segments to one reader (up to ``SHM_SLOTS``, reused when free)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.prefix = f"{_PREFIX}{token}-{secrets.token_hex(8)}-"
        self._slots: list[_Slot] = []
        self._count = 0
        self._ticket = 0

    @classmethod
    def for_address(cls, address: str) -> WriterSegments | None:
        """A pool when ``address`` is an ipc reader that takes segments, else None."""
        if not address.startswith("ipc://") or not available():
            return None
        token = reader_token(address)
        try:  # the reader's marker: it takes segments, shares our /dev/shm and our user
            if os.stat(_marker(token), follow_symlinks=False).st_uid != os.getuid():
                return None
        except OSError:
            return None
        return cls(token)

    def batch(self) -> SegmentBatch:
        return SegmentBatch(self)

    def next_ticket(self) -> int:
        self._ticket += 1
        return self._ticket

    def slot_for(self, size: int) -> _Slot | None:
        """A free segment of at least ``size`` bytes (not over twice), or a new one."""
        free = [s for s in self._slots if s.ticket == 0]
        fitting = [s for s in free if size <= s.capacity <= 2 * size]
        if fitting:
            return fitting[0]
        if len(self._slots) >= SHM_SLOTS:
            if not free:
                return None  # the reader holds them all: inline
            self._drop(min(free, key=lambda s: s.capacity))
        return self._create(size)

    def _create(self, size: int) -> _Slot | None:
        capacity = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        name = f"{self.prefix}{self._count}"
        self._count += 1
        path = SHM_DIR / name
        try:
            fd = os.open(
                path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError:
            return None
        try:
            os.posix_fallocate(fd, 0, HEADER + capacity)  # ENOSPC now, not SIGBUS later
            segment = mmap.mmap(fd, HEADER + capacity, flags=mmap.MAP_SHARED | _POPULATE)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        finally:
            os.close(fd)
        slot = _Slot(name, capacity, segment)
        self._slots.append(slot)
        return slot

    def _drop(self, slot: _Slot) -> None:
        self._slots.remove(slot)
        with contextlib.suppress(OSError):
            os.unlink(SHM_DIR / slot.name)
        slot.map.close()

    def close(self) -> None:
        """Remove the free segments; all of them when the reader is gone."""
        gone = not _reader_alive(self.token)
        for slot in list(self._slots):
            if gone or slot.ticket == 0:
                self._drop(slot)
        if gone:
            _remove(self.prefix)
            with contextlib.suppress(OSError):
                os.unlink(_marker(self.token))


# --------------------------------------------------------------------------- reader


def _release(segment: mmap.mmap, ticket: int) -> None:
    with contextlib.suppress(ValueError):  # the map was closed: nothing to free
        if int.from_bytes(segment[:8], "little") == ticket:
            segment[:8] = bytes(8)


class ReaderSegments:
    """A reader's side: its marker, the segments it has mapped, and handle checks."""

    def __init__(self, address: str) -> None:
        self.token = reader_token(address)
        self._pattern = re.compile(rf"aif-{self.token}-[0-9a-f]{{16}}-[0-9]{{1,20}}\Z")
        self._maps: dict[str, mmap.mmap] = {}
        marker = _marker(self.token)
        # Lock first, then publish under the final name: a sweeper never sees it unlocked.
        temp = marker.with_name(f"{marker.name}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.rename(temp, marker)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        # A reader dropped without close(), or still open at exit, cleans up all the same.
        self._finalizer = weakref.finalize(self, _close_reader, self.token, fd)

    @classmethod
    def for_address(cls, address: str) -> ReaderSegments | None:
        if not address.startswith("ipc://") or not available():
            return None
        try:
            return cls(address)
        except OSError:
            return None

    def open(
        self, name: Any, nbytes: Any, ticket: Any, budget: int
    ) -> tuple[memoryview, Callable[[], None]]:
        """The data of a handle, and what frees it for its writer once no array uses it.

        Raises ``MalformedMessage`` when the handle is bad.
        """
        if type(name) is not str or not self._pattern.match(name):
            raise MalformedMessage(
                f"shared-memory handle names {name!r}, which is not a segment of this reader "
                f"(aif-{self.token}-<writer>-<n>)"
            )
        if type(nbytes) is not int or not 0 < nbytes <= budget:
            raise MalformedMessage(
                f"shared-memory handle {name}: size {nbytes!r} must be 1..{budget} bytes "
                "(the message's size limit)"
            )
        if type(ticket) is not int or ticket <= 0:
            raise MalformedMessage(f"shared-memory handle {name}: bad ticket {ticket!r}")
        segment = self._maps.get(name)
        if segment is None:
            segment = self._map(name)
        if len(segment) < HEADER + nbytes:
            raise MalformedMessage(
                f"shared-memory segment {name} holds {len(segment) - HEADER} bytes, "
                f"the handle says {nbytes}"
            )
        if int.from_bytes(segment[:8], "little") != ticket:
            raise MalformedMessage(f"shared-memory segment {name} does not hold ticket {ticket}")
        return memoryview(segment)[HEADER : HEADER + nbytes], partial(_release, segment, ticket)

    def _map(self, name: str) -> mmap.mmap:
        path = SHM_DIR / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            reason = "is missing" if exc.errno == errno.ENOENT else f"cannot be opened: {exc}"
            raise MalformedMessage(f"shared-memory segment {name} {reason}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise MalformedMessage(f"shared-memory segment {name} is not a file of this user")
            if info.st_size <= HEADER:
                raise MalformedMessage(f"shared-memory segment {name} is too small")
            try:
                segment = mmap.mmap(fd, info.st_size, flags=mmap.MAP_SHARED | _POPULATE)
            except (OSError, ValueError) as exc:
                raise MalformedMessage(f"shared-memory segment {name} cannot be mapped") from exc
        finally:
            os.close(fd)
        # A writer replaces segments it outgrew, and writers come and go: forget the maps
        # of this writer's segments that are gone, and the oldest beyond a bound.
        writer = name[: name.rindex("-") + 1]
        for old in [n for n in self._maps if n.startswith(writer)]:
            if not os.path.exists(SHM_DIR / old):
                del self._maps[old]
        if len(self._maps) >= 4 * SHM_SLOTS:
            del self._maps[next(iter(self._maps))]
        self._maps[name] = segment
        return segment

    def close(self) -> None:
        """Remove every segment addressed to this reader, then the marker."""
        self._maps.clear()  # arrays still over them keep their maps alive
        self._finalizer()


def _close_reader(token: str, fd: int) -> None:
    _remove(f"{_PREFIX}{token}-")
    with contextlib.suppress(OSError):
        os.unlink(_marker(token))
    os.close(fd)
