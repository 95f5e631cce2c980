"""Publishing into a Store directory: describe the source, build, sign, index.

The publisher's own code is imported to build its MPAI-AIF metadata (it is their
code, on their machine); the source directory or wheel is on ``sys.path`` only for
that, and the modules imported from it are dropped afterwards, so the same process can
later load the installed copy without a stale one in the way.

Versions are immutable: publishing ``NAME@VERSION`` again with other content is refused.
Each publish re-signs the whole index with the publisher's key, under a lock file
(``STORE/.publish.lock``) so two publishers do not lose each other's entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from aif.errors import AIFError, PackageSignatureError, StoreError
from aif.store.archive import extract_zip
from aif.store.index import INDEX_FILE, INDEX_SIG, Index, IndexEntry, now_text, parse_index
from aif.store.index import sign_index as _sign_index
from aif.store.names import archive_file, check_name, check_version, store_path
from aif.store.package import (
    Manifest,
    build_package,
    encrypt_package,
    sign_package,
    source_files,
)
from aif.store.signing import INDEX_DOMAIN, check_signature, sha256_hex


@dataclass(frozen=True)
class Published:
    """What ``publish`` did: the index entry, where the file is, and whether it was new."""

    entry: IndexEntry
    path: Path
    already: bool


@contextlib.contextmanager
def importable(src: Path) -> Iterator[None]:
    """``src`` (a directory or a wheel) on ``sys.path`` for the block; its modules dropped after."""
    where = str(src.resolve())
    before = set(sys.modules)
    sys.path.insert(0, where)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(where)
        sys.path_importer_cache.pop(where, None)
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(where):
                del sys.modules[name]
        importlib.invalidate_caches()


def default_name(text: str) -> str:
    """A package name from a class or workflow name: ``TinyCounter`` -> ``tiny-counter``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", text).lower()
    return re.sub(r"[^a-z0-9._-]+", "-", name).strip("-._")[:64] or "package"


def aim_manifest(src: Path, class_path: str, *, name: str | None, version: str | None) -> Manifest:
    """The manifest of an AIM package: imports ``class_path`` from ``src`` for its metadata."""
    from aif.aims.metadata import aim_metadata
    from aif.aims.registry import load_class_path

    with importable(src):
        cls = load_class_path(class_path)
        origin = Path(getattr(sys.modules.get(cls.__module__), "__file__", None) or "")
        if not origin.resolve().is_relative_to(src.resolve()):
            raise StoreError(
                f"{class_path} was imported from {origin}, not from {src}: a module of that "
                "name is already installed or imported here; publish from a fresh process "
                "or rename the module"
            )
        name = check_name(name or default_name(cls.__name__))
        metadata = aim_metadata(cls, name)
        for impl in metadata.Implementations:
            impl.Source = "MPAIStore"
        return Manifest(
            kind="AIM",
            name=name,
            version=check_version(version or cls.version),
            entry=class_path,
            description=cls.description(),
            implementation="wheel" if src.is_file() else "src",
            metadata=metadata.model_dump(mode="json", exclude_none=True),
        ).checked()


def aiw_manifest(src: Path, workflow: str, *, name: str | None, version: str | None) -> Manifest:
    """The manifest of an AIW package: ``workflow`` is a YAML file inside the directory ``src``."""
    from aif.workflow import export_metadata, load_workflow, resolve

    if not src.is_dir():
        raise StoreError(f"an AIW package needs a source directory holding {workflow}, not {src}")
    path = (src / workflow).resolve()
    if not path.is_relative_to(src.resolve()) or not path.is_file():
        raise StoreError(f"workflow {workflow!r} is not a file inside {src}")
    with importable(src):
        resolved = resolve(load_workflow(path))
        metadata: dict[str, Any] = export_metadata(resolved)
    wf = resolved.workflow
    return Manifest(
        kind="AIW",
        name=check_name(name or default_name(wf.name)),
        version=check_version(version or wf.version),
        entry=path.relative_to(src.resolve()).as_posix(),
        description=wf.description,
        implementation="src",
        metadata=metadata,
    ).checked()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(store: Path) -> Iterator[None]:
    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".publish.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_store_index(store: Path) -> Index:
    """The index of a Store directory being published to, checked for consistency.

    Any valid signature will do here (it may be another publisher's); a signature that
    does not match means somebody changed the index by hand, and publishing over it
    would launder that change under a fresh signature, so that is refused.
    """
    path = store / INDEX_FILE
    if not path.exists():
        return Index(packages=[])
    raw = path.read_bytes()
    sig = store / INDEX_SIG
    if sig.exists():
        try:
            check_signature(INDEX_DOMAIN, sha256_hex(raw), sig.read_bytes(), str(sig))
        except PackageSignatureError as exc:
            raise StoreError(
                f"{path} does not match its signature, so it was changed outside "
                f"`aif store publish`; restore it, or remove {path.name} and {sig.name} "
                f"only if you mean to drop every package from the index ({exc})"
            ) from exc
    return parse_index(raw, str(path))


def publish(
    store: Path,
    manifest: Manifest,
    files: Mapping[str, bytes | Path],
    key: Ed25519PrivateKey,
    recipients: Mapping[str, X25519PublicKey] | None = None,
) -> Published:
    """Build, (encrypt,) sign and add a package to the Store directory ``store``."""
    return publish_archive(store, manifest, build_package(manifest, files), key, recipients)


def publish_archive(
    store: Path,
    manifest: Manifest,
    archive: bytes,
    key: Ed25519PrivateKey,
    recipients: Mapping[str, X25519PublicKey] | None = None,
) -> Published:
    """(Encrypt,) sign and add an already built package ``archive`` to ``store``.

    ``manifest`` gives the index entry; it must be the archive's own (the installer
    checks that they agree).
    """
    from aif.security.keys import format_public_key

    manifest.checked()
    encrypted = bool(recipients)
    stored = (
        encrypt_package(archive, manifest.name, manifest.version, recipients or {})
        if encrypted
        else archive
    )
    file = archive_file(manifest.name, manifest.version, encrypted=encrypted)
    path = store / store_path(manifest.name, manifest.version, file)
    with _locked(store):
        index = read_store_index(store)
        try:
            existing: IndexEntry | None = index.find(manifest.name, manifest.version)
        except AIFError:
            existing = None
        if existing is not None and (existing.encrypted or existing.sha256 != sha256_hex(stored)):
            raise StoreError(
                f"{manifest.ref} is already in {store} (sha256 {existing.sha256}); versions "
                "are immutable: publish this content under a new version"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, stored)
        sig = sign_package(stored, key, manifest.name, manifest.version, file, encrypted=encrypted)
        _write_atomic(path.with_name(file + ".sig"), sig)
        entry = IndexEntry(
            name=manifest.name,
            version=manifest.version,
            kind=manifest.kind,
            description=manifest.description,
            file=file,
            sha256=sha256_hex(stored),
            size=len(stored),
            encrypted=encrypted,
            recipients=[format_public_key(k) for k in (recipients or {}).values()],
            signer=format_public_key(key.public_key()),
            published=existing.published if existing is not None else now_text(),
        )
        raw = index.with_entry(entry).to_bytes()
        _write_atomic(store / INDEX_FILE, raw)
        _write_atomic(store / INDEX_SIG, _sign_index(raw, key))
    return Published(entry=entry, path=path, already=existing is not None)


def publish_source(
    store: Path,
    src: Path,
    key: Ed25519PrivateKey,
    *,
    aim: str | None = None,
    workflow: str | None = None,
    name: str | None = None,
    version: str | None = None,
    recipients: Mapping[str, X25519PublicKey] | None = None,
) -> Published:
    """Publish the AIM class ``aim`` or the workflow ``workflow`` found in ``src``."""
    if (aim is None) == (workflow is None):
        raise StoreError("say what to publish: --aim package.module:Class or --workflow FILE.yml")
    files = source_files(src)
    if src.is_file():  # a wheel: refuse now what every installer would refuse later
        with tempfile.TemporaryDirectory() as tmp:
            extract_zip(src.read_bytes(), Path(tmp), where=str(src))
    if aim is not None:
        manifest = aim_manifest(src, aim, name=name, version=version)
    else:
        assert workflow is not None
        manifest = aiw_manifest(src, workflow, name=name, version=version)
    return publish(store, manifest, files, key, recipients)
