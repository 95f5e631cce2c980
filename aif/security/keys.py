"""This installation's identity and the keys it trusts, under ``STATE_DIR/keys``.

One identity holds three key pairs, each for one job:

* Ed25519 signs (Store packages, attestation reports);
* X25519 derives storage keys (``aif.security.exchange``) and receives encrypted packages;
* CURVE (ZeroMQ's Curve25519, Z85 text) encrypts and authenticates tcp channels.

``identity.json`` (how every key file is written and checked: ``aif.security.key_files``)::

    {"version": 1,
     "public": {"ed25519": "ed25519:..", "x25519": "x25519:..", "curve": "curve:.."},
     "protection": "none" | "scrypt",
     "kdf": {"salt": b64, "n": 32768, "r": 8, "p": 1} | null,
     "nonce": b64 | null,
     "secret": b64 of the private JSON, or of its AES-256-GCM ciphertext}

With a passphrase, the private JSON is encrypted under scrypt(passphrase) with the
``public`` section as associated data, so the public keys cannot be swapped under it.
Loading the private identity refuses a file or directory that group or others may
access, as ssh does: a key others can read is no longer a secret.

``KeyRing`` is the one entry point: the identity here, the trusted keys through
``aif.security.trust``. The key text forms (``aif.security.key_formats``) and the
trust list's names are re-exported, so ``from aif.security.keys import ...`` keeps
giving all of them.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import zmq
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from zmq.utils import z85

from aif.errors import ConfigError, KeyFileError
from aif.security.key_files import (
    FORMAT_VERSION,
    IDENTITY_FILE,
    STORAGE_FILE,
    TRUSTED_FILE,
    b64,
    check_private,
    read_json,
    unb64,
    write_private_file,
)
from aif.security.key_formats import (
    KINDS,
    KeyKind,
    PublicKey,
    curve_text,
    format_public_key,
    parse_public_key,
)
from aif.security.trust import NAME_RULE, TrustedKey, TrustList

__all__ = [
    "KINDS",
    "NAME_RULE",
    "PASSPHRASE_ENV",
    "Identity",
    "KeyKind",
    "KeyRing",
    "PublicIdentity",
    "PublicKey",
    "TrustedKey",
    "curve_text",
    "format_public_key",
    "parse_public_key",
]

PASSPHRASE_ENV = "AIF_PASSPHRASE"
SCRYPT_N, SCRYPT_R, SCRYPT_P, SALT_SIZE = 2**15, 8, 1, 16


@dataclass(frozen=True)
class PublicIdentity:
    """The public half of an identity: what others trust."""

    signing: Ed25519PublicKey
    exchange: X25519PublicKey
    curve: bytes  # Z85 text

    def texts(self) -> dict[KeyKind, str]:
        """The three public keys as text, by kind."""
        return {
            "ed25519": format_public_key(self.signing),
            "x25519": format_public_key(self.exchange),
            "curve": curve_text(self.curve),
        }


@dataclass(frozen=True)
class Identity:
    """An identity's private keys (never printed: the secrets are left out of ``repr``)."""

    signing: Ed25519PrivateKey = field(repr=False)
    exchange: X25519PrivateKey = field(repr=False)
    curve_public: bytes
    curve_secret: bytes = field(repr=False)  # Z85 text

    @classmethod
    def generate(cls) -> Identity:
        """Three fresh key pairs."""
        if not zmq.has("curve"):
            raise ConfigError(
                "this libzmq was built without CURVE; install pyzmq from its wheels, which have it"
            )
        curve_public, curve_secret = zmq.curve_keypair()
        return cls(
            Ed25519PrivateKey.generate(), X25519PrivateKey.generate(), curve_public, curve_secret
        )

    def public(self) -> PublicIdentity:
        """The public half."""
        return PublicIdentity(
            self.signing.public_key(), self.exchange.public_key(), self.curve_public
        )


def _scrypt_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


class KeyRing:
    """The identity and trusted keys of one state directory (``STATE_DIR/keys``)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "keys"
        self.identity_path = self.dir / IDENTITY_FILE
        self.trusted_path = self.dir / TRUSTED_FILE
        self.trust_list = TrustList(self.trusted_path)

    def __repr__(self) -> str:
        return f"KeyRing({str(self.dir)!r})"

    def exists(self) -> bool:
        """True when an identity has been created."""
        return self.identity_path.is_file()

    def check_init(self, *, force: bool = False) -> None:
        """Raise what ``init(force=force)`` would refuse for, before a passphrase is asked.

        An identity is replaced only with ``force``, and never while secure storage
        encrypted under keys derived from it exists: a new X25519 key derives other
        storage keys, so those objects could never be read again. ``aif keys rotate``
        changes storage keys and keeps the identity.
        """
        if not self.exists():
            return
        if not force:
            raise KeyFileError(
                f"an identity already exists at {self.identity_path}; `aif keys init --force` "
                "replaces it, but storage encrypted under the old keys can then never be read "
                "again and everyone who trusted it must trust the new keys"
            )
        storage = self._encrypted_storage()
        if storage:
            state = self.dir.parent
            raise KeyFileError(
                f"refusing to replace the identity at {self.identity_path}: secure storage "
                f"in {state} is encrypted under keys derived from it ({'; '.join(storage)}) "
                "and would become unreadable for good. `aif keys rotate` is the way to change "
                "storage keys (it keeps the identity); to really start over, first move "
                f"{state / 'secure'} and {self.dir / STORAGE_FILE} out of the state directory"
            )

    def _encrypted_storage(self) -> list[str]:
        """What in the state directory only this identity's keys can decrypt, described."""
        found: list[str] = []
        storage_file = self.dir / STORAGE_FILE
        if storage_file.exists():
            found.append(f"storage keys file {storage_file}")
        secure = self.dir.parent / "secure"
        if secure.is_dir():
            places: dict[str, int] = {}
            for path in secure.rglob("*"):
                parts = path.relative_to(secure).parts
                if parts[0] != "scratch" and path.is_file():  # scratch holds only plaintext
                    place = "/".join(parts[:2] if parts[0] == "aims" else parts[:1])
                    places[place] = places.get(place, 0) + 1
            if places:
                listed = ", ".join(f"{place}: {n}" for place, n in sorted(places.items()))
                found.append(f"{sum(places.values())} encrypted file(s) under {secure} ({listed})")
        return found

    def init(self, passphrase: str | None = None, *, force: bool = False) -> PublicIdentity:
        """Create a new identity; with ``passphrase``, its private keys are encrypted.

        Refuses to replace one without ``force``, or while secure storage depends on it
        (``check_init``).
        """
        self.check_init(force=force)
        if passphrase is not None and passphrase == "":
            raise KeyFileError("an empty passphrase protects nothing; give one or leave it out")
        identity = Identity.generate()
        public = identity.public()
        texts = public.texts()
        private = json.dumps(
            {
                "ed25519": b64(identity.signing.private_bytes_raw()),
                "x25519": b64(identity.exchange.private_bytes_raw()),
                "curve": identity.curve_secret.decode("ascii"),
            },
            sort_keys=True,
        ).encode()
        doc: dict[str, Any] = {"version": FORMAT_VERSION, "public": texts}
        if passphrase is None:
            doc.update(protection="none", kdf=None, nonce=None, secret=b64(private))
        else:
            salt, nonce = os.urandom(SALT_SIZE), os.urandom(12)
            key = _scrypt_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
            sealed = AESGCM(key).encrypt(nonce, private, self._aad(texts))
            kdf = {"salt": b64(salt), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
            doc.update(protection="scrypt", kdf=kdf, nonce=b64(nonce), secret=b64(sealed))
        write_private_file(self.identity_path, json.dumps(doc, indent=2).encode() + b"\n")
        return public

    @staticmethod
    def _aad(texts: dict[KeyKind, str]) -> bytes:
        return b"aif-identity-v1\n" + json.dumps(texts, sort_keys=True).encode()

    def _load(self) -> dict[str, Any]:
        try:
            return read_json(self.identity_path, "identity file")
        except FileNotFoundError:
            raise KeyFileError(
                f"no identity at {self.identity_path}; run `aif keys init` "
                f"(with --state-dir {self.dir.parent} if that is not the default)"
            ) from None

    def _public_texts(self, doc: dict[str, Any]) -> dict[KeyKind, str]:
        texts = doc.get("public")
        if not isinstance(texts, dict) or set(texts) != set(KINDS):
            raise KeyFileError(f"{self.identity_path} has no valid 'public' section; restore it")
        for kind in KINDS:
            try:
                parsed_kind, _ = parse_public_key(str(texts[kind]))
            except ConfigError as exc:
                raise KeyFileError(f"{self.identity_path}: public {kind} key: {exc}") from exc
            if parsed_kind != kind:
                raise KeyFileError(f"{self.identity_path}: public {kind} key is a {parsed_kind}")
        return cast(dict[KeyKind, str], texts)

    def protected(self) -> bool:
        """True when the private keys are passphrase-protected."""
        return self._load().get("protection") == "scrypt"

    def public(self) -> PublicIdentity:
        """The public keys (no passphrase needed)."""
        texts = self._public_texts(self._load())
        return PublicIdentity(
            cast(Ed25519PublicKey, parse_public_key(texts["ed25519"])[1]),
            cast(X25519PublicKey, parse_public_key(texts["x25519"])[1]),
            cast(bytes, parse_public_key(texts["curve"])[1]),
        )

    def identity(self, passphrase: str | None = None) -> Identity:
        """The private keys: ``passphrase``, else ``$AIF_PASSPHRASE``, else a prompt on a tty."""
        path = self.identity_path
        doc = self._load()
        check_private(path)
        texts = self._public_texts(doc)
        secret = unb64(doc.get("secret"), path, "secret")
        protection = doc.get("protection")
        if protection == "scrypt":
            passphrase = self._passphrase(passphrase)
            kdf = doc.get("kdf")
            if not isinstance(kdf, dict):
                raise KeyFileError(f"{path}: 'kdf' is missing; restore the file")
            n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
            if not (
                isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
                and 2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16
            ):  # fmt: skip
                raise KeyFileError(f"{path}: scrypt parameters {kdf} are out of range; restore it")
            key = _scrypt_key(passphrase, unb64(kdf.get("salt"), path, "kdf.salt"), n, r, p)
            nonce = unb64(doc.get("nonce"), path, "nonce")
            try:
                secret = AESGCM(key).decrypt(nonce, secret, self._aad(texts))
            except (InvalidTag, ValueError) as exc:
                raise KeyFileError(
                    f"wrong passphrase for {path} (or the file was altered); try again, or "
                    f"check ${PASSPHRASE_ENV}"
                ) from exc
        elif protection != "none":
            raise KeyFileError(f"{path}: unknown protection {protection!r}; restore the file")
        identity = self._decode_private(secret)
        if identity.public().texts() != texts:
            raise KeyFileError(
                f"{path}: its public keys do not belong to its private keys (the file was "
                "edited); restore it or create a new identity with `aif keys init --force`"
            )
        return identity

    def _passphrase(self, given: str | None) -> str:
        if given is not None:
            return given
        from_env = os.environ.get(PASSPHRASE_ENV)
        if from_env:
            return from_env
        if sys.stdin is not None and sys.stdin.isatty():
            return getpass.getpass(f"passphrase for {self.identity_path}: ")
        raise KeyFileError(
            f"the identity {self.identity_path} is passphrase-protected and there is no "
            f"terminal to ask on; set ${PASSPHRASE_ENV}"
        )

    def _decode_private(self, secret: bytes) -> Identity:
        path = self.identity_path
        try:
            fields = json.loads(secret)
            signing = Ed25519PrivateKey.from_private_bytes(
                unb64(fields["ed25519"], path, "ed25519")
            )
            exchange = X25519PrivateKey.from_private_bytes(unb64(fields["x25519"], path, "x25519"))
            curve_secret = str(fields["curve"]).encode("ascii")
            curve_public = zmq.curve_public(curve_secret)
            if len(z85.decode(curve_secret)) != 32:
                raise ValueError("the CURVE secret is not 32 bytes")
        except (ValueError, KeyError, TypeError, zmq.ZMQError) as exc:
            raise KeyFileError(
                f"{path}: the private keys do not decode ({exc}); restore it"
            ) from exc
        return Identity(signing, exchange, curve_public, curve_secret)

    # -- trusted keys (``aif.security.trust``) ------------------------------------------

    def trust(self, name: str, key_text: str, endpoint: str | None = None) -> TrustedKey:
        """Trust ``key_text`` under ``name``, replacing a key of the same name and kind.

        ``endpoint`` (``tcp://HOST:PORT``, CURVE keys only) also makes it the key the
        server at that endpoint must prove it holds (``server_key_for``).
        """
        return self.trust_list.trust(name, key_text, endpoint)

    def untrust(self, name: str) -> int:
        """Forget every key trusted under ``name``; how many there were."""
        return self.trust_list.untrust(name)

    def trusted(self, kind: KeyKind | None = None) -> list[TrustedKey]:
        """The trusted keys (of one kind), in the order they were trusted."""
        return [k for k in self.trust_list.entries() if kind is None or k.kind == kind]

    def publishers(self) -> dict[str, Ed25519PublicKey]:
        """Trusted signing keys by name: whose Store packages to accept."""
        return {k.name: cast(Ed25519PublicKey, k.key) for k in self.trusted("ed25519")}

    def recipients(self) -> dict[str, X25519PublicKey]:
        """Trusted encryption keys by name: whom packages may be encrypted for."""
        return {k.name: cast(X25519PublicKey, k.key) for k in self.trusted("x25519")}

    def clients(self) -> dict[str, bytes]:
        """Trusted CURVE keys by name (Z85): who may connect to CURVE sockets."""
        return {k.name: cast(bytes, k.key) for k in self.trusted("curve")}

    def server_key_for(self, endpoint: str) -> bytes | None:
        """The Z85 public key of the CURVE key trusted for the server at ``endpoint``.

        Matched after normalising (host case, trailing slashes, IPv6 form, port zeros:
        ``aif.security.trust.normalise_endpoint``), never by resolving names. None when
        no key is bound to it, or ``endpoint`` is not ``tcp://HOST:PORT`` at all.
        """
        return self.trust_list.server_key_for(endpoint)
