"""Installing Store packages into an isolated cache, and loading AIMs from it.

::

    STATE_DIR/packages/NAME/VERSION/
        installed.json       what was installed, from where, signed by whom (below)
        aif-package.json     the package's manifest
        FILE.sig             the package's signature, kept for re-verification
        site/                the source tree (src/) or the wheel's files: on sys.path

``installed.json``: name, version, kind, entry, implementation, ``sha256`` (of the
plaintext archive: the digest of the AIM implementation that attestation reports),
``stored_sha256`` (of the file as stored, what the signature covers), file, signer
key text and trusted name, trusted, encrypted, installed time, source URL, and
``site_sha256`` (a digest of the files under site/, for a deep check).

A version is installed once: installing it again is a no-op when the Store still has
the same file, and refused when it has another (versions are immutable). Everything is
unpacked into a fresh directory beside the target and renamed into place at the end,
so a refused package leaves nothing. Nothing is executed on install (no pip, no
setup.py); code runs only when :func:`load_aim_class` imports the entry.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import BaseModel, ConfigDict, ValidationError

from aif.errors import IntegrityError, PackageNotFound, PackageSignatureError, StoreError
from aif.storage.paths import INSTALLED_MARKER, packages_dir
from aif.store.archive import Limits, extract_tar, extract_zip, staged
from aif.store.index import IndexEntry, now_text
from aif.store.names import check_name, check_version, format_ref, highest, parse_ref, store_path
from aif.store.package import (
    ENCRYPTED_MAGIC,
    MANIFEST,
    Manifest,
    decrypt_package,
    read_manifest,
    verify_package,
)
from aif.store.signing import (
    PACKAGE_DOMAIN,
    apply_policy,
    check_signature,
    sha256_hex,
)

if TYPE_CHECKING:
    from aif.aims.base import AIM
    from aif.store.client import StoreClient

INSTALLED = INSTALLED_MARKER
_TOP_LEVEL = {MANIFEST, "src", "wheels"}


class InstalledRecord(BaseModel):
    """``installed.json`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    name: str
    version: str
    kind: Literal["AIM", "AIW"]
    entry: str
    implementation: Literal["src", "wheel"]
    sha256: str
    stored_sha256: str
    file: str
    signer: str | None
    signer_name: str | None
    trusted: bool
    encrypted: bool
    installed: str
    source: str
    site_sha256: str


@dataclass(frozen=True)
class InstalledPackage:
    """A package in the install cache: its directory and its ``installed.json``."""

    path: Path
    record: InstalledRecord

    @property
    def site(self) -> Path:
        return self.path / "site"

    @property
    def ref(self) -> str:
        return format_ref(self.record.name, self.record.version)

    @property
    def sha256(self) -> str:
        """Digest of the plaintext archive: what attestation reports for this AIM."""
        return self.record.sha256


@dataclass(frozen=True)
class InstallResult:
    package: InstalledPackage
    warnings: list[str] = field(default_factory=list)
    already: bool = False


def tree_digest(root: Path) -> str:
    """SHA-256 over the files under ``root`` (paths, contents, executable bit).

    ``__pycache__`` is left out: importing writes there.
    """
    outer = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or path.is_dir():
            continue
        kind = "link" if path.is_symlink() else "x" if path.stat().st_mode & 0o100 else "f"
        inner = "" if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
        outer.update(f"{rel.as_posix()}\0{kind}\0{inner}\n".encode())
    return outer.hexdigest()


def read_installed(path: Path) -> InstalledPackage:
    """The installed package in directory ``path``; StoreError if it is not one."""
    try:
        record = InstalledRecord.model_validate_json((path / INSTALLED).read_bytes())
    except (OSError, ValidationError) as exc:
        raise StoreError(
            f"{path} is not a complete install ({INSTALLED}: {exc}); remove it and install again"
        ) from exc
    return InstalledPackage(path, record)


def find_installed(state_dir: Path, name: str, version: str | None = None) -> InstalledPackage:
    """The installed ``name`` at ``version`` (the highest installed when None)."""
    base = packages_dir(state_dir) / check_name(name)
    versions = []
    if base.is_dir():
        versions = [p.name for p in base.iterdir() if (p / INSTALLED).is_file()]
    wanted = check_version(version) if version is not None else highest(versions)
    if wanted is None or wanted not in versions:
        have = f"installed: {', '.join(versions)}" if versions else "none installed"
        raise PackageNotFound(
            f"package {format_ref(name, version or '*')} is not installed in {state_dir} "
            f"({have}); run `aif store install {format_ref(name, version) if version else name} "
            "--store URL`"
        )
    return read_installed(base / wanted)


def list_installed(state_dir: Path) -> list[InstalledPackage]:
    """Every installed package version, by name."""
    root = packages_dir(state_dir)
    return [read_installed(p.parent) for p in sorted(root.glob(f"*/*/{INSTALLED}"))]


def check_installed(
    installed: InstalledPackage,
    *,
    trusted: Mapping[str, Ed25519PublicKey],
    require_trusted: bool,
    deep: bool = False,
) -> list[str]:
    """Re-verify an installed package under today's trust list; returns the warnings.

    The kept signature must still verify and cover the recorded digest, and its signer
    must be trusted now under the secure profile (a package installed with a basic-profile
    warning is refused). ``deep`` also re-hashes site/ against the digest taken at
    install (IntegrityError when files there changed).
    """
    record = installed.record
    what = f"installed package {installed.ref} ({installed.path})"
    sig_path = installed.path / f"{record.file}.sig"
    if not sig_path.is_file():
        verified = apply_policy(what, None, record.stored_sha256, trusted, require_trusted)
    else:
        doc = check_signature(
            PACKAGE_DOMAIN, record.stored_sha256, sig_path.read_bytes(), str(sig_path)
        )
        if (doc.name, doc.version, doc.file) != (record.name, record.version, record.file):
            raise PackageSignatureError(f"{sig_path} is not the signature of {installed.ref}")
        verified = apply_policy(what, doc, record.stored_sha256, trusted, require_trusted)
    if deep and tree_digest(installed.site) != record.site_sha256:
        raise IntegrityError(
            f"files under {installed.site} changed since {installed.ref} was installed; "
            f"remove {installed.path} and install it again"
        )
    return verified.warnings


def load_aim_class(installed: InstalledPackage) -> type[AIM]:
    """Import the AIM class of an installed package from its site/ (once per process).

    site/ goes at the end of ``sys.path``, so a package cannot shadow the environment's
    modules; a module of the same name imported from elsewhere is refused by name.
    """
    from aif.aims.registry import load_class_path

    record = installed.record
    if record.kind != "AIM":
        raise StoreError(f"{installed.ref} is an {record.kind}, not an AIM")
    site = str(installed.site.resolve())
    if site not in sys.path:
        sys.path.append(site)
        importlib.invalidate_caches()
    module = record.entry.partition(":")[0]
    cls = load_class_path(record.entry)
    origin = getattr(sys.modules.get(module), "__file__", None) or ""
    if not Path(origin).resolve().is_relative_to(site):
        raise StoreError(
            f"{installed.ref}: module {module!r} was imported from {origin or 'elsewhere'}, "
            f"not from {site}; another package or this environment has a module of that "
            "name, and one process can load only one of them"
        )
    return cls


def install(
    client: StoreClient,
    ref: str,
    state_dir: Path,
    *,
    trusted: Mapping[str, Ed25519PublicKey],
    require_trusted: bool,
    decrypt_key: X25519PrivateKey | Callable[[], X25519PrivateKey | None] | None = None,
    limits: Limits | None = None,
) -> InstallResult:
    """Fetch, verify, decrypt and unpack ``NAME[@VERSION]`` from ``client``'s Store.

    ``decrypt_key`` may be a function, called only when the package is encrypted (so a
    passphrase is asked only when it is needed).
    """
    limits = limits or client.limits
    name, version = parse_ref(ref)
    index, index_verified = client.index(trusted=trusted, require_trusted=require_trusted)
    entry = index.find(name, version)
    warnings = list(index_verified.warnings)
    target = packages_dir(state_dir) / entry.name / entry.version
    if target.exists():
        return _reuse(target, entry, trusted, require_trusted, warnings)
    stored, sig = client.fetch(entry)
    where = client.where(store_path(entry.name, entry.version, entry.file))
    if sha256_hex(stored) != entry.sha256:
        raise PackageSignatureError(
            f"{where}: SHA-256 {sha256_hex(stored)} differs from the index's {entry.sha256}; "
            "the file was replaced or damaged: do not use it"
        )
    verified = verify_package(
        stored,
        sig,
        name=entry.name,
        version=entry.version,
        file=entry.file,
        trusted=trusted,
        require_trusted=require_trusted,
        where=where,
    )
    if entry.signer is not None and verified.signer != entry.signer:
        raise PackageSignatureError(
            f"{where}: the index says {entry.signer} signed it, but it is "
            f"{'unsigned' if verified.signer is None else 'signed by ' + verified.signer}; "
            "the signature was stripped or swapped: do not use it"
        )
    warnings += verified.warnings
    if entry.encrypted != stored.startswith(ENCRYPTED_MAGIC):
        raise StoreError(f"{where}: the index and the file disagree on encryption")
    archive = stored
    if entry.encrypted:
        key = decrypt_key() if callable(decrypt_key) else decrypt_key
        archive = decrypt_package(stored, key, entry.name, entry.version, where)
    try:
        with staged(target) as tmp:
            manifest = _unpack(archive, tmp, entry, limits, where)
            if sig is not None:
                (tmp / f"{entry.file}.sig").write_bytes(sig)
            record = InstalledRecord(
                name=entry.name,
                version=entry.version,
                kind=manifest.kind,
                entry=manifest.entry,
                implementation=manifest.implementation,
                sha256=sha256_hex(archive),
                stored_sha256=entry.sha256,
                file=entry.file,
                signer=verified.signer,
                signer_name=verified.signer_name,
                trusted=verified.trusted,
                encrypted=entry.encrypted,
                installed=now_text(),
                source=client.url,
                site_sha256=tree_digest(tmp / "site"),
            )
            (tmp / INSTALLED).write_text(record.model_dump_json(indent=2) + "\n")
    except OSError:
        if target.exists():  # installed meanwhile by another process
            return _reuse(target, entry, trusted, require_trusted, warnings)
        raise
    return InstallResult(InstalledPackage(target, record), warnings)


def _reuse(
    target: Path,
    entry: IndexEntry,
    trusted: Mapping[str, Ed25519PublicKey],
    require_trusted: bool,
    warnings: list[str],
) -> InstallResult:
    existing = read_installed(target)
    if existing.record.stored_sha256 != entry.sha256:
        raise StoreError(
            f"{entry.ref} is installed at {target} with SHA-256 {existing.record.stored_sha256}, "
            f"but the Store now has {entry.sha256}; versions are immutable, so the Store's "
            f"copy changed: ask its publisher, or remove {target} to install theirs"
        )
    warnings += check_installed(existing, trusted=trusted, require_trusted=require_trusted)
    return InstallResult(existing, warnings, already=True)


def _unpack(archive: bytes, tmp: Path, entry: IndexEntry, limits: Limits, where: str) -> Manifest:
    """Unpack ``archive`` into ``tmp`` as site/ + aif-package.json; the manifest."""
    unpacked = tmp / "archive"
    unpacked.mkdir()
    extract_tar(archive, unpacked, limits, where=where)
    extra = sorted(p.name for p in unpacked.iterdir() if p.name not in _TOP_LEVEL)
    if extra:
        raise StoreError(f"{where}: unexpected top-level entries {extra} in the package")
    manifest_path = unpacked / MANIFEST
    if not manifest_path.is_file():
        raise StoreError(f"{where}: the package has no {MANIFEST}")
    manifest = read_manifest(manifest_path.read_bytes(), where)
    if (manifest.name, manifest.version) != (entry.name, entry.version):
        raise StoreError(
            f"{where}: the package calls itself {manifest.ref}, not {entry.ref}; refusing it"
        )
    if manifest.kind != entry.kind:
        raise StoreError(f"{where}: the package is an {manifest.kind}, the index says {entry.kind}")
    site = tmp / "site"
    if manifest.implementation == "src":
        if not (unpacked / "src").is_dir():
            raise StoreError(f"{where}: a source package without src/")
        (unpacked / "src").rename(site)
    else:
        wheels = sorted((unpacked / "wheels").glob("*.whl"))
        if len(wheels) != 1:
            raise StoreError(f"{where}: a wheel package needs exactly one wheels/*.whl")
        site.mkdir()
        extract_zip(wheels[0].read_bytes(), site, limits, where=f"{where}:{wheels[0].name}")
    if manifest.kind == "AIW" and not site.joinpath(*manifest.entry.split("/")).is_file():
        raise StoreError(f"{where}: the workflow {manifest.entry} is not in the package")
    manifest_path.rename(tmp / MANIFEST)
    shutil.rmtree(unpacked)
    return manifest


def resolve_installed(
    state_dir: Path,
    ref: str,
    *,
    trusted: Mapping[str, Ed25519PublicKey],
    require_trusted: bool,
    deep: bool = False,
) -> tuple[type[AIM], InstalledPackage, list[str]]:
    """``NAME[@VERSION]`` installed in ``state_dir`` -> its checked, imported AIM class.

    What a workflow resolver calls for a ``store:NAME@VERSION`` type: find, re-verify
    under the workflow's profile, then import.
    """
    name, version = parse_ref(ref)
    installed = find_installed(state_dir, name, version)
    warnings = check_installed(
        installed, trusted=trusted, require_trusted=require_trusted, deep=deep
    )
    return load_aim_class(installed), installed, warnings
