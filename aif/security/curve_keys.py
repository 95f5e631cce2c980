"""CURVE key material and its text: pairs, a run's channel keys, ZAP domains.

What both ends of a CURVE socket and the Gatekeeper share, without any socket: the
``curve:`` + Z85 text users see and trust (``aif keys``), the pair types, and the ZAP
domain names (one per kind of server). ``aif.security.curve`` sets sockets up with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import zmq
from zmq.utils import z85

from aif.errors import ConfigError

#: ZAP domain of the User API and the C2C API (clients and peer controllers).
USER_API_DOMAIN = "aif-user-api"
#: ZAP domain of the controller's tcp AIM API (remote hosts, peers' hosts).
AIM_API_DOMAIN = "aif-aim-api"
#: The name a controller's own key has in its allow-lists.
OWN_KEY_NAME = "(this controller)"
_Z85_KEY_LENGTH = 40


def run_domain(run_id: str) -> str:
    """The ZAP domain of one secure run's tcp channels."""
    return f"aif-run-{run_id}"


@dataclass(frozen=True)
class CurvePair:
    """One end's CURVE key pair, Z85 (40 characters each). ``repr`` hides the secret."""

    public: bytes
    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> CurvePair:
        """A fresh pair (a secure run's channel keys)."""
        require_curve()
        public, secret = zmq.curve_keypair()
        return cls(public, secret)


@dataclass(frozen=True)
class CurveKeys:
    """A secure run's channel keys: the pair every AIM of the run holds, and its domain.

    Readers serve with the pair and let in only its public key; writers connect with
    the pair, the server key being that same public key.
    """

    pair: CurvePair
    domain: str

    @classmethod
    def from_text(cls, public: str, secret: str, domain: str) -> CurveKeys:
        """From the Z85 text of ``aim_api.ChannelKeys``."""
        return cls(CurvePair(public.encode("ascii"), secret.encode("ascii")), domain)

    @classmethod
    def of(cls, keys: KeysText | None) -> CurveKeys | None:
        """``Setup.channel_keys`` as channels take them; None (a basic run) stays None."""
        return None if keys is None else cls.from_text(keys.public, keys.secret, keys.domain)


class KeysText(Protocol):
    """Channel keys as Z85 text (``aim_api.ChannelKeys``, which this module cannot import)."""

    @property
    def public(self) -> str: ...
    @property
    def secret(self) -> str: ...
    @property
    def domain(self) -> str: ...


def require_curve() -> None:
    """Raise ``ConfigError`` when this libzmq was built without CURVE."""
    if not zmq.has("curve"):
        raise ConfigError(
            f"this ZeroMQ (libzmq {zmq.zmq_version()}) has no CURVE support, which the secure "
            "profile needs; install a pyzmq wheel with bundled libzmq "
            "(pip install --force-reinstall pyzmq) and check with `aif doctor`"
        )


def key_text(z85_public: bytes) -> str:
    """``curve:`` + the Z85 text: how keys are shown and trusted (``aif keys``)."""
    return "curve:" + z85_public.decode("ascii")


def trust_command(z85_public: bytes) -> str:
    """The command that trusts this key, quoted for a shell: Z85 has ``&``, ``$``, ``(``...
    but never ``'``, so single quotes always do."""
    return f"aif keys trust NAME '{key_text(z85_public)}'"


def parse_curve_key(text: str | bytes, what: str = "server key") -> bytes:
    """The Z85 public key in ``curve:KEY`` (or the bare 40-character Z85 text)."""
    raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    body = raw.strip().removeprefix("curve:")
    try:
        valid = len(body) == _Z85_KEY_LENGTH and len(z85.decode(body)) == 32
    except (ValueError, KeyError, TypeError):  # z85.decode raises these on bad text
        valid = False
    if not valid:
        raise ConfigError(
            f"{what} {raw[:60]!r} is not a CURVE public key; write curve: followed by the "
            "40-character Z85 key that `aif keys show` prints on that machine"
        )
    return body.encode("ascii")
