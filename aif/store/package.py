"""A Store package: one AIM or AIW as a deterministic tar.gz, signed, maybe encrypted.

Archive members (see docs/store.md)::

    aif-package.json     the manifest: format, kind AIM|AIW, name, version, entry,
                         description, implementation src|wheel, MPAI-AIF metadata
    src/...              the implementation as a source tree, or
    wheels/NAME.whl      the implementation as one wheel

``entry`` is the class path ``package.module:Class`` of an AIM, or the YAML file (under
``src/``) of an AIW. An encrypted package (for proprietary AIMs) is stored as::

    "AIFPKG1\\n" | header length (u32, big-endian) | header JSON | sealed archive

The archive is sealed with a random 32-byte content key (``aif.security.aead.seal``,
AAD ``aif-package-v1|NAME@VERSION``); the header lists each recipient's x25519 key text
and the content key wrapped for it with HPKE (X25519, HKDF-SHA256, AES-256-GCM, info =
the same string). The detached signature (``aif.store.signing``) covers the file as
stored, so a package is verified before anything is decrypted or unpacked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aif.errors import IntegrityError, PackageSignatureError, SecurityError, StoreError
from aif.security.aead import new_key, open_sealed, seal
from aif.store.archive import build_tar, check_member_name
from aif.store.names import check_name, check_version, format_ref
from aif.store.signing import (
    PACKAGE_DOMAIN,
    Verified,
    apply_policy,
    check_signature,
    sha256_hex,
    sign_file,
)

MANIFEST = "aif-package.json"
PACKAGE_FORMAT = 1
ENCRYPTED_MAGIC = b"AIFPKG1\n"
_HEADER_LEN = struct.Struct(">I")
MAX_HEADER = 64 * 1024
MAX_RECIPIENTS = 256
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_CLASS_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
#: Left out of a source tree: caches and version-control data, never part of the code.
SKIPPED = {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


class Manifest(BaseModel):
    """``aif-package.json``: what the package is and how to load it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    kind: Literal["AIM", "AIW"]
    name: str
    version: str
    entry: str
    description: str = ""
    implementation: Literal["src", "wheel"]
    metadata: dict[str, Any] = Field(default_factory=dict)

    def checked(self) -> Manifest:
        """Self, after checking name, version and entry (StoreError otherwise)."""
        check_name(self.name)
        check_version(self.version)
        if self.kind == "AIM" and not _CLASS_PATH.fullmatch(self.entry):
            raise StoreError(
                f"package {self.ref}: entry {self.entry!r} is not a class path "
                "'package.module:Class'"
            )
        if self.kind == "AIW":
            check_member_name(self.entry, f"package {self.ref} entry")
            if not self.entry.endswith((".yml", ".yaml")):
                raise StoreError(f"package {self.ref}: entry {self.entry!r} is not a YAML file")
        return self

    @property
    def ref(self) -> str:
        return format_ref(self.name, self.version)

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"


def read_manifest(raw: bytes, where: str) -> Manifest:
    """Parse and check ``aif-package.json``; StoreError naming the fault."""
    try:
        return Manifest.model_validate_json(raw).checked()
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "document"
        raise StoreError(f"{where}: {MANIFEST} is not valid ({loc}: {first['msg']})") from exc


def source_files(src: Path) -> dict[str, bytes | Path]:
    """Archive members of an implementation: a source directory's files or one wheel."""
    if src.is_file():
        if src.suffix != ".whl":
            raise StoreError(f"{src} is neither a source directory nor a wheel (.whl)")
        check_member_name(src.name, str(src))
        return {f"wheels/{src.name}": src}
    if not src.is_dir():
        raise StoreError(f"{src} does not exist; give a source directory or a .whl file")
    files: dict[str, bytes | Path] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in SKIPPED for part in rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink():
            raise StoreError(
                f"{path} is a symbolic link; packages hold only regular files: copy the "
                "file it points to in its place"
            )
        if path.is_file():
            files[f"src/{rel.as_posix()}"] = path
    if not files:
        raise StoreError(f"{src} holds no files to package")
    return files


def build_package(manifest: Manifest, files: Mapping[str, bytes | Path]) -> bytes:
    """The deterministic tar.gz of ``manifest`` and the implementation ``files``."""
    manifest.checked()
    if MANIFEST in files:
        raise StoreError(f"the implementation may not contain its own {MANIFEST}")
    return build_tar({MANIFEST: manifest.to_bytes(), **files})


# -- encryption ------------------------------------------------------------------------


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    wrapped: str


class EncryptedHeader(BaseModel):
    """The JSON header of an encrypted package."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    name: str
    version: str
    recipients: list[Recipient] = Field(max_length=MAX_RECIPIENTS)


def _context(name: str, version: str) -> bytes:
    return b"aif-package-v1|" + format_ref(name, version).encode()


def encrypt_package(
    archive: bytes, name: str, version: str, recipients: Mapping[str, X25519PublicKey]
) -> bytes:
    """The stored form of ``archive`` readable only by the holders of ``recipients``."""
    from aif.security.keys import format_public_key

    if not recipients:
        raise StoreError(f"{format_ref(name, version)}: encryption needs at least one recipient")
    context = _context(name, version)
    content_key = new_key()
    entries = [
        Recipient(
            key=format_public_key(public),
            wrapped=base64.b64encode(_SUITE.encrypt(content_key, public, info=context)).decode(),
        )
        for public in recipients.values()
    ]
    header = EncryptedHeader(name=name, version=version, recipients=entries)
    raw = json.dumps(header.model_dump(), sort_keys=True).encode()
    return ENCRYPTED_MAGIC + _HEADER_LEN.pack(len(raw)) + raw + seal(content_key, archive, context)


def read_encrypted_header(stored: bytes, where: str) -> tuple[EncryptedHeader, bytes]:
    """The header and the sealed archive of an encrypted package."""
    start = len(ENCRYPTED_MAGIC) + _HEADER_LEN.size
    if not stored.startswith(ENCRYPTED_MAGIC) or len(stored) < start:
        raise StoreError(f"{where} is not an encrypted aif package (no AIFPKG1 header)")
    (size,) = _HEADER_LEN.unpack_from(stored, len(ENCRYPTED_MAGIC))
    if size > MAX_HEADER or start + size > len(stored):
        raise StoreError(f"{where}: encrypted package header of {size} bytes is damaged")
    try:
        header = EncryptedHeader.model_validate_json(stored[start : start + size])
    except ValidationError as exc:
        raise StoreError(f"{where}: encrypted package header is not valid: {exc}") from exc
    return header, stored[start + size :]


def decrypt_package(
    stored: bytes, key: X25519PrivateKey | None, name: str, version: str, where: str
) -> bytes:
    """The archive inside an encrypted package, for the holder of ``key``."""
    from aif.security.keys import format_public_key

    header, sealed = read_encrypted_header(stored, where)
    if (header.name, header.version) != (name, version):
        raise StoreError(
            f"{where}: encrypted for {format_ref(header.name, header.version)}, "
            f"not {format_ref(name, version)}"
        )
    listed = ", ".join(r.key for r in header.recipients) or "nobody"
    if key is None:
        raise SecurityError(
            f"{where} is encrypted for {listed}, and no decryption key was given; create "
            "this installation's keys with `aif keys init` and ask the publisher to publish "
            "for its x25519 key (`aif store publish ... --to x25519:...`)"
        )
    ours = format_public_key(key.public_key())
    mine = [r for r in header.recipients if r.key == ours]
    if not mine:
        raise SecurityError(
            f"{where} is encrypted for {listed}, not for this installation's key {ours}; "
            f"ask the publisher to re-publish with `--to {ours}`"
        )
    context = _context(name, version)
    try:
        content_key = _SUITE.decrypt(base64.b64decode(mine[0].wrapped), key, info=context)
    except (InvalidTag, ValueError, binascii.Error) as exc:
        raise IntegrityError(
            f"{where}: the content key wrapped for {ours} does not open; the package "
            "was altered or damaged: fetch it again"
        ) from exc
    return open_sealed(content_key, sealed, context, what=where)


# -- signing and verification ----------------------------------------------------------


def sign_package(
    stored: bytes, key: Ed25519PrivateKey, name: str, version: str, file: str, *, encrypted: bool
) -> bytes:
    """The ``.sig`` document of a package file as stored in the Store."""
    return sign_file(
        PACKAGE_DOMAIN, stored, key, name=name, version=version, file=file, encrypted=encrypted
    )


def verify_package(
    stored: bytes,
    sig: bytes | None,
    *,
    name: str,
    version: str,
    file: str,
    trusted: Mapping[str, Ed25519PublicKey],
    require_trusted: bool,
    where: str,
) -> Verified:
    """Check a package file against its signature and the trust policy.

    A wrong signature, a digest mismatch or a signature made for another package or
    file is always refused (PackageSignatureError). A missing signature or an
    untrusted signer is refused when ``require_trusted`` (the secure profile), else
    returned as warnings (also logged on ``aif.store``).
    """
    what = f"package {format_ref(name, version)} ({where})"
    if sig is None:
        return apply_policy(what, None, sha256_hex(stored), trusted, require_trusted)
    doc = check_signature(PACKAGE_DOMAIN, sha256_hex(stored), sig, f"{where}.sig")
    if (doc.name, doc.version, doc.file) != (name, version, file):
        raise PackageSignatureError(
            f"{where}.sig signs {doc.file} of {format_ref(doc.name, doc.version)}, not {file} "
            f"of {format_ref(name, version)}: the signature was swapped; fetch both again"
        )
    if doc.encrypted != stored.startswith(ENCRYPTED_MAGIC):
        raise PackageSignatureError(f"{where}.sig disagrees on whether the file is encrypted")
    return apply_policy(what, doc, doc.sha256, trusted, require_trusted)
