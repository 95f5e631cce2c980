"""The Store's ``index.json``: every package version, signed by the last publisher.

::

    STORE/index.json        {"format": 1, "updated": ISO time, "packages": [
                              {"name", "version", "kind", "description", "file", "sha256",
                               "size", "encrypted", "recipients": [x25519 key text...],
                               "signer": ed25519 key text | null, "published": ISO time}]}
    STORE/index.json.sig    signature document, domain "aif-index-v1\\n"
    STORE/packages/NAME/VERSION/FILE and FILE.sig

A client checks the index signature against its trusted publishers (the secure
profile requires it, the basic one warns), then each package's own signature and the
digest the index lists for it. ``file`` must be the canonical ``NAME-VERSION.tar.gz``
(or ``.tar.gz.aifenc``), so an index cannot point a client at any other path.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aif.errors import PackageNotFound, PackageSignatureError, StoreError
from aif.store.names import (
    archive_file,
    check_name,
    check_version,
    format_ref,
    highest,
    version_key,
)
from aif.store.signing import (
    INDEX_DOMAIN,
    Verified,
    apply_policy,
    check_signature,
    sha256_hex,
    sign_file,
)

INDEX_FILE = "index.json"
INDEX_SIG = "index.json.sig"
#: An index bigger than this is refused before it is parsed.
MAX_INDEX_BYTES = 64 * 1024 * 1024


def now_text() -> str:
    """The current UTC time as the index writes it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class IndexEntry(BaseModel):
    """One package version in the index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    kind: Literal["AIM", "AIW"]
    description: str = ""
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    encrypted: bool = False
    recipients: list[str] = Field(default_factory=list)
    signer: str | None = None
    published: str

    @property
    def ref(self) -> str:
        return format_ref(self.name, self.version)


class Index(BaseModel):
    """The whole ``index.json``."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    updated: str = Field(default_factory=now_text)
    packages: list[IndexEntry] = Field(default_factory=list)

    def names(self) -> list[str]:
        return sorted({e.name for e in self.packages})

    def versions(self, name: str) -> list[str]:
        """Versions of ``name``, lowest first."""
        return sorted((e.version for e in self.packages if e.name == name), key=version_key)

    def find(self, name: str, version: str | None = None) -> IndexEntry:
        """The entry of ``name`` at ``version`` (its highest when None), or PackageNotFound."""
        versions = self.versions(name)
        if not versions:
            have = ", ".join(self.names()) or "no packages"
            raise PackageNotFound(f"the Store has no package {name!r} (it has: {have})")
        wanted = version if version is not None else highest(versions)
        for entry in self.packages:
            if entry.name == name and entry.version == wanted:
                return entry
        raise PackageNotFound(
            f"the Store has no version {version} of {name!r} (it has: {', '.join(versions)})"
        )

    def with_entry(self, entry: IndexEntry) -> Index:
        """A copy with ``entry`` added (replacing the same NAME@VERSION), sorted, updated."""
        kept = [e for e in self.packages if (e.name, e.version) != (entry.name, entry.version)]
        ordered = sorted([*kept, entry], key=lambda e: (e.name, version_key(e.version)))
        return Index(updated=now_text(), packages=ordered)

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"


def parse_index(raw: bytes, where: str) -> Index:
    """Parse and check an ``index.json``; StoreError naming the fault."""
    if len(raw) > MAX_INDEX_BYTES:
        raise StoreError(f"{where}: {len(raw)} bytes is over the index limit {MAX_INDEX_BYTES}")
    try:
        index = Index.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "document"
        raise StoreError(f"{where} is not a valid Store index ({loc}: {first['msg']})") from exc
    seen: set[tuple[str, str]] = set()
    for entry in index.packages:
        check_name(entry.name)
        check_version(entry.version)
        if entry.file != archive_file(entry.name, entry.version, encrypted=entry.encrypted):
            raise StoreError(f"{where}: {entry.ref} lists file {entry.file!r}, not its own name")
        if (entry.name, entry.version) in seen:
            raise StoreError(f"{where}: {entry.ref} is listed twice")
        seen.add((entry.name, entry.version))
    return index


def sign_index(raw: bytes, key: Ed25519PrivateKey) -> bytes:
    """The ``index.json.sig`` document of ``raw``."""
    return sign_file(INDEX_DOMAIN, raw, key, name="index", version="1", file=INDEX_FILE)


def verify_index(
    raw: bytes,
    sig: bytes | None,
    *,
    trusted: Mapping[str, Ed25519PublicKey],
    require_trusted: bool,
    where: str,
) -> tuple[Index, Verified]:
    """Check ``index.json`` against its signature and the trust policy, then parse it."""
    what = f"the Store index {where}"
    if sig is None:
        verified = apply_policy(what, None, sha256_hex(raw), trusted, require_trusted)
    else:
        doc = check_signature(INDEX_DOMAIN, sha256_hex(raw), sig, f"{where}.sig")
        if (doc.name, doc.file) != ("index", INDEX_FILE):
            raise PackageSignatureError(f"{where}.sig is not an index signature ({doc.file})")
        verified = apply_policy(what, doc, doc.sha256, trusted, require_trusted)
    return parse_index(raw, where), verified
