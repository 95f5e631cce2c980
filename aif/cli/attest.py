"""``aif attest``: ask a controller daemon for a signed report, or verify one.

A verifier sends a fresh nonce, gets back the report signed with the controller's
Ed25519 key, and checks it against that key (``aif keys show`` on the controller),
the nonce, and the AIM digests it expects (``aif.security.attestation``)::

    aif attest -o report.json                 # prints the nonce it used on stderr
    aif attest --verify report.json --key lab-3 --nonce N --expect digests.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aif.cli.common import EXIT_FAILED, EXIT_OK
from aif.errors import AttestationError, ConfigError


def cmd_attest(args: argparse.Namespace) -> int:
    """Get a report from the daemon, or verify one (``--verify FILE``)."""
    if args.verify:
        return _verify(args)
    from aif.cli.common import connect
    from aif.security.attestation import new_nonce

    nonce = args.nonce or new_nonce()
    with connect(args) as client:
        envelope = client.call("attest", nonce=nonce)
    text = json.dumps(envelope, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        report = envelope["report"]
        print(
            f"wrote {args.output}: aif {report['aif']}, profile {report['profile']}, "
            f"{len(report['aims'])} AIM implementation(s), nonce {nonce}",
            file=sys.stderr,
        )
    else:
        print(text)
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from aif.security.attestation import verify_report

    if not args.key:
        raise ConfigError(
            "--verify needs --key: the controller's Ed25519 key (ed25519:... as `aif keys "
            "show` prints it there) or the NAME you trusted it under (`aif keys trust`)"
        )
    envelope = _read_json(Path(args.verify), "report")
    expected = _expected(Path(args.expect)) if args.expect else None
    try:
        report = verify_report(
            envelope,
            _controller_key(args),
            nonce=args.nonce,
            expected=expected,
            max_age=args.max_age,
        )
    except AttestationError as exc:
        print(f"aif: attestation FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    checked = "digests checked" if expected is not None else "digests not checked (no --expect)"
    print(
        f"verified: {report['controller']} on {report['host']}, aif {report['aif']}, "
        f"profile {report['profile']}, {len(report['aims'])} AIM implementation(s), {checked}"
    )
    return EXIT_OK


def _controller_key(args: argparse.Namespace) -> Any:
    """``--key`` as an Ed25519 public key: key text, or a trusted name."""
    from aif.cli.common import state_dir_of
    from aif.security.keys import KeyRing, parse_public_key

    text: str = args.key
    if text.startswith("ed25519:"):
        return parse_public_key(text)[1]
    publishers = KeyRing(state_dir_of(args)).publishers()
    if text not in publishers:
        known = ", ".join(sorted(publishers)) or "none"
        raise ConfigError(
            f"--key {text!r} is neither an ed25519:... key nor the name of a trusted Ed25519 "
            f"key (trusted: {known}); `aif keys trust NAME ed25519:...` adds one"
        )
    return publishers[text]


def _expected(path: Path) -> dict[str, str]:
    """Expected digests: ``{type or class: digest}``, or a report whose AIMs to pin."""
    data = _read_json(path, "expected digests")
    if isinstance(data, dict) and isinstance(data.get("report"), dict):
        aims = data["report"].get("aims", [])
        return {str(a.get("class")): str(a.get("digest")) for a in aims if isinstance(a, dict)}
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {str(k): v for k, v in data.items()}
    raise ConfigError(
        f"{path}: expected digests are a JSON object {{TYPE_OR_CLASS: 'sha256:...'}} or a "
        "report from `aif attest` whose AIMs to pin"
    )


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the {what} file {path} is not JSON: {exc}") from exc


def add_commands(sub: Any) -> None:
    """Add ``aif attest`` to ``aif``'s subparsers."""
    from aif.cli.common import add_target

    p = sub.add_parser(
        "attest",
        help="get a controller's signed attestation report, or verify one (--verify)",
        description="Without --verify: ask the daemon for a report signed with its identity "
        "key: aif version, profile, and the digest of every AIM implementation it loaded. "
        "With --verify FILE: check such a report.",
    )
    add_target(p, json_flag=False)
    p.add_argument("--nonce", metavar="HEX", help="the challenge (default: a fresh random one)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report here, not stdout")
    p.add_argument("--verify", metavar="FILE", help="verify this report instead")
    p.add_argument(
        "--key", metavar="KEY|NAME", help="with --verify: the controller's ed25519:... key"
    )
    p.add_argument(
        "--expect",
        metavar="FILE",
        help="with --verify: JSON {TYPE_OR_CLASS: DIGEST}, or an earlier report to pin",
    )
    p.add_argument("--max-age", type=float, metavar="S", help="with --verify: refuse older reports")
    p.set_defaults(func=cmd_attest)
