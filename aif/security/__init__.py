"""The secure profile's building blocks.

- ``aead``: the AEAD algorithms aif uses, and one-shot sealed blobs.
- ``stream`` / ``stream_reader``: the chunked STREAM format for big objects, writing it
  and reading it back (whole, or seekable and decrypted on demand).
- ``keys``: this installation's identity (Ed25519, X25519, CURVE) and ``KeyRing``, the
  entry point to it and to the trusted keys; re-exports the key texts and ``TrustedKey``.
- ``key_formats``: the one text form of each kind of public key, and its parser.
- ``key_files``: owner-only, atomically written files under ``STATE_DIR/keys``.
- ``trust``: the trusted keys (``trusted.json``), CURVE keys bound to server endpoints.
- ``exchange``: per-scope storage keys derived by X25519 + HKDF, their rotation, and the
  storage-use lock that keeps a rotation from running under a live controller.
- ``curve``: CURVE encryption and client allow-lists for ZeroMQ sockets.

- ``signing``, ``attestation``, ``gatekeeper``, ``curve_keys``: domain-separated
  signatures, the daemon's signed attestation report, the ZAP authenticator, CURVE keys.

Secure storage itself is ``aif.storage.secure``; the ``aif keys`` commands are
``aif.cli.keys``. The whole design, file formats included, is in ``docs/security.md``.

Public: the names in ``__all__`` (imported on first use, so that an AIM host, which
needs only ``curve``, loads no ``cryptography``). May import: ``aif.errors`` only.
"""

import typing

from aif import lazy_exports as _lazy

if typing.TYPE_CHECKING:
    from aif.security.attestation import build_report, new_nonce, verify_report
    from aif.security.exchange import StorageInUse, StorageKeys, StorageRotationLock
    from aif.security.keys import Identity, KeyRing, curve_text

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "Identity": "aif.security.keys",
        "KeyRing": "aif.security.keys",
        "StorageInUse": "aif.security.exchange",
        "StorageKeys": "aif.security.exchange",
        "StorageRotationLock": "aif.security.exchange",
        "build_report": "aif.security.attestation",
        "curve_text": "aif.security.keys",
        "new_nonce": "aif.security.attestation",
        "verify_report": "aif.security.attestation",
    },
)

__all__ = [
    "Identity",
    "KeyRing",
    "StorageInUse",
    "StorageKeys",
    "StorageRotationLock",
    "build_report",
    "curve_text",
    "new_nonce",
    "verify_report",
]
