"""The public keys an installation trusts, by name, in ``STATE_DIR/keys/trusted.json``.

::

    {"version": 1,
     "keys": [{"name": "alice@lab", "key": "ed25519:..."},
              {"name": "alice@lab", "key": "x25519:..."},
              {"name": "gpu-box", "key": "curve:...", "endpoint": "tcp://gpu-box.lab:5570"}]}

A name holds at most one key of each kind; trusting another key of a kind the name
already has replaces it (that is how a peer's new key is taken on). What each kind is
trusted for:

* ``ed25519``: a publisher, whose signed Store packages are accepted;
* ``x25519``: a recipient, for whom packages may be encrypted;
* ``curve``: a client let in on this installation's CURVE sockets, and, with an
  ``endpoint``, the server key expected at that endpoint: a client connecting to
  ``tcp://HOST:PORT`` checks the server proves it holds this key, so nobody in between
  can pose as that server.

An endpoint is stored in one form (``normalise_endpoint``) and binds at most one key,
so ``server_key_for`` never has to choose. Entries without ``endpoint`` (every file
written before endpoints existed) load as before, and an older aif reading a newer
file ignores the field. The file holds only public keys, but a file others could write
to would let them add keys, so that is refused.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aif.errors import ConfigError, KeyFileError
from aif.security.key_files import FORMAT_VERSION, read_json, write_private_file
from aif.security.key_formats import KeyKind, PublicKey, parse_public_key, public_key_text

NAME_RULE = "a name is 1 to 64 letters, digits, '.', '_', '@' or '-'"
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
#: A host name or IPv4 address (an IPv6 address comes in brackets and is parsed).
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
ENDPOINT_FORM = "tcp://HOST:PORT, e.g. tcp://gpu-box.lab:5570 or tcp://[::1]:5570"


def normalise_endpoint(endpoint: str) -> str:
    """``endpoint`` in its one stored form; ConfigError unless it is ``tcp://HOST:PORT``.

    Scheme and host in lower case, no trailing slashes, an IPv6 address compressed, the
    port without leading zeros: the forms a user may type for one endpoint compare
    equal. Host names are not resolved, so ``localhost`` and ``127.0.0.1`` stay two
    endpoints; a wildcard (``tcp://*:PORT``) is where a server binds, not an endpoint
    to reach, and is refused.
    """
    text = endpoint.strip() if isinstance(endpoint, str) else ""
    scheme, sep, rest = text.partition("://")
    host, colon, port = rest.rstrip("/").rpartition(":")
    if sep and scheme.lower() == "tcp" and colon and _PORT.fullmatch(port):
        number = int(port)
        if 0 < number < 65536:
            if host.startswith("[") and host.endswith("]"):
                try:
                    return f"tcp://[{ipaddress.IPv6Address(host[1:-1]).compressed}]:{number}"
                except ValueError:
                    pass
            elif _HOST.fullmatch(host):
                return f"tcp://{host.lower()}:{number}"
    raise ConfigError(f"{endpoint!r} is not an endpoint to trust a server at: use {ENDPOINT_FORM}")


@dataclass(frozen=True)
class TrustedKey:
    """A public key trusted under a name; a CURVE key may be bound to a server endpoint."""

    name: str
    kind: KeyKind
    text: str
    endpoint: str | None = None

    @property
    def key(self) -> PublicKey:
        """The cryptography public key object (Z85 bytes for CURVE)."""
        return parse_public_key(self.text)[1]


class TrustList:
    """``trusted.json``: read and changed whole, one atomic write per change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"TrustList({str(self.path)!r})"

    def entries(self) -> list[TrustedKey]:
        """Every trusted key, in the order they were trusted (none when there is no file)."""
        path = self.path
        try:
            doc = read_json(path, "trusted keys file")
        except FileNotFoundError:
            return []
        mode = path.stat().st_mode & 0o777
        if mode & 0o022:
            raise KeyFileError(
                f"{path} has mode {mode:04o}, so other users may add keys to it; "
                f"run `chmod 600 {path}` and check the keys it lists (`aif keys list`)"
            )
        entries = doc.get("keys")
        if not isinstance(entries, list):
            raise KeyFileError(f"{path}: 'keys' is not a list; restore it")
        found: list[TrustedKey] = []
        bound: dict[str, str] = {}
        for index, entry in enumerate(entries):
            found.append(self._entry(index, entry))
            endpoint = found[-1].endpoint
            if endpoint is not None:
                if endpoint in bound:
                    raise KeyFileError(
                        f"{path}: {bound[endpoint]!r} and {found[-1].name!r} are both bound to "
                        f"endpoint {endpoint}, which must name one server key; edit the file "
                        "to keep the right one"
                    )
                bound[endpoint] = found[-1].name
        return found

    def _entry(self, index: int, entry: Any) -> TrustedKey:
        path = self.path
        try:
            name, text = str(entry["name"]), str(entry["key"])
            kind, _ = parse_public_key(text)
        except (TypeError, KeyError, ConfigError) as exc:
            raise KeyFileError(f"{path}: entry {index} is not a trusted key ({exc})") from exc
        endpoint = entry.get("endpoint")
        if endpoint is None:
            return TrustedKey(name, kind, text)
        if kind != "curve":
            raise KeyFileError(
                f"{path}: entry {index} ({name!r}) binds an endpoint to an {kind} key, but "
                "only curve keys have one; remove its 'endpoint' or restore the file"
            )
        try:
            return TrustedKey(name, kind, text, normalise_endpoint(endpoint))
        except ConfigError as exc:
            raise KeyFileError(f"{path}: entry {index} ({name!r}): {exc}") from exc

    def _save(self, entries: list[TrustedKey]) -> None:
        keys: list[dict[str, str]] = []
        for k in entries:
            keys.append({"name": k.name, "key": k.text})
            if k.endpoint is not None:
                keys[-1]["endpoint"] = k.endpoint
        doc = {"version": FORMAT_VERSION, "keys": keys}
        write_private_file(self.path, json.dumps(doc, indent=2).encode() + b"\n")

    def trust(self, name: str, key_text: str, endpoint: str | None = None) -> TrustedKey:
        """Trust ``key_text`` under ``name`` (bound to ``endpoint``, for a CURVE key).

        Replaces the key of the same name and kind, endpoint included: the new entry
        is exactly what was given. Refuses a bad name, key or endpoint, an endpoint
        with a key that is not a CURVE key, and an endpoint another name is bound to,
        writing nothing.
        """
        if not _NAME.fullmatch(name):
            raise ConfigError(f"invalid trusted key name {name!r}: {NAME_RULE}")
        kind, key = parse_public_key(key_text)
        bound: str | None = None
        if endpoint is not None:
            if kind != "curve":
                raise ConfigError(
                    f"an endpoint names the server that must prove it holds a CURVE key, so "
                    f"it only goes with a curve: key, and the key given for {name!r} is an "
                    f"{kind} key; trust it without --endpoint"
                )
            bound = normalise_endpoint(endpoint)
        entries = [k for k in self.entries() if (k.name, k.kind) != (name, kind)]
        clash = next((k for k in entries if bound is not None and k.endpoint == bound), None)
        if clash is not None:
            raise ConfigError(
                f"endpoint {bound} is already bound to the CURVE key trusted as "
                f"{clash.name!r}, and one endpoint has one server key; run `aif keys "
                f"untrust {clash.name}` first, or trust the new key as {clash.name!r}"
            )
        added = TrustedKey(name, kind, public_key_text(key), bound)
        self._save([*entries, added])
        return added

    def untrust(self, name: str) -> int:
        """Forget every key trusted under ``name``; how many there were."""
        entries = self.entries()
        kept = [k for k in entries if k.name != name]
        if len(kept) != len(entries):
            self._save(kept)
        return len(entries) - len(kept)

    def server_key_for(self, endpoint: str) -> bytes | None:
        """The Z85 public key of the CURVE key bound to ``endpoint``, or None.

        None also when ``endpoint`` is no ``tcp://HOST:PORT`` at all (ipc, inproc, a
        wildcard): no key is ever bound to one, and a caller that needs a server key
        refuses to connect without it rather than guessing.
        """
        try:
            wanted = normalise_endpoint(endpoint)
        except ConfigError:
            return None
        for k in self.entries():
            if k.endpoint == wanted:
                key = k.key
                return key if isinstance(key, bytes) else None
        return None
