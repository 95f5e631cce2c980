"""A real daemon with its web UI, and Debian's Chromium driven by Playwright.

The browser is the system's ``/usr/bin/chromium`` (scripts/setup.sh installs it);
nothing is downloaded at test time. Without it, or without the ``playwright`` package,
the browser tests skip saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where to save the pages' screenshots (docs/ui): only when this is set.
SCREENSHOTS = os.environ.get("AIF_UI_SCREENSHOTS")

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium for the browser tests",
        allow_module_level=True,
    )
playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'"
)


class UI:
    """The daemon under test and the address of its web UI (with the token)."""

    def __init__(self, daemon: DaemonProcess, url: str) -> None:
        self.daemon = daemon
        self.url = url
        self.base = url.split("/?", 1)[0]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    state_dir = tmp_path_factory.mktemp("ui") / "state"
    daemon = DaemonProcess(state_dir, "--instances", "cpu=3", "--ui", "127.0.0.1:0").start()
    try:
        url_file = state_dir / "ui.url"
        url = wait_for(
            lambda: url_file.exists() and url_file.read_text().strip(), 30, "the UI's address"
        )
        yield UI(daemon, url)
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, ui: UI) -> Iterator[Any]:
    """A fresh page that opened the UI's address with its token (so it holds the cookies)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(ui.url)
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"


def screenshot(page: Any, name: str) -> None:
    """Save ``name``.png under $AIF_UI_SCREENSHOTS when it is set."""
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=name != "composer")
