"""The web UI's server: an aiohttp application in the controller daemon's own loop.

``aif controller start --ui HOST:PORT`` hands the daemon :func:`ui_service`; the daemon
enters it once its User API serves and leaves it after the drain. At start it prints
and logs the URL with a fresh token (``http://127.0.0.1:PORT/?token=T``) and writes it,
owner-only, to ``STATE_DIR/ui.url`` (removed at stop), where ``aif ui`` and
``aif controller status`` find it. Port 0 takes a free port. Under ``--profile secure``
it serves HTTPS only, to browsers with a client certificate the installation issued
(``aif.ui.tls``), and the URL is ``https://``.

Routes: the page (``/``, and ``/jobs/ID``, ``/compose``, ``/compare`` for its own
routing) and ``/static/...`` from ``static/``; the JSON API of ``aif.ui.api``. Request
bodies are bounded (``MAX_BODY``); every answer carries ``nosniff`` and is not cached,
and the page a Content-Security-Policy that lets in only its own scripts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from aif.daemon.daemon import is_loopback_host
from aif.errors import ConfigError
from aif.security.key_files import write_owner_only
from aif.ui.api import Api
from aif.ui.auth import Guard, client_certificates, loopback_hosts, new_token
from aif.ui.events import LiveEvents

if TYPE_CHECKING:
    from aif.daemon.daemon import Daemon, Service
    from aif.ui.tls import UICertificates

log = logging.getLogger("aif.ui")

STATIC_DIR = Path(__file__).parent / "static"
#: The file in the state directory that holds the URL with the token.
URL_FILE = "ui.url"
#: Largest request body, in bytes.
MAX_BODY = 2**20
#: Seconds open streams get to end when the daemon stops.
SHUTDOWN_TIMEOUT = 2.0
#: Paths the page routes itself (each gets index.html).
PAGE_ROUTES = ("/", "/compose", "/compare", "/jobs/{id}")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
NO_PAGE = "The aif web UI's page is not installed (aif/ui/static/index.html); the API serves.\n"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; ``PORT`` alone: 127.0.0.1) -> host, port."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"--ui {text!r}: write HOST:PORT, e.g. 127.0.0.1:8765 (port 0: any free)")
    return host, port


def write_url(state_dir: Path, url: str) -> Path:
    """Write ``url`` owner-only to ``state_dir/ui.url``."""
    path = state_dir / URL_FILE
    write_owner_only(path, (url + "\n").encode())
    return path


def read_url(state_dir: Path) -> str | None:
    """The URL a serving daemon's UI wrote into ``state_dir`` (None: none)."""
    try:
        return (Path(state_dir) / URL_FILE).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)


async def _page(request: web.Request) -> web.StreamResponse:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return web.Response(text=NO_PAGE, content_type="text/plain")
    return web.FileResponse(index, headers={"Content-Type": "text/html; charset=utf-8"})


async def _no_static(request: web.Request) -> web.Response:
    return web.json_response({"error": "no static files are installed"}, status=404)


class UIServer:
    """One web UI of one serving daemon."""

    def __init__(
        self,
        daemon: Daemon,
        host: str,
        port: int,
        token: str | None = None,
        tls: UICertificates | None = None,
    ) -> None:
        """``tls``: serve HTTPS to the client certificates it issued (the secure profile)."""
        self.daemon = daemon
        self.host, self.port = host, port
        self.token = token or new_token()
        self.tls = tls
        self.url = ""
        self.live: LiveEvents | None = None
        self._runner: web.AppRunner | None = None
        # the Host check of a loopback bind learns its port once it listens
        hosts = frozenset[str]() if is_loopback_host(host) else None
        self._guard = Guard(self.token, hosts, secure=tls is not None)

    def app(self) -> web.Application:
        """The application: guard, API, page and static files."""
        guard = self._guard
        self.live = LiveEvents(self.daemon)
        api = Api(self.daemon, self.live, guard.csrf)
        middlewares = [guard.middleware, api.middleware]
        if self.tls is not None:
            middlewares.insert(0, client_certificates(self.tls.allowed))
        app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
        app.on_response_prepare.append(_headers)
        app.add_routes(api.routes())
        for path in PAGE_ROUTES:
            app.router.add_get(path, _page)
        if STATIC_DIR.is_dir():
            app.router.add_static("/static", STATIC_DIR, follow_symlinks=False)
        else:
            app.router.add_get("/static/{path:.*}", _no_static)
        return app

    async def start(self) -> str:
        """Listen; returns the URL with the token."""
        runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        context = self.tls.server_context(self.host) if self.tls is not None else None
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, ssl_context=context).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"--ui cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; "
                "give another port (0: any free one)"
            ) from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        if self._guard.hosts is not None:
            self._guard.hosts = loopback_hosts(self.host, self.port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if context is not None else "http"
        self.url = f"{scheme}://{shown}:{self.port}/?token={self.token}"
        return self.url

    async def close(self) -> None:
        """End the open streams and stop listening."""
        if self.live is not None:
            self.live.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@contextlib.asynccontextmanager
async def running(daemon: Daemon, host: str, port: int) -> AsyncIterator[UIServer]:
    """Serve the UI of ``daemon`` while the block runs; print and write its URL."""
    tls = None
    if daemon.config.profile == "secure":
        from aif.ui.tls import UICertificates

        tls = UICertificates(daemon.state_dir)
    server = UIServer(daemon, host, port, tls=tls)
    url = await server.start()
    path = write_url(daemon.state_dir, url)
    if not is_loopback_host(host):
        if tls is None:
            log.warning(
                "the web UI listens on %s, which other machines may reach: anyone with its "
                "token can run jobs; it serves plain http (put TLS in front for a network, "
                "or use --profile secure)",
                host,
            )
        else:
            log.warning(
                "the web UI listens on %s, which other machines may reach: over HTTPS, to "
                "browsers with a client certificate from `aif keys ui-client` and the token",
                host,
            )
    log.info("web UI: %s (also in %s)", url, path)
    print(f"aif web UI: {url}", flush=True)
    try:
        yield server
    finally:
        await server.close()
        with contextlib.suppress(OSError):
            if read_url(daemon.state_dir) == url:
                path.unlink()


def ui_service(address: str) -> Service:
    """The daemon service that serves the UI on ``address`` (``HOST:PORT``)."""
    host, port = parse_address(address)

    def service(daemon: Daemon) -> contextlib.AbstractAsyncContextManager[object]:
        return running(daemon, host, port)

    return service
