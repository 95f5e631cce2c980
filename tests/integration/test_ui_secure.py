"""The secure profile's web UI: HTTPS only, to client certificates the installation issued.

A real daemon (``controller start --profile secure --ui 127.0.0.1:0``) and aiohttp's
client with real TLS contexts: an issued certificate with the token gets in; no
certificate, one of another CA, a revoked one or plain http do not.
"""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import ROOT, DaemonProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def aif_keys(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), AIF_PASSPHRASE="import-me")
    return subprocess.run(
        [sys.executable, "-m", "aif", "keys", *args, "--state-dir", str(state_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class SecureUI:
    """The module's daemon: its URL, token, and where its client files were written."""

    def __init__(self, url: str, state_dir: Path, out: Path) -> None:
        self.url = url
        self.state_dir = state_dir
        self.out = out
        self.base, _, self.token = url.partition("/?token=")
        self.bearer = {"Authorization": f"Bearer {self.token}"}

    def context(self, name: str | None, out: Path | None = None) -> ssl.SSLContext:
        """A client context that trusts the UI's CA and shows ``name``'s certificate."""
        context = ssl.create_default_context(cafile=str(self.out / "aif-ui-ca.pem"))
        if name is not None:
            folder = out or self.out
            context.load_cert_chain(str(folder / f"{name}.pem"), str(folder / f"{name}.key"))
        return context

    def get(self, context: ssl.SSLContext | None, path: str = "/api/info") -> int:
        """The status of a GET with the token over ``context`` (None: plain http); 0 when
        the connection is refused (the TLS handshake fails or the server hangs up)."""
        host, _, port = self.base.partition("://")[2].rpartition(":")
        connection = (
            http.client.HTTPSConnection(host, int(port), timeout=20, context=context)
            if context is not None
            else http.client.HTTPConnection(host, int(port), timeout=20)
        )
        try:
            connection.request("GET", path, headers=self.bearer)
            return connection.getresponse().status
        except (OSError, http.client.HTTPException):  # ssl.SSLError is an OSError
            return 0
        finally:
            connection.close()


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureUI]:
    from aif.security.keys import KeyRing

    root = tmp_path_factory.mktemp("secure-ui")
    state_dir, out = root / "state", root / "out"
    state_dir.mkdir()
    KeyRing(state_dir).init()
    issued = aif_keys(state_dir, "ui-client", "alice", "--out", str(out), "--passphrase")
    assert issued.returncode == 0, issued.stderr
    assert "aif keys ui-revoke alice" in issued.stdout
    proc = DaemonProcess(
        state_dir, "--profile", "secure", "--ui", "127.0.0.1:0", "--instances", "cpu=1"
    ).start()
    try:
        yield SecureUI((state_dir / "ui.url").read_text().strip(), state_dir, out)
    finally:
        assert proc.stop() == 0, proc.text()


def test_an_issued_certificate_with_the_token_gets_in_over_https(ui: SecureUI) -> None:
    assert ui.url.startswith("https://127.0.0.1:"), ui.url
    assert ui.get(ui.context("alice")) == 200
    host, _, port = ui.base.partition("://")[2].rpartition(":")
    connection = http.client.HTTPSConnection(
        host, int(port), timeout=20, context=ui.context("alice")
    )
    try:
        connection.request("GET", "/api/info")
        response = connection.getresponse()
        response.read()
        assert response.status == 401  # the certificate alone is not enough
        connection.request("GET", f"/?token={ui.token}")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        cookies = response.headers.get_all("Set-Cookie") or []
        token_cookie = next(c for c in cookies if c.startswith("aif_token="))
        assert "Secure" in token_cookie and "HttpOnly" in token_cookie
    finally:
        connection.close()
    assert (ui.out / "alice.p12").stat().st_size > 0


def test_no_certificate_or_plain_http_is_refused(ui: SecureUI) -> None:
    assert ui.get(ui.context(None)) == 0
    assert ui.get(None) == 0


def test_a_certificate_of_another_ca_is_refused(ui: SecureUI, tmp_path: Path) -> None:
    from aif.ui.tls import UICertificates

    UICertificates(tmp_path / "elsewhere").issue_client("mallory", tmp_path)
    assert ui.get(ui.context("mallory", tmp_path)) == 0


def test_a_certificate_issued_while_serving_works_until_revoked(
    ui: SecureUI, tmp_path: Path
) -> None:
    issued = aif_keys(ui.state_dir, "ui-client", "bob", "--out", str(tmp_path))
    assert issued.returncode == 0, issued.stderr
    bob = ui.context("bob", tmp_path)
    assert ui.get(bob) == 200
    revoked = aif_keys(ui.state_dir, "ui-revoke", "bob")
    assert revoked.returncode == 0, revoked.stderr
    assert ui.get(bob) == 403
    assert ui.get(ui.context("alice")) == 200  # the others still get in
    again = aif_keys(ui.state_dir, "ui-revoke", "bob")
    assert again.returncode != 0 and "alice" in again.stderr
    listed = aif_keys(ui.state_dir, "ui-clients")
    assert "alice  allowed" in listed.stdout and "bob    revoked" in listed.stdout


def test_the_keys_are_owner_only(ui: SecureUI) -> None:
    folder = ui.state_dir / "keys" / "ui"
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("ca.pem", "ca.key", "server.pem", "server.key", "clients.json"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    for name in ("alice.key", "alice.p12"):
        assert (ui.out / name).stat().st_mode & 0o777 == 0o600, name


def test_the_server_certificate_is_issued_again_when_the_host_changes(tmp_path: Path) -> None:
    from aif.ui.tls import UICertificates

    certificates = UICertificates(tmp_path)
    pem, _ = certificates.server("127.0.0.1")
    first = pem.read_bytes()
    certificates.server("127.0.0.1")
    assert pem.read_bytes() == first  # kept while the host is the same
    certificates.server("192.0.2.7")
    assert pem.read_bytes() != first
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.0.2.7" in {str(a) for a in alt.get_values_for_type(x509.IPAddress)}
    assert "localhost" in alt.get_values_for_type(x509.DNSName)


def test_a_bad_client_name_is_refused(tmp_path: Path) -> None:
    done = aif_keys(tmp_path / "s", "ui-client", "no/slash", "--out", str(tmp_path))
    assert done.returncode != 0 and "client name" in done.stderr


def test_an_open_address_warns_and_serves_https_to_certificates_only(
    tmp_path: Path,
) -> None:
    from aif.security.keys import KeyRing
    from aif.ui.tls import UICertificates

    state_dir = tmp_path / "secure"
    state_dir.mkdir()
    KeyRing(state_dir).init()
    UICertificates(state_dir).issue_client("carol", tmp_path)
    proc = DaemonProcess(
        state_dir, "--profile", "secure", "--ui", "0.0.0.0:0", "--instances", "cpu=1"
    ).start()
    try:
        url = (state_dir / "ui.url").read_text().strip()
        port = url.partition("/?")[0].rpartition(":")[2]
        opened = SecureUI(
            f"https://127.0.0.1:{port}/?token=" + url.partition("token=")[2], state_dir, tmp_path
        )
        assert url.startswith("https://0.0.0.0:")
        assert opened.get(opened.context("carol")) == 200
        assert opened.get(opened.context(None)) == 0
    finally:
        assert proc.stop() == 0
    assert "other machines may reach: over HTTPS" in proc.text()
