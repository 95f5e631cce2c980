"""Detached Ed25519 signatures of Store files, and the trust policy of both profiles.

A signature document is a small JSON object next to the file it signs::

    NAME-VERSION.tar.gz.sig / index.json.sig
    {"format": 1, "name": ..., "version": ..., "file": ..., "sha256": <hex of the file
     as stored>, "encrypted": bool, "key": "ed25519:...", "signature": <base64>}

The signature covers ``DOMAIN + canonical JSON`` of every field but ``signature``
(:mod:`aif.security.signing`: keys sorted, no spaces, UTF-8), so it binds the digest,
the names and the signer's key text, and a package signature can never pass as an
index signature (different domain).

Policy: a signature that is present but wrong, or a digest that does not match, is
refused under every profile (that is tampering). A missing signature or an untrusted
signer is refused under the secure profile (``require_trusted=True``) and only warned
about under the basic one: the warnings are returned and logged on ``aif.store``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aif.errors import AIFError, PackageSignatureError, UntrustedKey
from aif.security.signing import sign_document, signature_valid

log = logging.getLogger("aif.store")

PACKAGE_DOMAIN = b"aif-package-v1\n"
INDEX_DOMAIN = b"aif-index-v1\n"
SIGNATURE_FORMAT = 1
#: A signature document is a few hundred bytes; anything bigger is not one.
MAX_SIGNATURE_BYTES = 16 * 1024


class SignatureDoc(BaseModel):
    """The fields of a ``.sig`` file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = SIGNATURE_FORMAT
    name: str
    version: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    encrypted: bool = False
    key: str
    signature: str


@dataclass(frozen=True)
class Verified:
    """What verification found: who signed, whether we trust them, what to warn about."""

    sha256: str
    signer: str | None = None
    signer_name: str | None = None
    trusted: bool = False
    warnings: list[str] = field(default_factory=list)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signed_fields(doc: SignatureDoc) -> dict[str, Any]:
    return doc.model_dump(exclude={"signature"})


def sign_file(
    domain: bytes,
    data: bytes,
    key: Ed25519PrivateKey,
    *,
    name: str,
    version: str,
    file: str,
    encrypted: bool = False,
) -> bytes:
    """The ``.sig`` document (JSON bytes) of ``data`` as stored under ``file``."""
    from aif.security.keys import format_public_key

    unsigned = SignatureDoc(
        name=name,
        version=version,
        file=file,
        sha256=sha256_hex(data),
        encrypted=encrypted,
        key=format_public_key(key.public_key()),
        signature="",
    )
    signature = sign_document(key, domain, _signed_fields(unsigned))
    doc = unsigned.model_copy(update={"signature": signature})
    return json.dumps(doc.model_dump(), indent=2, sort_keys=True).encode() + b"\n"


def parse_signature(raw: bytes, where: str) -> SignatureDoc:
    """A ``.sig`` document, or PackageSignatureError naming ``where``."""
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise PackageSignatureError(f"{where}: {len(raw)} bytes is too big for a signature file")
    try:
        return SignatureDoc.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "document"
        raise PackageSignatureError(
            f"{where} is not a valid signature file ({loc}: {first['msg']}); "
            "fetch it again or ask the publisher to re-publish"
        ) from exc


def check_signature(domain: bytes, digest: str, raw_sig: bytes, where: str) -> SignatureDoc:
    """Parse ``raw_sig`` and check it signs a file of SHA-256 ``digest`` (hex).

    Taking the digest, not the bytes, lets an installed package be re-checked without
    keeping the archive: its recorded digest is checked against the kept signature.
    """
    from aif.security.keys import parse_public_key

    doc = parse_signature(raw_sig, where)
    if doc.sha256 != digest:
        raise PackageSignatureError(
            f"{where}: the file's SHA-256 is {digest} but its signature is for {doc.sha256}; "
            "the file was altered or truncated: do not use it, fetch it again"
        )
    try:
        kind, public = parse_public_key(doc.key)
    except AIFError as exc:
        raise PackageSignatureError(
            f"{where}: signer key {doc.key!r} does not parse: {exc}"
        ) from exc
    if kind != "ed25519" or not isinstance(public, Ed25519PublicKey):
        raise PackageSignatureError(f"{where}: signer key {doc.key!r} is not an ed25519 key")
    if not signature_valid(public, domain, _signed_fields(doc), doc.signature):
        raise PackageSignatureError(
            f"{where}: the signature by {doc.key} does not verify; the file or its "
            "signature was altered: do not use it, fetch both again"
        )
    return doc


def trusted_name(key_text: str, trusted: Mapping[str, Ed25519PublicKey]) -> str | None:
    """The name under which ``key_text`` is trusted, or None."""
    from aif.security.keys import format_public_key

    for name, public in trusted.items():
        if format_public_key(public) == key_text:
            return name
    return None


def apply_policy(
    what: str,
    doc: SignatureDoc | None,
    sha256: str,
    trusted: Mapping[str, Ed25519PublicKey],
    require_trusted: bool,
) -> Verified:
    """Trust decision for a checked signature (``doc``) or a missing one (None).

    Secure (``require_trusted``): refuse a missing signature (PackageSignatureError) or
    an untrusted signer (UntrustedKey). Basic: warn, log and go on.
    """
    warnings: list[str] = []
    if doc is None:
        message = f"{what} is not signed; anybody could have made or changed it"
        if require_trusted:
            raise PackageSignatureError(
                f"{message}. The secure profile uses only packages signed by a trusted "
                "publisher: ask the publisher to publish with `aif store publish` "
                "(it signs with their `aif keys init` identity)"
            )
        warnings.append(message)
        return _warned(Verified(sha256=sha256, warnings=warnings))
    name = trusted_name(doc.key, trusted)
    if name is None:
        hint = f"if you trust its publisher, run `aif keys trust NAME {doc.key}`"
        if require_trusted:
            raise UntrustedKey(
                f"{what} is signed by {doc.key}, which is not a trusted publisher key; {hint}"
            )
        warnings.append(f"{what} is signed by untrusted key {doc.key} ({hint})")
    return _warned(
        Verified(
            sha256=sha256,
            signer=doc.key,
            signer_name=name,
            trusted=name is not None,
            warnings=warnings,
        )
    )


def _warned(verified: Verified) -> Verified:
    for warning in verified.warnings:
        log.warning("%s", warning)
    return verified
