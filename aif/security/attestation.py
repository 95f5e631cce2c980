"""Attestation: a controller's signed statement of what it is and what code it runs.

``aif attest`` asks a controller for a report; the controller signs, with its Ed25519
identity key, its aif version, its profile, the verifier's nonce and the digest of
every AIM implementation it has loaded. ``aif attest --verify`` checks a report
against the controller's public key, the nonce and the digests the verifier expects,
and lists every mismatch::

    {"report": {"format": "aif-attestation-v1", "aif": "0.1.0", "profile": "secure",
                "controller": "ed25519:...", "host": "lab-3", "time": 1795000000.0,
                "nonce": "9f2c...", "aims": [{"type": "analog-simulator",
                "class": "aif.aims.analog.simulator:AnalogSimulator",
                "source": "aif", "digest": "sha256:..."}, ...]},
     "signature": "<base64 Ed25519 over b'aif-attestation-v1\\n' + canonical JSON>"}

A digest is the SHA-256 of what was loaded: for an AIM from a Store package, the
package archive's (as its index lists it); for any other, of the source file of the
module that defines the class. A verifier pins the digests it trusts (``--expect``),
so a changed implementation shows up as a mismatch, naming the AIM.
"""

from __future__ import annotations

import hashlib
import inspect
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aif.errors import AttestationError
from aif.security.keys import Identity, format_public_key
from aif.security.signing import sign_document, signature_valid

FORMAT = "aif-attestation-v1"
_DOMAIN = FORMAT.encode() + b"\n"
_FILE_DIGESTS: dict[Path, str] = {}


@dataclass(frozen=True)
class LoadedAIM:
    """One AIM implementation a controller loaded: its type, class, origin and digest."""

    type: str
    cls: str
    source: str
    digest: str

    def as_json(self) -> dict[str, str]:
        """The entry a report lists."""
        return {"type": self.type, "class": self.cls, "source": self.source, "digest": self.digest}


def new_nonce() -> str:
    """A fresh random challenge (hex) that a verifier sends and then expects back."""
    return secrets.token_hex(16)


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file, cached per path for the life of the process."""
    path = path.resolve()
    if path not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _FILE_DIGESTS[path] = "sha256:" + digest.hexdigest()
    return _FILE_DIGESTS[path]


def class_digest(cls: type) -> str:
    """The digest of the source file that defines ``cls`` ("unknown" when it has none)."""
    try:
        source = inspect.getsourcefile(cls)
    except TypeError:
        source = None
    if source is None or not Path(source).is_file():
        return "unknown"
    return file_digest(Path(source))


def build_report(
    identity: Identity, *, version: str, profile: str, aims: Iterable[LoadedAIM], nonce: str
) -> dict[str, Any]:
    """The signed report: ``{"report": {...}, "signature": base64}``."""
    report = {
        "format": FORMAT,
        "aif": version,
        "profile": profile,
        "controller": format_public_key(identity.signing.public_key()),
        "host": socket.gethostname(),
        "time": time.time(),
        "nonce": nonce,
        "aims": sorted((a.as_json() for a in aims), key=lambda a: (a["type"], a["class"])),
    }
    return {"report": report, "signature": sign_document(identity.signing, _DOMAIN, report)}


def verify_report(
    envelope: Any,
    key: Ed25519PublicKey,
    *,
    nonce: str | None = None,
    expected: Mapping[str, str] | None = None,
    max_age: float | None = None,
) -> dict[str, Any]:
    """Check a signed report; return the report, or raise AttestationError listing why not.

    ``expected`` maps an AIM type or class path to the digest it must have; an AIM
    in the report that ``expected`` does not name is a problem too, since it is code
    nobody vouched for. ``max_age`` (seconds) refuses a report made too long ago.
    """
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("report"), Mapping):
        raise AttestationError(
            'not an attestation report: expected {"report": {...}, "signature": "..."} '
            "as `aif attest` prints it"
        )
    report = dict(envelope["report"])
    signature = envelope.get("signature")
    if report.get("format") != FORMAT:
        raise AttestationError(f"report format is {report.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(signature, str) or not signature_valid(key, _DOMAIN, report, signature):
        raise AttestationError(
            f"the report's signature does not verify with {format_public_key(key)}: it was "
            "altered, or signed by another controller (check the key `aif keys show` "
            "prints on the controller)"
        )
    problems: list[str] = []
    if nonce is not None and report.get("nonce") != nonce:
        problems.append(
            f"nonce is {report.get('nonce')!r}, expected {nonce!r} (a replayed report?)"
        )
    if max_age is not None:
        made = report.get("time")
        if not isinstance(made, (int, float)) or time.time() - made > max_age:
            problems.append(f"the report is older than {max_age:g} s")
    if expected is not None:
        problems += _digest_problems(report.get("aims"), expected)
    if problems:
        raise AttestationError(
            "the report is signed correctly but does not match:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    return report


def _digest_problems(aims: Any, expected: Mapping[str, str]) -> list[str]:
    if not isinstance(aims, list):
        return ["the report has no list of AIMs"]
    problems: list[str] = []
    for entry in aims:
        if not isinstance(entry, Mapping):
            problems.append(f"malformed AIM entry {entry!r}")
            continue
        names = [str(entry.get("type")), str(entry.get("class"))]
        wanted = next((expected[n] for n in names if n in expected), None)
        if wanted is None:
            problems.append(f"AIM {names[0]} ({names[1]}) is loaded but not expected")
        elif entry.get("digest") != wanted:
            problems.append(
                f"AIM {names[0]} ({names[1]}) has digest {entry.get('digest')}, expected {wanted}"
            )
    return problems
