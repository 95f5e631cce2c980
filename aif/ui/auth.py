"""Who may use the web UI: the token, its cookies, CSRF, and the Host and Origin checks.

As Jupyter does, a fresh token is made at each start and printed as part of the URL
(``http://127.0.0.1:PORT/?token=T``). Opening that URL sets two cookies: ``aif_token``
(the token, HttpOnly, SameSite=Strict) and ``aif_csrf`` (a value derived from the token,
readable by the page). Every request needs the token, from the cookie or from an
``Authorization: Bearer T`` header (scripts). A state-changing request (any method but
GET and HEAD) made with the cookie must also carry the ``X-AIF-CSRF`` header equal to
the ``aif_csrf`` cookie (double submit), and an ``Origin``, if sent, must be the server's
own. On a loopback address the ``Host`` header must name that address too, so a page of
another site cannot reach the UI through DNS rebinding.

Under the secure profile the UI serves HTTPS with client certificates (``aif.ui.tls``):
``client_certificates`` comes first and refuses (403) a request whose connection's
certificate is not among those issued and not revoked; the cookies are then ``Secure``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

TOKEN_COOKIE = "aif_token"
CSRF_COOKIE = "aif_csrf"
CSRF_HEADER = "X-AIF-CSRF"
#: Methods that change nothing and need no CSRF header.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

NO_TOKEN_PAGE = (
    "This is the aif web UI. Open it with the URL the daemon printed at start "
    "(http://HOST:PORT/?token=...; also in STATE_DIR/ui.url, and `aif ui` shows it).\n"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    """A fresh random token."""
    return secrets.token_urlsafe(32)


def csrf_of(token: str) -> str:
    """The CSRF value the page sends back: derived from the token, not the token."""
    return hmac.new(token.encode(), b"aif-ui-csrf", hashlib.sha256).hexdigest()


def error(status: int, message: str, field: str | None = None) -> web.Response:
    """A JSON error: ``{"error": message, "field": dotted.path}``."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """The checks every request passes, as aiohttp middleware."""

    def __init__(self, token: str, hosts: frozenset[str] | None, secure: bool = False) -> None:
        """``hosts``: the ``Host`` headers let in (None: any, on a non-loopback bind);
        ``secure``: served over HTTPS, so the cookies are ``Secure``."""
        self.token = token
        self.csrf = csrf_of(token)
        self.hosts = hosts
        self.secure = secure

    def set_cookies(self, response: web.StreamResponse) -> None:
        """The token and CSRF cookies the page keeps."""
        for name, value, httponly in (
            (TOKEN_COOKIE, self.token, True),
            (CSRF_COOKIE, self.csrf, False),
        ):
            response.set_cookie(
                name, value, httponly=httponly, samesite="Strict", path="/", secure=self.secure
            )

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.hosts is not None and request.host not in self.hosts:
            return error(403, f"this server does not answer for host {request.host[:100]!r}")
        bearer = self._bearer(request)
        if bearer is not None:
            if not _same(bearer, self.token):
                return error(401, "wrong token in the Authorization header")
            return await handler(request)
        if request.method == "GET" and request.path == "/" and "token" in request.query:
            if not _same(request.query["token"], self.token):
                return web.Response(status=401, text=NO_TOKEN_PAGE, content_type="text/plain")
            response = await handler(request)
            self.set_cookies(response)
            return response
        if not _same(request.cookies.get(TOKEN_COOKIE), self.token):
            if request.path.startswith("/api/"):
                return error(
                    401,
                    "no token: open the URL the daemon printed, or send "
                    "'Authorization: Bearer TOKEN'",
                )
            return web.Response(status=401, text=NO_TOKEN_PAGE, content_type="text/plain")
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return error(403, f"cross-origin request from {origin[:100]!r} refused")
            header = request.headers.get(CSRF_HEADER)
            cookie = request.cookies.get(CSRF_COOKIE)
            if not _same(header, self.csrf) or not _same(cookie, self.csrf):
                return error(
                    403,
                    f"missing or wrong {CSRF_HEADER} header: send the value of the "
                    f"{CSRF_COOKIE} cookie (or /api/info's csrf)",
                )
        return await handler(request)


def peer_fingerprint(request: web.Request) -> str | None:
    """The SHA-256 fingerprint of the client certificate of the request's TLS connection."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest() if der else None


def client_certificates(allowed: Callable[[], frozenset[str]]) -> Any:
    """Middleware: only a client certificate whose fingerprint is in ``allowed()``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        found = peer_fingerprint(request)
        if found is None or found not in allowed():
            return error(
                403,
                "this client certificate is not (or no longer) allowed: ask for one with "
                "`aif keys ui-client NAME`",
            )
        return await handler(request)

    return middleware


def loopback_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` headers a loopback server answers: its address by any loopback name."""
    names = {host, "127.0.0.1", "localhost", "[::1]"}
    return frozenset(f"{name}:{port}" for name in names)
