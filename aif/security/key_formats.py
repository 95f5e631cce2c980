"""The one text form of each kind of public key, and its parser.

Public keys travel as text (``aif keys show`` prints them, ``aif keys trust`` takes
them, Store indexes and attestation reports carry them), one format per kind::

    ed25519:<base64url of the 32 raw bytes, no padding>     signing
    x25519:<base64url of the 32 raw bytes, no padding>      encryption, key exchange
    curve:<the 40-character Z85 text>                       ZeroMQ CURVE channels

``parse_public_key`` takes only these, in canonical form, so one key has exactly one
text and comparing texts compares keys. ``aif.security.keys`` re-exports all of it.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from zmq.utils import z85

from aif.errors import ConfigError

KeyKind = Literal["ed25519", "x25519", "curve"]
KINDS: tuple[KeyKind, ...] = ("ed25519", "x25519", "curve")
#: A parsed public key: a cryptography key object, or the Z85 text of a CURVE key.
PublicKey = Ed25519PublicKey | X25519PublicKey | bytes

_B64URL = re.compile(r"[A-Za-z0-9_-]{43}")
_Z85 = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
ACCEPTED = (
    "accepted forms: ed25519:<43 base64url characters> (a signing key), "
    "x25519:<43 base64url characters> (an encryption key), "
    "curve:<40 Z85 characters> (a ZeroMQ CURVE key), as `aif keys show` prints them"
)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def format_public_key(key: Ed25519PublicKey | X25519PublicKey) -> str:
    """``ed25519:...`` or ``x25519:...``, the one text form of a public key."""
    if isinstance(key, Ed25519PublicKey):
        return "ed25519:" + _b64url(key.public_bytes_raw())
    if isinstance(key, X25519PublicKey):
        return "x25519:" + _b64url(key.public_bytes_raw())
    raise ConfigError(f"cannot format {type(key).__name__} as a public key; {ACCEPTED}")


def curve_text(z85_public: bytes) -> str:
    """``curve:`` + the Z85 text of a CURVE public key."""
    return "curve:" + z85_public.decode("ascii")


def public_key_text(key: PublicKey) -> str:
    """The text form of any parsed public key (Z85 bytes are taken as a CURVE key)."""
    return curve_text(key) if isinstance(key, bytes) else format_public_key(key)


def parse_public_key(text: str) -> tuple[KeyKind, PublicKey]:
    """The kind and key of a public key text; ConfigError naming the accepted forms."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    kind, sep, body = text.strip().partition(":")
    if not sep or kind not in KINDS:
        raise ConfigError(f"{shown!r} is not a public key: unknown or missing prefix; {ACCEPTED}")
    if kind == "curve":
        if not _Z85.fullmatch(body):
            raise ConfigError(
                f"{shown!r} is not a CURVE public key: expected 40 Z85 characters after "
                f"'curve:', got {len(body)}; {ACCEPTED}"
            )
        try:
            canonical = z85.encode(z85.decode(body)) == body.encode("ascii")
        except (ValueError, struct.error):
            canonical = False
        if not canonical:
            raise ConfigError(f"{shown!r} is not a valid Z85 CURVE key; {ACCEPTED}")
        return "curve", body.encode("ascii")
    if not _B64URL.fullmatch(body):
        raise ConfigError(
            f"{shown!r} is not an {kind} public key: expected 43 base64url characters "
            f"(no '=' padding) after '{kind}:', got {len(body)}; {ACCEPTED}"
        )
    raw = base64.urlsafe_b64decode(body + "=")
    if _b64url(raw) != body:  # the last character carries bits a 32-byte key never sets
        raise ConfigError(f"{shown!r} is not a canonical {kind} key text; {ACCEPTED}")
    if kind == "ed25519":
        return "ed25519", Ed25519PublicKey.from_public_bytes(raw)
    return "x25519", X25519PublicKey.from_public_bytes(raw)
