"""Storage keys per scope: X25519 + HKDF from the controller's key, with generations.

Each storage scope (``global``, ``aim/<NAME>``) has one or more key generations. A
generation is created by making an ephemeral X25519 key pair, keeping only its public
half in ``STATE_DIR/keys/storage.json`` and throwing the private half away; the key is

    shared = X25519(controller private, ephemeral public)
    key    = HKDF-SHA256(shared, salt = ephemeral public || controller public,
                         info = "aif-storage-v1|" + scope + "|" + generation)

so only the holder of the controller's X25519 private key can derive it, the file alone
reveals nothing, and every (scope, generation) gets an unrelated key: one AIM's keys
cannot open another's storage. ``storage.json``::

    {"version": 1,
     "scopes": {"aim/train": {"generations": {"1": "x25519:...", "2": "x25519:..."},
                              "rotating": 2 | null}}}

Rotation: ``begin_rotation`` adds generation N+1 (new writes use it at once; reads accept
both), ``SecureStorage.rotate`` re-encrypts every object, ``finish_rotation`` forgets the
older generations. A crash in between leaves ``rotating`` set, and the next
``begin_rotation`` returns that same generation, so a rotation resumes instead of
starting over. The file is changed under an ``flock``, so two processes creating the
first generation of a scope at once cannot end up with different keys.

Storage in use: every process that uses storage keys holds ``StorageInUse``, a shared
``flock`` on ``STATE_DIR/keys/storage-use.lock``; ``aif keys rotate`` takes the same
lock exclusively (``StorageRotationLock``) and so refuses to start while any controller
uses storage, and a controller refuses to start using it while a rotation runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aif.errors import ConfigError, KeyFileError, StorageError
from aif.security.key_files import (
    FORMAT_VERSION,
    STORAGE_FILE,
    open_lock_file,
    read_json,
    write_private_file,
)
from aif.security.key_formats import format_public_key, parse_public_key
from aif.security.keys import Identity

__all__ = [
    "STORAGE_FILE",
    "STORAGE_USE_LOCK",
    "StorageInUse",
    "StorageKeys",
    "StorageRotationLock",
    "check_scope",
    "derive_scope_key",
]

#: The lock file whose ``flock`` says who uses storage keys (``StorageInUse``).
STORAGE_USE_LOCK = "storage-use.lock"
_SCOPE = re.compile(r"global|aim/[A-Za-z0-9._-]{1,255}")
_INFO = b"aif-storage-v1|"


def check_scope(scope: str) -> str:
    """``scope`` when it is ``global`` or ``aim/<NAME>``, else ConfigError."""
    if not isinstance(scope, str) or not _SCOPE.fullmatch(scope) or scope in ("aim/.", "aim/.."):
        raise ConfigError(
            f"invalid storage scope {scope!r}: a scope is 'global' or 'aim/<AIM name>'"
        )
    return scope


def derive_scope_key(
    controller: X25519PrivateKey, ephemeral_public: X25519PublicKey, scope: str, generation: int
) -> bytes:
    """The 32-byte storage key of ``scope`` at ``generation``."""
    try:
        shared = controller.exchange(ephemeral_public)
    except ValueError as exc:  # a low-order point: the stored key was forged
        raise KeyFileError(
            f"the generation-{generation} key of storage scope {scope!r} is not a usable "
            f"X25519 public key ({exc}); {STORAGE_FILE} was altered, restore it"
        ) from exc
    salt = ephemeral_public.public_bytes_raw() + controller.public_key().public_bytes_raw()
    info = _INFO + scope.encode() + b"|" + str(generation).encode()
    return HKDF(hashes.SHA256(), 32, salt, info).derive(shared)


class StorageKeys:
    """The storage key generations of one state directory, derived with ``identity``."""

    def __init__(self, state_dir: Path, identity: Identity) -> None:
        self.dir = Path(state_dir) / "keys"
        self.path = self.dir / STORAGE_FILE
        self.identity = identity

    def __repr__(self) -> str:
        return f"StorageKeys({str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = open_lock_file(self.dir / "storage.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            doc = read_json(self.path, "storage keys file")
        except FileNotFoundError:
            return {}
        scopes = doc.get("scopes")
        if not isinstance(scopes, dict):
            raise KeyFileError(f"{self.path}: 'scopes' is not an object; restore it")
        for scope, entry in scopes.items():
            if not (isinstance(entry, dict) and isinstance(entry.get("generations"), dict)):
                raise KeyFileError(f"{self.path}: scope {scope!r} has no generations; restore it")
        return cast(dict[str, dict[str, Any]], scopes)

    def _write(self, scopes: dict[str, dict[str, Any]]) -> None:
        doc = {"version": FORMAT_VERSION, "scopes": scopes}
        write_private_file(self.path, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")

    @staticmethod
    def _new_generation(entry: dict[str, Any], generation: int) -> None:
        ephemeral = X25519PrivateKey.generate()  # its private half is dropped right here
        entry["generations"][str(generation)] = format_public_key(ephemeral.public_key())

    def _derive(self, scope: str, entry: dict[str, Any]) -> dict[int, bytes]:
        keys: dict[int, bytes] = {}
        for gen_text, text in entry["generations"].items():
            try:
                generation = int(gen_text)
                kind, public = parse_public_key(str(text))
            except (ValueError, ConfigError) as exc:
                raise KeyFileError(
                    f"{self.path}: generation {gen_text!r} of scope {scope!r} is not a key "
                    f"({exc}); restore the file"
                ) from exc
            if not isinstance(public, X25519PublicKey):
                raise KeyFileError(f"{self.path}: scope {scope!r} holds a {kind} key; restore it")
            keys[generation] = derive_scope_key(self.identity.exchange, public, scope, generation)
        return dict(sorted(keys.items()))

    def scopes(self) -> list[str]:
        """The scopes that have keys."""
        return sorted(self._read())

    def keys_for(self, scope: str) -> dict[int, bytes]:
        """Generation -> key of ``scope`` (oldest first), creating generation 1 if new."""
        check_scope(scope)
        scopes = self._read()
        if scope not in scopes:
            with self._locked():
                scopes = self._read()
                if scope not in scopes:
                    scopes[scope] = {"generations": {}, "rotating": None}
                    self._new_generation(scopes[scope], 1)
                    self._write(scopes)
        return self._derive(scope, scopes[scope])

    def rotating(self, scope: str) -> int | None:
        """The generation a started, unfinished rotation of ``scope`` moves to, if any."""
        entry = self._read().get(check_scope(scope))
        return None if entry is None else cast(int | None, entry.get("rotating"))

    def begin_rotation(self, scope: str) -> int:
        """Add a new newest generation to ``scope`` (or return the unfinished one)."""
        check_scope(scope)
        self.keys_for(scope)
        with self._locked():
            scopes = self._read()
            entry = scopes[scope]
            pending = entry.get("rotating")
            if isinstance(pending, int) and str(pending) in entry["generations"]:
                return pending
            generation = max(int(g) for g in entry["generations"]) + 1
            self._new_generation(entry, generation)
            entry["rotating"] = generation
            self._write(scopes)
            return generation

    def finish_rotation(self, scope: str, generation: int) -> None:
        """Forget every generation of ``scope`` older than ``generation``.

        Call only once every object was re-encrypted (``SecureStorage.rotate``): objects
        still under an older generation can never be read again afterwards.
        """
        check_scope(scope)
        with self._locked():
            scopes = self._read()
            entry = scopes.get(scope)
            if entry is None or str(generation) not in entry["generations"]:
                raise KeyFileError(
                    f"storage scope {scope!r} has no key generation {generation} in {self.path}"
                )
            entry["generations"] = {
                g: text for g, text in entry["generations"].items() if int(g) >= generation
            }
            entry["rotating"] = None
            self._write(scopes)


class _UseLock:
    """One ``flock`` on ``STATE_DIR/keys/storage-use.lock``, held through one open file.

    The kernel drops it when the file is closed or the process dies, so a crashed
    controller never leaves storage locked. ``acquire`` and ``release`` are idempotent
    and thread-safe; each instance holds at most one lock.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "keys" / STORAGE_USE_LOCK
        self._fd: int | None = None
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """True while this instance holds its lock."""
        return self._fd is not None

    def _take(self, operation: int, busy: str) -> None:
        with self._guard:
            if self._fd is not None:
                return
            fd = open_lock_file(self.path)
            try:
                fcntl.flock(fd, operation)
            except BlockingIOError as exc:
                os.close(fd)
                raise StorageError(busy) from exc
            except OSError as exc:
                os.close(fd)
                raise KeyFileError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
            self._fd = fd

    def release(self) -> None:
        """Let go of the lock (a no-op when not held)."""
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)  # closing the file drops its flock
                self._fd = None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()


class StorageInUse(_UseLock):
    """A shared hold on the storage keys of a state directory, while they are in use.

    Every process that derives storage keys and hands them out or uses them (a
    controller: ``aif run`` or a daemon, for as long as a secure run may write) holds
    one, so ``aif keys rotate`` (``StorageRotationLock``) cannot start under it: a run's
    AIMs hold the keys they were given at setup and would go on writing under a
    generation that rotation then forgets, leaving objects nobody can read. Any number
    of processes share it.
    """

    def acquire(self, *, wait: bool = False) -> None:
        """Take the shared lock; StorageError while a rotation holds it (unless ``wait``).

        With ``wait`` it blocks until the rotation ends instead.
        """
        self._take(
            fcntl.LOCK_SH | (0 if wait else fcntl.LOCK_NB),
            f"`aif keys rotate` is re-encrypting the secure storage in {self.state_dir}; "
            "wait for it to finish, then start again",
        )

    def __enter__(self) -> StorageInUse:
        self.acquire()
        return self


class StorageRotationLock(_UseLock):
    """The exclusive side of ``StorageInUse``: held by ``aif keys rotate`` while it runs."""

    def acquire(self) -> None:
        """Take the exclusive lock, or raise StorageError when anyone holds the shared one."""
        self._take(
            fcntl.LOCK_EX | fcntl.LOCK_NB,
            f"a controller (aif run or a daemon) is using secure storage in {self.state_dir}; "
            "wait for it to end, then rotate",
        )

    def __enter__(self) -> StorageRotationLock:
        self.acquire()
        return self
