"""The secure profile's web UI: HTTPS with client certificates (mutual TLS).

Under ``--profile secure`` the UI serves HTTPS only and lets in a browser only when it
shows a client certificate that this installation issued and has not revoked, on top of
the token. Everything lives in ``STATE_DIR/keys/ui/`` (a directory of mode 0700, every
file 0600, written atomically by ``aif.security.key_files``)::

    ca.pem, ca.key          the UI's certificate authority (ECDSA P-256, 10 years)
    server.pem, server.key  the server's certificate (1 year), signed by the CA
    clients.json            the client certificates issued, by name, with their
                            SHA-256 fingerprints and whether they are revoked

The CA and the server certificate are made on first use; the server certificate is
issued again when the bind host changes, when it has less than 30 days left, or when it
was not signed by the CA there. The private keys are not passphrase-protected (the
daemon must load the server key unattended at start): owner-only modes guard them, and
they are refused, as ssh does, if group or others may read them.

``aif keys ui-client NAME`` issues a client certificate (``NAME.pem``, ``NAME.key`` and,
with a passphrase, ``NAME.p12`` for a browser) and ``aif keys ui-revoke NAME`` revokes
it. A connection needs a certificate signed by the CA to finish the TLS handshake; each
request then needs that certificate's fingerprint in the list of those issued and not
revoked (``allowed``, read again whenever ``clients.json`` changes), so a revocation
takes effect at once, without a restart.

Imports ``cryptography`` (loaded only when this module is) and ``aif.security``'s key
files; not aiohttp.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aif.errors import ConfigError, KeyFileError
from aif.security.key_files import (
    FORMAT_VERSION,
    check_private,
    ensure_private_dir,
    read_json,
    write_owner_only,
    write_private_file,
)

UI_KEYS_DIR = "ui"
CLIENTS_FILE = "clients.json"
CA_DAYS = 3650
SERVER_DAYS = 365
CLIENT_DAYS = 365
#: A server certificate with fewer days left than this is issued again at start.
RENEW_DAYS = 30
NAME_RULE = "a client name is 1 to 64 letters, digits, '.', '_', '@' or '-'"
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, lower-case hex."""
    return hashlib.sha256(der).hexdigest()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _server_names(host: str) -> tuple[list[str], list[Address]]:
    """The DNS names and IP addresses a server bound to ``host`` answers by."""
    dns = {"localhost"}
    ips: set[Address] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        dns.add(host)
    else:
        if address.is_unspecified:  # every interface: the machine's own name too
            dns.add(socket.gethostname())
        else:
            ips.add(address)
    return sorted(dns), sorted(ips, key=lambda a: (a.version, int(a)))


def _write_owner_only(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600), leaving the mode of its folder, the
    user's own, as it is."""
    try:
        write_owner_only(path, data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class IssuedClient:
    """A client certificate ``issue_client`` wrote."""

    name: str
    fingerprint: str
    certificate: Path
    key: Path
    p12: Path | None
    ca: Path


class UICertificates:
    """The UI's CA, server certificate and client list of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "keys" / UI_KEYS_DIR
        self.ca_pem = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self.server_pem = self.dir / "server.pem"
        self.server_key = self.dir / "server.key"
        self.clients_file = self.dir / CLIENTS_FILE
        self._allowed: frozenset[str] = frozenset()
        self._allowed_stamp: tuple[int, int] | None = None

    # -- the CA -----------------------------------------------------------------------------

    def _read_key(self, path: Path) -> ec.EllipticCurvePrivateKey:
        check_private(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"cannot load the UI key {path} ({exc}); restore it") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"{path} is not an ECDSA key; restore it")
        return key

    def _read_cert(self, path: Path) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot load the UI certificate {path} ({exc})") from exc

    def ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The CA's certificate and key, made on first use."""
        if self.ca_pem.exists() and self.ca_key.exists():
            return self._read_cert(self.ca_pem), self._read_key(self.ca_key)
        if self.ca_pem.exists() or self.ca_key.exists():
            raise KeyFileError(
                f"{self.dir} holds only half of the web UI's CA (ca.pem and ca.key go "
                "together); restore the other, or remove the folder to start over (every "
                "client certificate must then be issued again)"
            )
        ensure_private_dir(self.dir)
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aif"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"aif web UI CA ({socket.gethostname()})"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private_file(self.ca_key, _key_pem(key))
        write_private_file(self.ca_pem, _cert_pem(cert))
        return cert, key

    def _issue(
        self,
        subject: str,
        days: int,
        usage: x509.ObjectIdentifier,
        names: tuple[list[str], list[Address]] | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        ca_cert, ca_key = self.ca()
        key = _new_key()
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if names is not None:
            dns, ips = names
            alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
            alt += [x509.IPAddress(ip) for ip in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    # -- the server -------------------------------------------------------------------------

    def _server_current(self, host: str) -> bool:
        if not (self.server_pem.exists() and self.server_key.exists()):
            return False
        cert = self._read_cert(self.server_pem)
        ca_cert = self._read_cert(self.ca_pem)
        try:
            cert.verify_directly_issued_by(ca_cert)
            alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
            return False
        dns, ips = _server_names(host)
        names = sorted(alt.get_values_for_type(x509.DNSName))
        addresses = sorted(str(a) for a in alt.get_values_for_type(x509.IPAddress))
        left = cert.not_valid_after_utc - _now()
        return (
            names == dns
            and addresses == sorted(str(ip) for ip in ips)
            and left > datetime.timedelta(days=RENEW_DAYS)
        )

    def server(self, host: str) -> tuple[Path, Path]:
        """The server certificate and key for a bind to ``host``, issued when needed."""
        self.ca()
        if not self._server_current(host):
            cert, key = self._issue(
                f"aif web UI ({host})",
                SERVER_DAYS,
                ExtendedKeyUsageOID.SERVER_AUTH,
                _server_names(host),
            )
            write_private_file(self.server_key, _key_pem(key))
            write_private_file(self.server_pem, _cert_pem(cert))
        check_private(self.server_key)
        return self.server_pem, self.server_key

    def server_context(self, host: str) -> ssl.SSLContext:
        """TLS 1.2 or later, a client certificate signed by the UI CA required."""
        pem, key = self.server(host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(cafile=str(self.ca_pem))
            context.load_cert_chain(str(pem), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"the web UI cannot load its TLS files in {self.dir}: {exc}") from exc
        return context

    # -- clients ----------------------------------------------------------------------------

    def clients(self) -> dict[str, dict[str, Any]]:
        """The issued client certificates by name: fingerprint, serial, issued, revoked."""
        try:
            doc = read_json(self.clients_file, "UI client list")
        except FileNotFoundError:
            return {}
        clients = doc.get("clients")
        if not isinstance(clients, dict):
            raise KeyFileError(f"{self.clients_file} has no 'clients' mapping; restore it")
        return clients

    def _write_clients(self, clients: dict[str, dict[str, Any]]) -> None:
        doc = {"version": FORMAT_VERSION, "clients": clients}
        write_private_file(self.clients_file, json.dumps(doc, indent=2, sort_keys=True).encode())

    def issue_client(
        self, name: str, out: Path, passphrase: str | None = None, force: bool = False
    ) -> IssuedClient:
        """Write ``NAME.pem``, ``NAME.key`` (and ``NAME.p12`` with ``passphrase``) and the
        CA's ``aif-ui-ca.pem`` into ``out``; the new certificate replaces one of that name."""
        if not _NAME.fullmatch(name):
            raise ConfigError(f"invalid UI client name {name!r}: {NAME_RULE}")
        out = Path(out)
        paths = [out / f"{name}.pem", out / f"{name}.key"]
        p12_path = out / f"{name}.p12" if passphrase else None
        if p12_path is not None:
            paths.append(p12_path)
        existing = [str(p) for p in paths if p.exists()]
        if existing and not force:
            raise ConfigError(
                f"{', '.join(existing)} already exist; give another --out or --force to replace"
            )
        cert, key = self._issue(name, CLIENT_DAYS, ExtendedKeyUsageOID.CLIENT_AUTH)
        ca_cert, _ = self.ca()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {out}: {exc.strerror or exc}") from exc
        _write_owner_only(paths[1], _key_pem(key))
        _write_owner_only(paths[0], _cert_pem(cert))
        if p12_path is not None and passphrase:
            blob = pkcs12.serialize_key_and_certificates(
                name.encode(),
                key,
                cert,
                [ca_cert],
                serialization.BestAvailableEncryption(passphrase.encode()),
            )
            _write_owner_only(p12_path, blob)
        ca_copy = out / "aif-ui-ca.pem"
        _write_owner_only(ca_copy, _cert_pem(ca_cert))
        der = cert.public_bytes(serialization.Encoding.DER)
        clients = self.clients()
        clients[name] = {
            "fingerprint": fingerprint(der),
            "serial": format(cert.serial_number, "x"),
            "issued": int(time.time()),
            "expires": int(cert.not_valid_after_utc.timestamp()),
            "revoked": False,
        }
        self._write_clients(clients)
        return IssuedClient(name, fingerprint(der), paths[0], paths[1], p12_path, ca_copy)

    def revoke(self, name: str) -> bool:
        """Revoke the certificate issued as ``name``; False: none is (or it already was)."""
        clients = self.clients()
        entry = clients.get(name)
        if entry is None or entry.get("revoked"):
            return False
        entry["revoked"] = True
        entry["revoked_at"] = int(time.time())
        self._write_clients(clients)
        return True

    def allowed(self) -> frozenset[str]:
        """Fingerprints of the client certificates issued and not revoked (cached until
        ``clients.json`` changes; an unreadable list allows no one)."""
        try:
            stat = os.stat(self.clients_file)
        except OSError:
            return frozenset()
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp != self._allowed_stamp:
            try:
                clients = self.clients()
            except (KeyFileError, FileNotFoundError):
                return frozenset()
            self._allowed = frozenset(
                str(c.get("fingerprint"))
                for c in clients.values()
                if isinstance(c, dict) and not c.get("revoked")
            )
            self._allowed_stamp = stamp
        return self._allowed
