"""The secure profile's web UI in Chromium: mutual TLS with an issued client certificate.

Playwright hands Chromium the certificate ``aif keys ui-client`` wrote (its
``client_certificates`` option); the page of jobs opens over HTTPS. Without the
certificate the navigation fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import playwright_sync
from tests.helpers.daemon import DaemonProcess

pytestmark = pytest.mark.timeout(120)


class SecureUI:
    def __init__(self, url: str, out: Path) -> None:
        self.url = url
        self.base = url.split("/?", 1)[0]
        self.out = out


@pytest.fixture(scope="module")
def secure_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureUI]:
    from aif.security.keys import KeyRing
    from aif.ui.tls import UICertificates

    root = tmp_path_factory.mktemp("secure-ui")
    state_dir, out = root / "state", root / "out"
    state_dir.mkdir()
    KeyRing(state_dir).init()
    UICertificates(state_dir).issue_client("browser", out)
    daemon = DaemonProcess(
        state_dir, "--profile", "secure", "--ui", "127.0.0.1:0", "--instances", "cpu=1"
    ).start()
    try:
        yield SecureUI((state_dir / "ui.url").read_text().strip(), out)
    finally:
        daemon.stop()


def test_the_jobs_page_opens_over_mutual_tls(browser: Any, secure_ui: SecureUI) -> None:
    assert secure_ui.url.startswith("https://")
    context = browser.new_context(
        ignore_https_errors=True,  # the test's Chromium does not trust the UI's CA
        client_certificates=[
            {
                "origin": secure_ui.base,
                "certPath": str(secure_ui.out / "browser.pem"),
                "keyPath": str(secure_ui.out / "browser.key"),
            }
        ],
    )
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        page.goto(secure_ui.url)
        # the page's own fetch of /api/jobs went over the same mutual TLS
        page.locator("#jobs-count", has_text="0 jobs").wait_for()
        assert page.url.startswith("https://")
        reply = page.request.get(f"{secure_ui.base}/api/jobs")
        assert reply.status == 200 and reply.json() == {"jobs": []}
    finally:
        context.close()


def test_without_the_certificate_the_page_does_not_open(browser: Any, secure_ui: SecureUI) -> None:
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        with pytest.raises(playwright_sync.Error):
            page.goto(secure_ui.url)
    finally:
        context.close()
