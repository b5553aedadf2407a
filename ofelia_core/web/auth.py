"""Web authentication: the login check, tokens from cookie or header, CSRF, the login rate limit.

Tokens are opaque random strings issued and checked by the token manager
driver (``runtime.drivers.token_manager``); nothing about them is derived
from the secret key. The browser holds its token in an HttpOnly,
SameSite=Strict cookie; scripts send ``Authorization: Bearer <token>``.

CSRF: a state-changing request authenticated by the cookie must carry
``X-CSRF-Token``, an HMAC of the session token under ``web-secret-key``
(server-issued, nothing stored; compared in constant time). A request with
a Bearer header needs none: a browser never adds that header by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from ofelia_hookspecs.protocols import TokenManager
from starlette.requests import Request

from .password import verify_password
from .settings import WebSettings

AUTH_COOKIE = "auth_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Presented:
    """A token a request presented, and whether it came in the cookie (then CSRF applies)."""

    token: str
    via_cookie: bool


class WebAuth:
    """The checks the guard middleware and the auth routes share."""

    def __init__(
        self, settings: WebSettings, tokens: TokenManager, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.limiter = LoginLimiter(settings.max_login_attempts, clock=clock)

    @property
    def enabled(self) -> bool:
        return self.settings.auth_enabled

    # --- credentials --------------------------------------------------------------

    def check_login(self, username: str, password: str) -> bool:
        """Constant-time user name check; bcrypt runs whatever the name, so a wrong
        name takes as long as a wrong password (no user enumeration by timing)."""
        name_ok = hmac.compare_digest(username.encode(), self.settings.username.encode())
        password_ok = verify_password(password, self.settings.password_hash)
        return name_ok and password_ok

    def issue(self, subject: str) -> str:
        return self.tokens.issue(subject, self.settings.token_expiry_seconds)

    # --- tokens in requests -----------------------------------------------------------

    @staticmethod
    def presented(request: Request) -> Presented | None:
        """The token of ``Authorization: Bearer`` (which wins), else of the cookie.

        Tokens are never read from the query string: it ends up in access logs.
        A malformed Authorization header counts as an invalid token.
        """
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else ""
            return Presented(token, via_cookie=False)
        cookie = request.cookies.get(AUTH_COOKIE)
        if cookie:
            return Presented(cookie, via_cookie=True)
        return None

    def subject(self, presented: Presented | None) -> str | None:
        """The user a valid, unexpired, unrevoked token belongs to; else None."""
        if presented is None or not presented.token:
            return None
        return self.tokens.validate(presented.token)

    # --- CSRF -----------------------------------------------------------------------------

    def csrf_token(self, session_token: str | None) -> str:
        """The CSRF token of a session; without one, a random placeholder (kept for
        scripts written for Ofelia's fork, which fetch a token before logging in)."""
        if not session_token:
            return secrets.token_urlsafe(32)
        digest = hmac.new(self.settings.secret_key, b"ofelia-csrf\0" + session_token.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()

    def csrf_ok(self, request: Request, presented: Presented) -> bool:
        given = request.headers.get(CSRF_HEADER, "")
        return hmac.compare_digest(given.encode(), self.csrf_token(presented.token).encode())


class LoginLimiter:
    """Failed logins per client address in a sliding minute; past the limit, logins are refused.

    At most ``max_clients`` addresses are tracked (the least recently failing
    one is forgotten first), so a flood of addresses cannot grow memory.
    """

    WINDOW = 60.0

    def __init__(
        self, max_failures: int, *, clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000
    ) -> None:
        self.max_failures = max_failures
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again, or None when it may try now."""
        if self.max_failures <= 0:
            return None
        with self._lock:
            now = self._clock()
            self._forget_old(now)
            failures = self._failures.get(client)
            if failures is None:
                return None
            while failures and failures[0] <= now - self.WINDOW:
                failures.popleft()
            if len(failures) < self.max_failures:
                return None
            return max(1, math.ceil(failures[0] + self.WINDOW - now))

    def failed(self, client: str) -> None:
        if self.max_failures <= 0:
            return
        with self._lock:
            now = self._clock()
            failures = self._failures.pop(client, None) or deque(maxlen=self.max_failures)
            failures.append(now)
            self._failures[client] = failures  # most recently failing last
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def _forget_old(self, now: float) -> None:
        # Ordered by last failure: stop at the first address that failed within the window.
        while self._failures:
            client, failures = next(iter(self._failures.items()))
            if failures and failures[-1] > now - self.WINDOW:
                break
            del self._failures[client]
