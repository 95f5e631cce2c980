"""The files under ``STATE_DIR/keys``: owner-only, written atomically, read strictly.

Every key file (``identity.json``, ``trusted.json``, ``storage.json``) is JSON with
``"version": 1``, mode 0600 in a directory of mode 0700, and replaced atomically (temp
file, fsync, rename, fsync of the directory), so a crash leaves the old file or the new
one, never half of either. Private keys are refused when group or others may access
their file or directory, as ssh does: a key others can read is no longer a secret.
Lock files beside them (``*.lock``) carry no data; only their ``flock`` matters.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from pathlib import Path
from typing import Any, cast

from aif.errors import KeyFileError

FORMAT_VERSION = 1
IDENTITY_FILE = "identity.json"
TRUSTED_FILE = "trusted.json"
STORAGE_FILE = "storage.json"


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) and make it owner-only (0700)."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise KeyFileError(
            f"cannot create key directory {directory}: {exc.strerror or exc}"
        ) from exc


def write_owner_only(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, leaving its folder's mode as it
    is (a state directory, a user's chosen folder); ``OSError`` is the caller's to word."""
    temp = path.with_name(f"~{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, in an owner-only directory."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f"~{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def open_lock_file(path: Path) -> int:
    """A file descriptor on the lock file ``path`` (created 0600 in an owner-only dir).

    The descriptor is not inherited by child processes (PEP 446), so an AIM host a
    controller starts never keeps the controller's ``flock`` alive after it exits.
    """
    ensure_private_dir(path.parent)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot open lock file {path}: {exc.strerror or exc}") from exc


def check_private(path: Path) -> None:
    """Refuse a key file, or its directory, that group or others can access."""
    for target, fix in ((path.parent, "chmod 700"), (path, "chmod 600")):
        try:
            actual = target.stat().st_mode & 0o777
        except OSError as exc:
            raise KeyFileError(f"cannot read {target}: {exc.strerror or exc}") from exc
        if actual & 0o077:
            raise KeyFileError(
                f"{target} has mode {actual:04o}, so other users may read the private keys "
                f"in it; run `{fix} {target}` (and replace the keys if others did read them)"
            )


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a key file; KeyFileError naming the file otherwise.

    ``FileNotFoundError`` passes through: each caller knows what a missing file means
    (no identity yet, no trusted keys, no storage keys).
    """
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise KeyFileError(f"{what} {path} is not valid JSON ({exc}); restore it") from exc
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise KeyFileError(
            f"{what} {path} is not a version-{FORMAT_VERSION} aif key file; restore it"
        )
    return cast(dict[str, Any], doc)


def b64(data: bytes) -> str:
    """Standard base64 text, as key files store binary fields."""
    return base64.b64encode(data).decode("ascii")


def unb64(value: object, path: Path, name: str) -> bytes:
    """The bytes of base64 field ``name`` of key file ``path``; KeyFileError naming both."""
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise KeyFileError(f"{path}: field {name!r} is not base64 ({exc}); restore it") from exc
