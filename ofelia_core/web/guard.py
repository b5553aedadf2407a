"""The one place that decides who may call what (an ASGI middleware in front of every route).

Secure by default: with authentication on, every path not listed in
:data:`PUBLIC_PATHS` (or under :data:`PUBLIC_PREFIXES`) needs a valid token,
so a route added later is protected without anyone remembering to. The
check runs before routing, so unknown paths answer 401 too and reveal
nothing. ``/metrics`` follows ``metrics-token`` instead. Every response gets
the security headers of :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import SAFE_METHODS, WebAuth

#: Open whatever the settings: liveness, readiness, the page and what logging in needs.
PUBLIC_PATHS = frozenset({"/", "/health", "/ready", "/api/login", "/api/csrf-token", "/api/auth/status"})
PUBLIC_PREFIXES = ("/static/",)
METRICS_PATH = "/metrics"

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Guard:
    """Refuses what the caller may not do; stores the caller's user in ``request.state.user``."""

    def __init__(self, app: ASGIApp, auth: WebAuth | None, *, metrics_token: str = "") -> None:
        self.app = app
        self.auth = auth
        self.metrics_token = metrics_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, request: Request) -> Response | None:
        path = request.url.path
        if path == METRICS_PATH:
            return self._metrics_refusal(request)
        if self.auth is None or not self.auth.enabled or is_public(path):
            return None
        presented = self.auth.presented(request)
        if presented is None:
            return _unauthorized("authentication required: log in (POST /api/login) or send a Bearer token")
        user = self.auth.subject(presented)
        if user is None:
            return _unauthorized("invalid, expired or revoked token")
        if presented.via_cookie and request.method not in SAFE_METHODS and not self.auth.csrf_ok(request, presented):
            return JSONResponse(
                {"detail": "missing or invalid CSRF token: send the X-CSRF-Token header (GET /api/csrf-token)"},
                status_code=403,
            )
        request.state.user = user
        return None

    def _metrics_refusal(self, request: Request) -> Response | None:
        if not self.metrics_token:
            return None
        scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
        given = value.strip() if scheme.lower() == "bearer" else ""
        if given and hmac.compare_digest(given.encode(), self.metrics_token.encode()):
            return None
        return _unauthorized("this endpoint needs Authorization: Bearer <metrics-token>")


def _unauthorized(detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
