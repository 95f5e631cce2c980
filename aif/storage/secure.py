"""SecureStorage: the secure profile's AIM Storage and Global Storage, encrypted at rest.

Every object is one STREAM object of ``aif.security.stream`` (AES-256-GCM by default,
1 MiB chunks), kept by an inner storage (a ``LocalStorage``) under its own key::

    0      4   5   6           10          14                  30         37
    +------+---+---+-----------+-----------+-------------------+----------+
    | AIFS | v | a | gen (u32) | chunk u32 |   salt (16 B)     | nonce    |
    +------+---+---+-----------+-----------+-------------------+ prefix 7 +
    | chunk 0 ciphertext || tag | chunk 1 ... | last chunk || tag          |
    +---------------------------------------------------------------------+
      v = 1; a = 1 AES-256-GCM, 2 ChaCha20-Poly1305; gen = key generation

    AAD of every chunk = the 37 header bytes || "aif-storage-v1" 0x00 <scope>/<key>

So an object only opens under its own scope and key: copied over another object, moved
to another AIM's storage, truncated, altered or read with the wrong key, it raises
``IntegrityError`` naming it. ``namespace(p)`` extends the scope to ``<scope>/p``, so
``ns.get("a")`` and ``parent.get("p/a")`` read the same object. Key generations
(``aif.security.exchange``) are in the header: reads accept any generation this storage
was given, writes use the newest, ``rotate`` moves every object to the newest.

Writes are as atomic as ``LocalStorage``'s: the ciphertext is streamed into the inner
store as ``.aif-partial-<random>`` beside the key and then committed (fsync, rename)
over it; key segments starting with ``.aif-partial`` are reserved. ``path_for`` hands
libraries a file in an owner-only scratch directory instead, since whatever they write
there is plaintext; ``commit`` encrypts it into the store and deletes it.

MPAI-AIF secure storage API and ours:

============================  =======================================================
MPAI-AIF                      aif
============================  =======================================================
MPAI_AIFSS_Storage_Init       ``secure_aim_storage(state_dir, aim, keys)``,
                              ``secure_global_storage(state_dir, keys)`` (an AIM gets
                              its own via ``runtime.storage`` in a secure workflow)
MPAI_AIFSS_Storage_Write      ``put(key, data)``, ``put_file(key, path)``,
                              ``path_for(tmp)`` + ``commit(tmp, key)``
MPAI_AIFSS_Storage_Read       ``get(key)``, ``open_read(key)`` (seekable)
MPAI_AIFSS_Storage_GetInfo    ``info(key)`` (size, algorithm, generation, time), ``keys()``
MPAI_AIFSS_Storage_Delete     ``delete(key)``
============================  =======================================================

Layout: ``STATE_DIR/secure/aims/<aim>``, ``STATE_DIR/secure/global`` (scopes
``aim/<aim>`` and ``global``), plaintext scratch under ``STATE_DIR/secure/scratch``;
``STATE_DIR/secure`` is mode 0700.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from aif.errors import ConfigError, IntegrityError, KeyNotFound, StorageError
from aif.security.aead import Algorithm
from aif.security.stream import (
    DEFAULT_CHUNK_SIZE,
    STREAM_HEADER_SIZE,
    StreamEncryptor,
    StreamHeader,
)
from aif.security.stream_reader import StreamDecryptor, decrypt_file
from aif.storage.base import Storage, validate_key, validate_prefix, validate_segment
from aif.storage.local import LocalStorage

#: Reserved key segment holding ciphertext being written.
PARTIAL = ".aif-partial"
#: Partial files older than this are left over from a crash; ``rotate`` removes them.
STALE_PARTIAL_S = 3600.0
_AAD = b"aif-storage-v1\x00"


@dataclass(frozen=True)
class ObjectInfo:
    """What ``info`` tells about an object without decrypting it."""

    key: str
    size: int  # plaintext bytes
    stored_size: int
    algorithm: Algorithm
    generation: int
    modified: float  # seconds since the epoch


@dataclass(frozen=True)
class RotationReport:
    """What ``rotate`` did: objects re-encrypted, already at the generation, in all."""

    generation: int
    rotated: int
    skipped: int

    @property
    def total(self) -> int:
        return self.rotated + self.skipped


class SecureStorage(Storage):
    """A Storage that encrypts every object into ``inner``, bound to ``scope``.

    ``keys`` maps key generation -> 32-byte key; the newest encrypts.
    """

    def __init__(
        self,
        inner: Storage,
        keys: Mapping[int, bytes],
        scope: str,
        scratch: Path,
        algorithm: Algorithm = "aes-256-gcm",
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if not keys:
            raise ConfigError(f"secure storage {scope!r} was given no keys; it cannot work")
        if not scope or "\x00" in scope:
            raise ConfigError(f"invalid secure storage scope {scope!r}")
        self.inner = inner
        self.generations: dict[int, bytes] = dict(sorted(keys.items()))
        self.generation = max(self.generations)
        self.scope = scope
        self.scratch = Path(scratch).absolute()
        self.algorithm = algorithm
        self.chunk_size = chunk_size
        StreamHeader.new(algorithm, self.generation, chunk_size)  # refuses bad settings now

    def __repr__(self) -> str:
        return f"SecureStorage({self.scope!r}, {self.inner!r})"

    # -- helpers ------------------------------------------------------------------------

    def _key(self, key: str, what: str = "storage key") -> str:
        validate_key(key, what=what)
        if any(segment.startswith(PARTIAL) for segment in key.split("/")):
            raise StorageError(
                f"invalid {what} {key!r}: segments starting with {PARTIAL!r} are reserved"
            )
        return key

    def _aad(self, key: str) -> bytes:
        return _AAD + f"{self.scope}/{key}".encode()

    def _what(self, key: str) -> str:
        return f"encrypted object {key!r} of secure storage {self.scope!r} ({self.inner!r})"

    def _header(self, source: BinaryIO, key: str) -> tuple[StreamHeader, bytes]:
        header = StreamHeader.parse(source.read(STREAM_HEADER_SIZE), self._what(key))
        secret = self.generations.get(header.generation)
        if secret is None:
            held = ", ".join(map(str, self.generations))
            raise IntegrityError(
                f"{self._what(key)} was encrypted with key generation {header.generation}, "
                f"but this storage holds generation(s) {held}: it comes from another state "
                "directory, or the keys were rotated without it (restored from an old "
                "backup?); delete it or restore a current copy"
            )
        return header, secret

    def _opened(self, key: str) -> tuple[BinaryIO, StreamHeader, bytes]:
        """The stored object open for reading, its checked header and its object key."""
        source = self.inner.open_read(self._key(key))
        try:
            header, secret = self._header(source, key)
        except BaseException:
            source.close()
            raise
        return source, header, secret

    def _reader(self, key: str) -> StreamDecryptor:
        source, header, secret = self._opened(key)
        return StreamDecryptor(secret, source, self._aad(key), what=self._what(key), header=header)

    def _write(self, key: str, feed: Callable[[StreamEncryptor], object]) -> None:
        """Encrypt what ``feed`` writes beside ``key``, then commit it over ``key``.

        Beside it, in the same directory, so the commit is one rename and one fsync.
        """
        self._key(key)
        head, _, _ = key.rpartition("/")
        name = f"{PARTIAL}-{secrets.token_hex(8)}"
        partial = f"{head}/{name}" if head else name
        path = self.inner.path_for(partial)
        try:
            with (
                open(path, "wb") as sink,
                StreamEncryptor(
                    self.generations[self.generation],
                    sink,
                    self._aad(key),
                    generation=self.generation,
                    algorithm=self.algorithm,
                    chunk_size=self.chunk_size,
                ) as encryptor,
            ):
                feed(encryptor)
            self.inner.commit(partial, key)
        except OSError as exc:
            raise StorageError(f"cannot write {self._what(key)} at {path}: {exc}") from exc
        finally:
            self.inner.delete(partial, missing_ok=True)

    def _scratch_path(self, key: str) -> Path:
        return self.scratch.joinpath(*key.split("/"))

    # -- Storage ----------------------------------------------------------------------

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` into ``key`` atomically."""
        self._write(key, lambda encryptor: encryptor.write(data))

    def get(self, key: str) -> bytes:
        """The decrypted object (IntegrityError if it fails authentication)."""
        source, header, secret = self._opened(key)
        return decrypt_file(secret, source, self._aad(key), what=self._what(key), header=header)

    def exists(self, key: str) -> bool:
        """True when an object is stored under ``key`` (it is not decrypted)."""
        return self.inner.exists(self._key(key))

    def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Remove the object under ``key``."""
        self.inner.delete(self._key(key), missing_ok=missing_ok)

    def keys(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix`` (objects being written are not listed)."""
        validate_prefix(prefix)
        return [k for k in self.inner.keys(prefix) if not _is_partial(k)]

    def path_for(self, key: str) -> Path:
        """A scratch file (owner-only directory) for a library to write ``key``'s plaintext.

        Nothing there is stored until ``commit(key, final_key)`` encrypts it into the
        store and deletes it; write ``path_for(k + ".tmp")``, then ``commit(k + ".tmp", k)``.
        """
        path = self._scratch_path(self._key(key))
        try:
            self.scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.scratch, 0o700)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageError(f"cannot create scratch directory {path.parent}: {exc}") from exc
        return path

    def commit(self, tmp_key: str, key: str) -> None:
        """Encrypt the plaintext written at ``path_for(tmp_key)`` into ``key``; delete it."""
        source = self._scratch_path(self._key(tmp_key))
        try:
            handle = open(source, "rb")  # noqa: SIM115 (closed by the with below)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise KeyNotFound(
                f"nothing to commit: no file at {source} (path_for({tmp_key!r})) in secure "
                f"storage {self.scope!r}; write it there first"
            ) from exc
        with handle:
            self._write(key, lambda encryptor: _copy(handle, encryptor, self.chunk_size))
        with contextlib.suppress(FileNotFoundError):
            source.unlink()

    def put_file(self, key: str, src_path: Path) -> None:
        """Encrypt the file ``src_path`` into ``key``, streamed, atomically."""
        try:
            handle = open(src_path, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            raise StorageError(f"cannot read source file {src_path}: {exc.strerror}") from exc
        with handle:
            self._write(key, lambda encryptor: _copy(handle, encryptor, self.chunk_size))

    def open_read(self, key: str) -> BinaryIO:
        """A seekable binary file on the decrypted object; chunks decrypt as they are read."""
        return cast(BinaryIO, io.BufferedReader(self._reader(key)))

    def namespace(self, prefix: str) -> SecureStorage:
        """The storage under ``prefix/``, its scope extended to ``<scope>/<prefix>``."""
        trimmed = self._key(prefix[:-1] if prefix.endswith("/") else prefix, "namespace prefix")
        return SecureStorage(
            self.inner.namespace(trimmed),
            self.generations,
            f"{self.scope}/{trimmed}",
            self._scratch_path(trimmed),
            self.algorithm,
            chunk_size=self.chunk_size,
        )

    # -- beyond Storage -----------------------------------------------------------------

    def info(self, key: str) -> ObjectInfo:
        """Plaintext size, algorithm, key generation and time of ``key``, not decrypting it."""
        with self.inner.open_read(self._key(key)) as source:
            header = StreamHeader.parse(source.read(STREAM_HEADER_SIZE), self._what(key))
            stat = os.fstat(source.fileno())
        return ObjectInfo(
            key=key,
            size=header.plaintext_size(stat.st_size, self._what(key)),
            stored_size=stat.st_size,
            algorithm=header.algorithm,
            generation=header.generation,
            modified=stat.st_mtime,
        )

    def rotate(
        self,
        generation: int | None = None,
        *,
        progress: Callable[[str, bool], object] | None = None,
    ) -> RotationReport:
        """Re-encrypt every object under ``generation`` (default: the newest key).

        Each object is replaced atomically, and objects already at ``generation`` are
        skipped, so a rotation killed midway is finished by running it again.
        ``progress(key, rotated)`` is called per object. Any object that fails
        authentication stops the rotation (IntegrityError naming it) before the old
        keys could be dropped.
        """
        target = self.generation if generation is None else generation
        if target not in self.generations:
            raise ConfigError(
                f"cannot rotate secure storage {self.scope!r} to generation {target}: it has "
                f"generation(s) {', '.join(map(str, self.generations))}"
            )
        self._remove_stale_partials()
        rotated = skipped = 0
        for key in self.keys():
            with self.inner.open_read(key) as source:
                at = StreamHeader.parse(source.read(STREAM_HEADER_SIZE), self._what(key))
            if at.generation == target:
                skipped += 1
            else:
                self._rotate_one(key, target)
                rotated += 1
            if progress is not None:
                progress(key, at.generation != target)
        return RotationReport(target, rotated, skipped)

    def _rotate_one(self, key: str, target: int) -> None:
        writer = SecureStorage(
            self.inner,
            {target: self.generations[target]},
            self.scope,
            self.scratch,
            self.algorithm,
            chunk_size=self.chunk_size,
        )
        with self._reader(key) as reader:
            # The whole object authenticates before anything replaces it: a tampered
            # object must not be re-encrypted into one that looks valid.
            writer._write(key, lambda encryptor: _copy(reader, encryptor, self.chunk_size))

    def _remove_stale_partials(self) -> None:
        """Delete partial writes a crash left behind (old enough that no writer owns them)."""
        now = time.time()
        for key in self.inner.keys(""):
            if not _is_partial(key):
                continue
            with self.inner.open_read(key) as handle:
                age = now - os.fstat(handle.fileno()).st_mtime
            if age > STALE_PARTIAL_S:
                self.inner.delete(key, missing_ok=True)


def _is_partial(key: str) -> bool:
    return key.rpartition("/")[2].startswith(PARTIAL)


class _ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _copy(source: _ReadInto, encryptor: StreamEncryptor, size: int) -> None:
    buffer = memoryview(bytearray(size))
    while n := source.readinto(buffer):
        encryptor.write(buffer[:n])


def _secure_root(state_dir: Path) -> Path:
    root = Path(state_dir).absolute() / "secure"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
    except OSError as exc:
        raise StorageError(f"cannot create secure storage directory {root}: {exc}") from exc
    return root


def secure_aim_storage(state_dir: Path, aim: str, keys: Mapping[int, bytes]) -> SecureStorage:
    """AIM ``aim``'s encrypted storage, at ``STATE_DIR/secure/aims/<aim>``, scope ``aim/<aim>``."""
    validate_segment(aim, what="AIM name for AIM storage")
    root = _secure_root(state_dir)
    return SecureStorage(
        LocalStorage(root / "aims" / aim), keys, f"aim/{aim}", root / "scratch" / "aims" / aim
    )


def secure_global_storage(state_dir: Path, keys: Mapping[int, bytes]) -> SecureStorage:
    """The encrypted Global Storage, at ``STATE_DIR/secure/global``, scope ``global``."""
    root = _secure_root(state_dir)
    return SecureStorage(LocalStorage(root / "global"), keys, "global", root / "scratch" / "global")


def secure_scope_storage(state_dir: Path, scope: str, keys: Mapping[int, bytes]) -> SecureStorage:
    """The secure storage of ``scope`` (``global`` or ``aim/<aim>``)."""
    if scope == "global":
        return secure_global_storage(state_dir, keys)
    aim = scope.removeprefix("aim/")
    if aim == scope:
        raise ConfigError(f"invalid storage scope {scope!r}: a scope is 'global' or 'aim/<AIM>'")
    return secure_aim_storage(state_dir, aim, keys)


def secure_scopes(state_dir: Path) -> list[str]:
    """The storage scopes that have a directory under ``STATE_DIR/secure``."""
    root = Path(state_dir).absolute() / "secure"
    found = ["global"] if (root / "global").is_dir() else []
    if (root / "aims").is_dir():
        found += [f"aim/{d.name}" for d in sorted((root / "aims").iterdir()) if d.is_dir()]
    return found
