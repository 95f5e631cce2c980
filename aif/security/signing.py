"""Detached Ed25519 signatures over canonical JSON, with a domain per kind of document.

Why a domain: the same key signs packages, indexes and attestation reports. Each
signature covers ``domain + canonical JSON``, so a signature made for one kind of
document never verifies as another (a package signature replayed as a report).

Canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` in UTF-8: the same document always gives the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def canonical_json(document: Any) -> bytes:
    """The one byte string a JSON document signs as."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_document(key: Ed25519PrivateKey, domain: bytes, document: Mapping[str, Any]) -> str:
    """The base64 Ed25519 signature of ``document`` under ``domain``."""
    return base64.b64encode(key.sign(domain + canonical_json(document))).decode("ascii")


def signature_valid(
    key: Ed25519PublicKey, domain: bytes, document: Mapping[str, Any], signature: str
) -> bool:
    """True when ``signature`` (base64) is ``key``'s signature of ``document`` under ``domain``.

    Malformed base64 or a signature of the wrong length is simply not valid.
    """
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, domain + canonical_json(document))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True
