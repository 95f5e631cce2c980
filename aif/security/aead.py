"""Authenticated encryption: the algorithms aif uses and one-shot sealed blobs.

This module holds what every encrypted format of aif shares (the two AEAD algorithms,
their header byte, key checks, the one wording of an authentication failure) and the
one-shot format. The chunked STREAM format for big objects, built on these, is
``aif.security.stream``.

**Sealed blob** (``seal`` / ``open_sealed``), for small messages and package payloads::

    0      4   5   6                 18
    +------+---+---+-----------------+--------------------------+
    | AIFE | v | a |  nonce (12 B)   | ciphertext || tag (16 B) |
    +------+---+---+-----------------+--------------------------+
      magic  version 1, algorithm byte (1 AES-256-GCM, 2 ChaCha20-Poly1305)

The 18 header bytes, then the caller's AAD, are the associated data, so the algorithm
byte cannot be swapped to make a blob "decrypt" under another cipher. A sealed blob is
held whole in memory twice (ciphertext and plaintext); anything big goes through
``aif.security.stream`` instead.
"""

from __future__ import annotations

import os
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from aif.errors import IntegrityError, SecurityError

Algorithm = Literal["aes-256-gcm", "chacha20-poly1305"]
#: Algorithm byte as stored in headers.
ALGORITHM_IDS: dict[Algorithm, int] = {"aes-256-gcm": 1, "chacha20-poly1305": 2}
_ALGORITHM_NAMES: dict[int, Algorithm] = {v: k for k, v in ALGORITHM_IDS.items()}

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
VERSION = 1

SEALED_MAGIC = b"AIFE"
SEALED_HEADER_SIZE = 4 + 1 + 1 + NONCE_SIZE

#: An AEAD cipher object of either algorithm.
Cipher = AESGCM | ChaCha20Poly1305
#: What the encrypt and decrypt functions take as data.
Buffer = bytes | bytearray | memoryview


def new_key() -> bytes:
    """32 random bytes from the OS: a key for either algorithm."""
    return os.urandom(KEY_SIZE)


def cipher_for(key: bytes, algorithm: Algorithm) -> Cipher:
    """The AEAD of ``algorithm`` under ``key``; SecurityError naming a bad key or algorithm.

    Checked here, not left to ``cryptography``, so the message says what a key is and
    which algorithms exist instead of a bare ``ValueError``.
    """
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise SecurityError(f"an encryption key is {KEY_SIZE} bytes, got {size}; use new_key()")
    if algorithm == "aes-256-gcm":
        return AESGCM(bytes(key))
    if algorithm == "chacha20-poly1305":
        return ChaCha20Poly1305(bytes(key))
    raise SecurityError(
        f"unknown algorithm {algorithm!r}; use one of {', '.join(sorted(ALGORITHM_IDS))}"
    )


def algorithm_of(byte: int, what: str) -> Algorithm:
    """The algorithm of a header's algorithm byte; IntegrityError naming ``what`` if unknown."""
    try:
        return _ALGORITHM_NAMES[byte]
    except KeyError:
        raise IntegrityError(
            f"{what}: unknown algorithm byte {byte} in its header; the header is damaged "
            "or it was written by a newer aif"
        ) from None


def authentication_failed(what: str) -> IntegrityError:
    """The one error for ciphertext that does not authenticate, listing every cause.

    AEAD cannot tell a wrong key from an edited byte, so the message names them all
    and the two fixes that apply to each.
    """
    return IntegrityError(
        f"{what} failed authentication: it was altered, truncated, swapped with another "
        "object, moved to another scope, or encrypted under another key; restore it "
        "from a copy or delete it"
    )


def seal(key: bytes, plaintext: Buffer, aad: bytes, algorithm: Algorithm = "aes-256-gcm") -> bytes:
    """Encrypt and authenticate ``plaintext``; ``aad`` is bound but not stored."""
    cipher = cipher_for(key, algorithm)
    header = SEALED_MAGIC + bytes((VERSION, ALGORITHM_IDS[algorithm])) + os.urandom(NONCE_SIZE)
    return header + cipher.encrypt(header[6:], plaintext, header + aad)


def open_sealed(key: bytes, blob: Buffer, aad: bytes, *, what: str = "sealed data") -> bytes:
    """The plaintext of a ``seal`` blob; IntegrityError when anything does not match."""
    view = memoryview(blob).cast("B")
    if len(view) < SEALED_HEADER_SIZE + TAG_SIZE or view[:4] != SEALED_MAGIC:
        raise IntegrityError(
            f"{what} is not an aif sealed blob (no {SEALED_MAGIC.decode()} header or too "
            f"short: {len(view)} bytes); it was damaged or is not encrypted data"
        )
    if view[4] != VERSION:
        raise IntegrityError(
            f"{what} has format version {view[4]}; this aif reads version {VERSION}"
        )
    cipher = cipher_for(key, algorithm_of(view[5], what))
    header = bytes(view[:SEALED_HEADER_SIZE])
    try:
        return cipher.decrypt(header[6:], view[SEALED_HEADER_SIZE:], header + aad)
    except InvalidTag as exc:
        raise authentication_failed(what) from exc
