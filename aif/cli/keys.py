"""The ``aif keys`` commands: this installation's identity, trusted keys, storage keys.

``init`` creates the identity (``--passphrase`` encrypts it; the passphrase comes from
``$AIF_PASSPHRASE`` or is asked twice), ``show`` prints the three public keys to hand
to others, ``trust`` / ``untrust`` / ``list`` keep the keys this installation trusts
(``trust --endpoint`` binds a CURVE key to the server expected at an endpoint),
``rotate`` moves every secure storage scope to a new key generation; it refuses while a
daemon holds the state directory or any controller uses storage keys.
``ui-client`` issues a client certificate for the secure profile's web UI (HTTPS with
client certificates, ``aif.ui.tls``), ``ui-revoke`` revokes one, ``ui-clients`` lists them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TYPE_CHECKING, Any

from aif.cli.common import EXIT_FAILED, EXIT_OK, arguments_later, print_json, state_dir_of
from aif.errors import KeyFileError

if TYPE_CHECKING:
    from aif.security.keys import KeyRing
    from aif.ui.tls import UICertificates

#: What each public key is for, as ``show`` labels it.
_ROLES = {
    "ed25519": ("signing", "others trust it to accept what this installation signs"),
    "x25519": ("encryption", "others encrypt Store packages and storage for it"),
    "curve": ("channels", "servers allow it on their CURVE-encrypted sockets"),
}


def _new_passphrase() -> str:
    """``$AIF_PASSPHRASE``, else asked twice on the terminal."""
    from aif.security.keys import PASSPHRASE_ENV

    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    if sys.stdin is None or not sys.stdin.isatty():
        raise KeyFileError(
            f"--passphrase needs a terminal to ask on, or the passphrase in ${PASSPHRASE_ENV}"
        )
    first = getpass.getpass("new passphrase: ")
    if first != getpass.getpass("again: "):
        raise KeyFileError("the two passphrases differ; nothing was written, try again")
    return first


def _ring(args: argparse.Namespace) -> KeyRing:
    """The key ring of ``--state-dir``: cryptography loads here, when a keys command runs,
    not when ``aif`` builds its parser."""
    from aif.security.keys import KeyRing

    return KeyRing(state_dir_of(args))


def cmd_keys_init(args: argparse.Namespace) -> int:
    """Create the identity of the state directory."""
    ring = _ring(args)
    ring.check_init(force=args.force)  # refusals come before a passphrase is asked
    passphrase = _new_passphrase() if args.passphrase else None
    public = ring.init(passphrase, force=args.force)
    protection = "passphrase-protected" if passphrase is not None else "not passphrase-protected"
    print(f"identity created at {ring.identity_path} ({protection})")
    for kind, text in public.texts().items():
        print(f"  {_ROLES[kind][0]:<11}{text}")
    return EXIT_OK


def cmd_keys_show(args: argparse.Namespace) -> int:
    """Print the public keys, labelled, ready to copy."""
    ring = _ring(args)
    texts = ring.public().texts()
    if args.json:
        print_json({**texts, "path": str(ring.identity_path), "protected": ring.protected()})
        return EXIT_OK
    protection = "passphrase-protected" if ring.protected() else "not passphrase-protected"
    print(f"# identity {ring.identity_path} ({protection})")
    for kind, text in texts.items():
        role, use = _ROLES[kind]
        print(f"# {role}: {use}")
        print(text)
    return EXIT_OK


def cmd_keys_trust(args: argparse.Namespace) -> int:
    """Trust a public key under a name."""
    ring = _ring(args)
    replaced = any(k.name == args.name for k in ring.trusted())
    added = ring.trust(args.name, args.key, args.endpoint)
    verb = "now trusts" if not replaced else "updated"
    at = f", the server at {added.endpoint}" if added.endpoint else ""
    print(f"{verb} {added.name!r}: {added.text} ({_ROLES[added.kind][0]} key{at})")
    return EXIT_OK


def cmd_keys_untrust(args: argparse.Namespace) -> int:
    """Forget every key trusted under a name."""
    ring = _ring(args)
    removed = ring.untrust(args.name)
    if not removed:
        names = sorted({k.name for k in ring.trusted()})
        known = ", ".join(names) if names else "none"
        print(f"aif: error: no key is trusted as {args.name!r} (trusted: {known})", file=sys.stderr)
        return EXIT_FAILED
    print(f"no longer trusts {args.name!r} ({removed} key{'s' if removed != 1 else ''} removed)")
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    """The trusted keys."""
    trusted = _ring(args).trusted()
    if args.json:
        print_json(
            [
                {"name": k.name, "kind": k.kind, "key": k.text, "endpoint": k.endpoint}
                for k in trusted
            ]
        )
        return EXIT_OK
    if not trusted:
        print("no trusted keys; add one with `aif keys trust NAME KEY`")
        return EXIT_OK
    width = max(len(k.name) for k in trusted)
    for k in trusted:
        at = f"  server at {k.endpoint}" if k.endpoint else ""
        print(f"{k.name:<{width}}  {_ROLES[k.kind][0]:<10}  {k.text}{at}")
    return EXIT_OK


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt every secure storage scope under a new key generation."""
    from aif.daemon.daemon import StateLock
    from aif.security.exchange import StorageKeys, StorageRotationLock
    from aif.security.keys import KeyRing
    from aif.storage.secure import secure_scope_storage, secure_scopes

    state_dir = state_dir_of(args).absolute()
    identity = KeyRing(state_dir).identity()  # before the lock: a wrong passphrase changes nothing
    lock = StateLock(state_dir)
    lock.acquire()  # no daemon may write storage while its keys change
    in_use = StorageRotationLock(state_dir)
    try:
        in_use.acquire()  # nor any `aif run`: none may hold storage keys now
        keys = StorageKeys(state_dir, identity)
        scopes = sorted(set(secure_scopes(state_dir)) | set(keys.scopes()))
        if not scopes:
            print(f"no secure storage in {state_dir}: nothing to rotate")
            return EXIT_OK
        total = 0
        for scope in scopes:
            generation = keys.begin_rotation(scope)
            storage = secure_scope_storage(state_dir, scope, keys.keys_for(scope))
            print(f"{scope}: rotating to key generation {generation}")
            report = storage.rotate(generation, progress=_show_rotated)
            keys.finish_rotation(scope, generation)
            total += report.rotated
            print(
                f"{scope}: {report.rotated} re-encrypted, {report.skipped} already at "
                f"generation {generation}; older keys forgotten"
            )
        print(f"rotated {len(scopes)} scope(s), {total} object(s) re-encrypted")
    finally:
        in_use.release()
        lock.release()
    return EXIT_OK


def _ui_certificates(args: argparse.Namespace) -> UICertificates:
    from aif.ui.tls import UICertificates

    return UICertificates(state_dir_of(args))


def cmd_keys_ui_client(args: argparse.Namespace) -> int:
    """Issue a client certificate for the secure profile's web UI."""
    from pathlib import Path

    certificates = _ui_certificates(args)
    passphrase = _new_passphrase() if args.passphrase else None
    issued = certificates.issue_client(args.name, Path(args.out), passphrase, force=args.force)
    p12 = issued.p12 or issued.certificate.with_suffix(".p12")
    print(f"issued the web UI client certificate {issued.name!r} (sha256 {issued.fingerprint})")
    print(f"  certificate   {issued.certificate}")
    print(f"  private key   {issued.key}")
    if issued.p12 is not None:
        print(f"  for browsers  {issued.p12} (PKCS#12, encrypted with the passphrase)")
    print(f"  the UI's CA   {issued.ca}")
    print("To use it in a browser (docs/ui.md):")
    if issued.p12 is None:
        print(f"  0. make {p12} first: run again with --passphrase --force")
    print(f"  1. import {p12} as your certificate")
    print("     (Chromium: Settings > Privacy and security > Security > Manage certificates >")
    print("     Your certificates > Import; Firefox: Settings > Certificates > Your Certificates)")
    print(f"  2. import {issued.ca}")
    print("     as an authority that identifies websites (Authorities > Import)")
    print(f"Revoke it with `aif keys ui-revoke {issued.name}`.")
    return EXIT_OK


def cmd_keys_ui_revoke(args: argparse.Namespace) -> int:
    """Revoke a web UI client certificate: the next request with it gets 403."""
    certificates = _ui_certificates(args)
    if not certificates.revoke(args.name):
        known = sorted(n for n, c in certificates.clients().items() if not c.get("revoked"))
        print(
            f"aif: error: no unrevoked web UI client certificate is named {args.name!r} "
            f"(issued: {', '.join(known) or 'none'})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"revoked the web UI client certificate {args.name!r}; its next request gets 403")
    return EXIT_OK


def cmd_keys_ui_clients(args: argparse.Namespace) -> int:
    """The web UI client certificates issued."""
    clients = _ui_certificates(args).clients()
    if args.json:
        print_json(clients)
        return EXIT_OK
    if not clients:
        print("no web UI client certificates; issue one with `aif keys ui-client NAME`")
        return EXIT_OK
    width = max(len(n) for n in clients)
    for name, entry in sorted(clients.items()):
        state = "revoked" if entry.get("revoked") else "allowed"
        print(f"{name:<{width}}  {state:<7}  sha256 {entry.get('fingerprint')}")
    return EXIT_OK


def _show_rotated(key: str, rotated: bool) -> None:
    if rotated:
        print(f"  re-encrypted {key}", flush=True)


# -- the parser -------------------------------------------------------------------------


def _state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        help="the state directory whose keys to use (default: $AIF_STATE_DIR or "
        "~/.local/share/aif)",
    )


def add_commands(sub: Any) -> None:
    """Add ``aif keys ...`` to ``aif``'s subparsers."""
    keys = sub.add_parser("keys", help="this installation's keys and the keys it trusts")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")

    p = keys_sub.add_parser("init", help="create this installation's identity (three key pairs)")
    arguments_later(p, _init_arguments)
    p.set_defaults(func=cmd_keys_init)

    p = keys_sub.add_parser("show", help="print the public keys to give to others")
    _state_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_keys_show)

    p = keys_sub.add_parser("trust", help="trust a public key under a name")
    _state_dir(p)
    p.add_argument("name", metavar="NAME", help="1 to 64 of [A-Za-z0-9._@-], e.g. alice@lab")
    p.add_argument("key", metavar="KEY", help="ed25519:..., x25519:... or curve:...")
    p.add_argument(
        "--endpoint",
        metavar="tcp://HOST:PORT",
        help="for a curve: key, the server endpoint that must prove it holds it (clients "
        "connecting there check the server with this key)",
    )
    p.set_defaults(func=cmd_keys_trust)

    p = keys_sub.add_parser("untrust", help="forget the keys trusted under a name")
    _state_dir(p)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_keys_untrust)

    p = keys_sub.add_parser("list", help="list the trusted keys")
    _state_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_keys_list)

    p = keys_sub.add_parser(
        "rotate",
        help="re-encrypt all secure storage under new keys (not while a daemon runs)",
    )
    _state_dir(p)
    p.set_defaults(func=cmd_keys_rotate)

    p = keys_sub.add_parser(
        "ui-client",
        help="issue a client certificate for the secure profile's web UI (HTTPS, mutual TLS)",
    )
    _state_dir(p)
    p.add_argument("name", metavar="NAME", help="1 to 64 of [A-Za-z0-9._@-], e.g. alice-laptop")
    p.add_argument("--out", default=".", metavar="DIR", help="where to write (default: here)")
    p.add_argument(
        "--passphrase",
        action="store_true",
        help="also write NAME.p12 for browsers, encrypted with a passphrase "
        "($AIF_PASSPHRASE, else asked)",
    )
    p.add_argument("--force", action="store_true", help="replace files already in --out")
    p.set_defaults(func=cmd_keys_ui_client)

    p = keys_sub.add_parser("ui-revoke", help="revoke a web UI client certificate")
    _state_dir(p)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_keys_ui_revoke)

    p = keys_sub.add_parser("ui-clients", help="list the web UI client certificates issued")
    _state_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_keys_ui_clients)


def _init_arguments(p: argparse.ArgumentParser) -> None:
    """``keys init``'s arguments (their help names the passphrase's variable)."""
    from aif.security.keys import PASSPHRASE_ENV

    _state_dir(p)
    p.add_argument(
        "--passphrase",
        action="store_true",
        help=f"encrypt the private keys with a passphrase (from ${PASSPHRASE_ENV}, else asked)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing identity (refused while secure storage depends on it; "
        "`aif keys rotate` changes storage keys)",
    )
