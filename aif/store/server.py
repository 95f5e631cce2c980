"""``aif store serve DIR``: a read-only HTTP server for a Store directory.

GET and HEAD only (other methods: 405), files only (a directory, a dot-file, a path
with ``..`` or one that resolves outside DIR through a symbolic link: 404, so nothing
about the disk leaks), with the file's Content-Length. The signatures, not the
transport, make a Store trustworthy, so plain HTTP is fine; put it behind a TLS
proxy when confidentiality of the index matters. Access lines go to the ``aif.store``
logger at DEBUG.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aif.errors import ConfigError

log = logging.getLogger("aif.store")

DEFAULT_BIND = "127.0.0.1:8765"


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> ``(host, port)``; port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"--bind {text!r} is not HOST:PORT; e.g. {DEFAULT_BIND}, 0.0.0.0:8765 to serve "
            "other machines, or 127.0.0.1:0 for a free port"
        )
    return host, int(port)


class _Handler(BaseHTTPRequestHandler):
    server: StoreServer
    server_version = "aif-store"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse_method(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _serve(self, *, body: bool) -> None:
        path = self.server.locate(self.path)
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        try:
            handle = open(path, "rb")  # noqa: SIM115 (closed below, after the headers)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", _content_type(path))
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if body:
                shutil.copyfileobj(handle, self.wfile, 256 * 1024)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _content_type(path: Path) -> str:
    if path.name.endswith((".json", ".sig")):
        return "application/json"
    return "application/octet-stream"


class StoreServer(ThreadingHTTPServer):
    """Serves the files of one Store directory; ``url`` is where it listens."""

    daemon_threads = True

    def __init__(self, root: Path, bind: str = DEFAULT_BIND) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise ConfigError(f"{root} is not a directory; give the Store directory to serve")
        host, port = parse_bind(bind)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve on {bind}: {exc}; pick another --bind (port 0 picks a free one)"
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}/"

    def locate(self, request_path: str) -> Path | None:
        """The file a request path names inside the root, or None (404)."""
        raw = urllib.parse.unquote(urllib.parse.urlsplit(request_path).path)
        parts = raw.split("/")[1:] if raw.startswith("/") else []
        if not parts or any(not p or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        candidate = self.root.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        return resolved

    def start(self) -> StoreServer:
        """Serve in a daemon thread (tests, embedding); ``close`` stops it."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="aif-store", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __enter__(self) -> StoreServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
