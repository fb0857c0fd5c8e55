"""Who may call the server.

- With FACEQUEUE_API_TOKEN set: /api/* and the UI need `Authorization: Bearer <token>`, or
  the session cookie the UI's login form sets (HttpOnly, SameSite=Strict; its value is an
  HMAC of the token, never the token). /healthz and /metrics stay open for monitoring.
- Without a token the server only listens on loopback (see `check_bind`).
- CSRF: a request that relies on ambient credentials (the cookie, or none at all on
  loopback) may change something only with the per-server CSRF token the UI puts into its
  forms, or as a JSON request (a cross-site form cannot send `application/json` without a
  CORS preflight, which this server never grants). Bearer requests carry their own proof.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware

from facequeue.errors import ConfigError

COOKIE = "facequeue_session"
OPEN_PATHS = ("/healthz", "/metrics", "/login")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
VIA_BEARER = web.RequestKey("via_bearer", bool)  # the request proved itself with the token
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse to serve an unprotected API beyond this machine."""
    if not token and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without FACEQUEUE_API_TOKEN: set a token in the "
            "environment, or bind a loopback address (127.0.0.1, ::1)"
        )


class Auth:
    def __init__(self, token: str) -> None:
        self.token = token
        # the CSRF/session secret: derived from the token, or random per server process
        self.secret = (
            hashlib.sha256(b"facequeue-serve:" + token.encode()).digest()
            if token
            else secrets.token_bytes(32)
        )

    @property
    def required(self) -> bool:
        return bool(self.token)

    def _mac(self, what: str) -> str:
        return hmac.new(self.secret, what.encode(), hashlib.sha256).hexdigest()

    @property
    def session_value(self) -> str:
        return self._mac("session")

    @property
    def csrf_token(self) -> str:
        return self._mac("csrf")

    def token_ok(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def bearer_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def cookie_ok(self, request: web.Request) -> bool:
        value = request.cookies.get(COOKIE, "")
        return bool(value) and hmac.compare_digest(value, self.session_value)

    def csrf_ok(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given, self.csrf_token)

    def set_session(self, response: web.StreamResponse, secure: bool) -> None:
        response.set_cookie(
            COOKIE, self.session_value, httponly=True, samesite="Strict", secure=secure, path="/"
        )

    def middleware(self) -> Middleware:
        @web.middleware
        async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            path = request.path
            if not self.required or path in OPEN_PATHS or path.startswith("/static/"):
                request[VIA_BEARER] = self.required and self.bearer_ok(request)
                return await handler(request)
            if self.bearer_ok(request):
                request[VIA_BEARER] = True
                return await handler(request)
            request[VIA_BEARER] = False
            if self.cookie_ok(request):
                return await handler(request)
            if path.startswith("/api/"):
                raise web.HTTPUnauthorized(
                    text='{"error": "missing or wrong API token (Authorization: Bearer <token>)"}',
                    content_type="application/json",
                    headers={"WWW-Authenticate": 'Bearer realm="facequeue"'},
                )
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")

        return auth
