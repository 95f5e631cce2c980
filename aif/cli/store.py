"""The ``aif store`` commands: publish, list, install and serve Store packages.

Only this module touches the key ring: it turns ``--state-dir`` into the signing key,
the trusted publishers and the decryption key that ``aif.store`` takes explicitly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aif.cli.common import EXIT_OK, arguments_later, print_json, state_dir_of, table
from aif.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

_PROFILES = ("basic", "secure")


@contextlib.contextmanager
def _warnings_printed(warnings: list[str]) -> Iterator[None]:
    """Silence ``aif.store`` log warnings in the block; the command prints them itself."""
    logger = logging.getLogger("aif.store")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)


def _recipients(state_dir: Path, wanted: list[str]) -> dict[str, X25519PublicKey]:
    """``--to`` values: trusted recipient names or ``x25519:`` key texts."""
    from cryptography.hazmat.primitives.asymmetric import x25519

    from aif.security.keys import KeyRing, parse_public_key

    if not wanted:
        return {}
    known = KeyRing(state_dir).recipients()
    chosen: dict[str, X25519PublicKey] = {}
    for item in wanted:
        if item in known:
            chosen[item] = known[item]
            continue
        if not item.startswith("x25519:"):
            names = ", ".join(sorted(known)) or "none"
            raise ConfigError(
                f"--to {item!r} is neither a trusted recipient (trusted: {names}) nor an "
                "x25519:KEY text; trust it with `aif keys trust NAME x25519:KEY`"
            )
        _, key = parse_public_key(item)
        if not isinstance(key, x25519.X25519PublicKey):  # pragma: no cover - prefix checked
            raise ConfigError(f"--to {item!r} is not an x25519 key")
        chosen[item] = key
    return chosen


def cmd_store_publish(args: argparse.Namespace) -> int:
    """Build, sign (and encrypt) a package from SRC and add it to a Store directory."""
    from aif.security.keys import KeyRing
    from aif.store.client import store_url
    from aif.store.publish import publish_source

    store = store_url(args.store)
    if "://" in store:
        raise ConfigError(
            f"--store {store}: publish writes into a Store directory; publish on the "
            "machine that serves it, or into a directory you then copy there"
        )
    state_dir = state_dir_of(args)
    recipients = _recipients(state_dir, args.to)
    identity = KeyRing(state_dir).identity()
    done = publish_source(
        Path(store),
        Path(args.src),
        identity.signing,
        aim=args.aim,
        workflow=args.workflow,
        name=args.name,
        version=args.version,
        recipients=recipients,
    )
    entry = done.entry
    verb = "already published" if done.already else "published"
    print(f"{verb} {entry.ref} ({entry.kind}) to {store}")
    print(f"  file:      {done.path}")
    print(f"  sha256:    {entry.sha256}")
    print(f"  signed by: {entry.signer}")
    if entry.encrypted:
        print(f"  encrypted for: {', '.join(entry.recipients)}")
    return EXIT_OK


def _trust(args: argparse.Namespace) -> tuple[dict[str, Ed25519PublicKey], bool]:
    """The trusted publishers of ``--state-dir`` and whether ``--profile`` requires them."""
    from aif.security.keys import KeyRing

    return KeyRing(state_dir_of(args)).publishers(), args.profile == "secure"


def cmd_store_list(args: argparse.Namespace) -> int:
    """List the packages of a Store, after checking its index signature."""
    from aif.store.client import StoreClient, store_url
    from aif.store.signing import trusted_name

    trusted, require = _trust(args)
    client = StoreClient(store_url(args.store))
    warnings: list[str] = []
    with _warnings_printed(warnings):
        index, verified = client.index(trusted=trusted, require_trusted=require)
        warnings += verified.warnings
    if args.json:
        print_json(
            {
                "store": client.url,
                "index_signer": verified.signer,
                "index_trusted": verified.trusted,
                "packages": [
                    {**e.model_dump(mode="json"), "signer_name": _signer(e.signer, trusted)}
                    for e in index.packages
                ],
            }
        )
        return EXIT_OK
    rows = [
        [
            e.name,
            e.version,
            e.kind,
            "yes" if e.encrypted else "",
            (trusted_name(e.signer, trusted) or "untrusted") if e.signer else "unsigned",
            e.description,
        ]
        for e in index.packages
    ]
    if not rows:
        print(f"{client.url}: no packages")
        return EXIT_OK
    table(client.url, ["NAME", "VERSION", "KIND", "ENCRYPTED", "SIGNER", "DESCRIPTION"], rows)
    return EXIT_OK


def _signer(key: str | None, trusted: dict[str, Ed25519PublicKey]) -> str | None:
    from aif.store.signing import trusted_name

    return trusted_name(key, trusted) if key else None


def cmd_store_install(args: argparse.Namespace) -> int:
    """Install NAME[@VERSION] from a Store into STATE_DIR/packages."""
    from aif.security.keys import KeyRing
    from aif.store.client import StoreClient, store_url
    from aif.store.install import install

    state_dir = state_dir_of(args)
    trusted, require = _trust(args)
    client = StoreClient(store_url(args.store))
    warnings: list[str] = []
    with _warnings_printed(warnings):
        result = install(
            client,
            args.ref,
            state_dir,
            trusted=trusted,
            require_trusted=require,
            decrypt_key=lambda: KeyRing(state_dir).identity().exchange,
        )
        warnings += result.warnings
    package = result.package
    record = package.record
    if args.json:
        print_json({"already": result.already, "path": str(package.path), **record.model_dump()})
        return EXIT_OK
    verb = "already installed" if result.already else "installed"
    print(f"{verb} {package.ref} ({record.kind} {record.entry}) in {package.path}")
    print(f"  sha256:    {record.sha256}")
    signer = record.signer or "unsigned"
    if record.signer_name:
        signer = f"{record.signer_name} ({record.signer})"
    print(f"  signed by: {signer}")
    return EXIT_OK


def cmd_store_serve(args: argparse.Namespace) -> int:
    """Serve a Store directory over HTTP (GET/HEAD, files only) until Ctrl-C."""
    from aif.store.server import StoreServer

    if getattr(args, "verbose", False):
        logging.getLogger("aif.store").setLevel(logging.DEBUG)
    with StoreServer(Path(args.dir), args.bind) as server:
        print(f"serving Store {server.root} on {server.url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return EXIT_OK


def _common(p: argparse.ArgumentParser, *, store: bool = True, profile: bool = False) -> None:
    p.add_argument(
        "--state-dir",
        help="where keys and installed packages live (default: $AIF_STATE_DIR or "
        "~/.local/share/aif)",
    )
    if store:
        p.add_argument(
            "--store",
            metavar="URL",
            help="the Store: a directory, file:///path or http(s)://host:port/ "
            "(default: $AIF_STORE)",
        )
    if profile:
        p.add_argument(
            "--profile",
            choices=_PROFILES,
            default="basic",
            help="secure: refuse unsigned packages and untrusted publishers; basic (the "
            "default): warn and go on",
        )


def add_commands(sub: Any) -> None:
    """Add ``aif store publish|list|install|serve`` to ``aif``'s subparsers."""
    store = sub.add_parser("store", help="publish, list, install and serve AIM/AIW packages")
    commands = store.add_subparsers(dest="store_command", required=True, metavar="STORE_COMMAND")

    p = commands.add_parser("publish", help="sign and add an AIM or AIW package to a Store")
    p.add_argument("src", metavar="SRC", help="source directory or wheel (.whl)")
    _common(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--aim", metavar="package.module:Class", help="the AIM class to publish")
    what.add_argument("--workflow", metavar="FILE.yml", help="the AIW file (inside SRC)")
    p.add_argument("--name", help="package name (default: from the class or workflow name)")
    p.add_argument("--version", help="package version (default: the AIM's or AIW's version)")
    p.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="RECIPIENT",
        help="encrypt for this trusted recipient name or x25519:KEY; repeatable",
    )
    p.set_defaults(func=cmd_store_publish)

    p = commands.add_parser("list", help="list a Store's packages")
    _common(p, profile=True)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_store_list)

    p = commands.add_parser("install", help="install a package from a Store")
    p.add_argument("ref", metavar="NAME[@VERSION]", help="package, highest version by default")
    _common(p, profile=True)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_store_install)

    p = commands.add_parser("serve", help="serve a Store directory over HTTP")
    arguments_later(p, _serve_arguments)
    p.set_defaults(func=cmd_store_serve)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    """``store serve``'s arguments (the default address is the Store server's)."""
    from aif.store.server import DEFAULT_BIND

    p.add_argument("dir", metavar="DIR", help="the Store directory")
    _common(p, store=False)
    p.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_BIND}; port 0 picks a free one)",
    )
