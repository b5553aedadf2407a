"""The baseline token manager driver (entry point ``ofelia.token_manager: baseline``).

A dict from token to ``(subject, expires_at)`` behind one lock. Expired
tokens are dropped when checked and swept on each issue, which is the
original Go design's clean-up per login without its goroutine. The
optimized ``heap`` driver (``ofelia-tokens-heap``) keeps a min-heap by
expiry, cleans up in batches from one background worker and evicts the
least recently *used* token past the cap; this one evicts the token closest
to expiry.

Settings, section ``[token-manager]``:

``max-tokens``
    Most tokens held at once (default 10,000). Issuing past it evicts the
    token closest to expiry.

Other keys are ignored: they may belong to another driver of this concern,
and a rollback must never make a valid config invalid.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import DriverContext

SECTION = "token-manager"
DEFAULT_MAX_TOKENS = 10_000
#: Bytes of randomness per token: 256 bits, 43 URL-safe characters.
TOKEN_BYTES = 32


class DictTokenManager:
    """Opaque bearer tokens in a dict, safe to share between threads.

    ``validate`` looks the token up as a dict key rather than comparing it
    with :func:`hmac.compare_digest`. That is acceptable because the token
    *is* the key: a timing difference in hashing or bucket probing can at
    best tell an attacker about a prefix of a hash of their own guess, never
    about a stored token, and guessing 256 random bits is not feasible.
    ``compare_digest`` is for comparing a secret against one known value
    (a password hash, a webhook signature), which is not what happens here.

    Costs: ``validate`` and ``revoke`` are O(1); ``issue`` is O(n) because it
    sweeps expired tokens and, at the cap, scans for the token closest to
    expiry. With the default cap that is a few milliseconds per login at
    worst, paid only on login.
    """

    def __init__(self, *, clock: Callable[[], float], max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        if max_tokens < 1:
            raise ValueError(f"[{SECTION}] max-tokens must be a positive integer, got {max_tokens!r}")
        self._clock = clock
        self._max_tokens = max_tokens
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._issued = 0
        self._revoked = 0
        self._expired = 0
        self._evicted = 0

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def issue(self, subject: str, expires_in: float) -> str:
        # NaN would compare false with every time and so never expire.
        if not isinstance(expires_in, int | float) or math.isnan(expires_in) or expires_in <= 0:
            raise ValueError(f"expires_in must be a positive number of seconds, got {expires_in!r}")
        with self._lock:
            now = self._clock()
            self._sweep(now)
            while len(self._tokens) >= self._max_tokens:
                self._evict_closest_to_expiry()
            token = secrets.token_urlsafe(TOKEN_BYTES)
            while token in self._tokens:  # astronomically unlikely; costs one lookup
                token = secrets.token_urlsafe(TOKEN_BYTES)
            self._tokens[token] = (subject, now + expires_in)
            self._issued += 1
            return token

    def validate(self, token: str) -> str | None:
        if not isinstance(token, str):
            return None
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None
            subject, expires_at = entry
            if self._clock() >= expires_at:
                del self._tokens[token]
                self._expired += 1
                return None
            return subject

    def revoke(self, token: str) -> bool:
        """Forget ``token``. An expired token counts as unknown (``False``),
        as it does for ``validate``; it is dropped either way."""
        if not isinstance(token, str):
            return False
        with self._lock:
            entry = self._tokens.pop(token, None)
            if entry is None:
                return False
            if self._clock() >= entry[1]:
                self._expired += 1
                return False
            self._revoked += 1
            return True

    def stats(self) -> dict[str, Any]:
        """``active`` counts unexpired tokens; ``held`` also counts expired
        ones not yet dropped (they go at the next issue or check)."""
        with self._lock:
            now = self._clock()
            active = sum(1 for _, expires_at in self._tokens.values() if now < expires_at)
            return {
                "driver": "baseline",
                "active": active,
                "held": len(self._tokens),
                "max_tokens": self._max_tokens,
                "issued": self._issued,
                "revoked": self._revoked,
                "expired": self._expired,
                "evicted": self._evicted,
            }

    def close(self) -> None:
        """Nothing runs in the background; tokens live in memory and go with the process."""

    # -- under self._lock ------------------------------------------------

    def _sweep(self, now: float) -> None:
        expired = [token for token, (_, expires_at) in self._tokens.items() if now >= expires_at]
        for token in expired:
            del self._tokens[token]
        self._expired += len(expired)

    def _evict_closest_to_expiry(self) -> None:
        victim = min(self._tokens.items(), key=lambda item: item[1][1])[0]
        del self._tokens[victim]
        self._evicted += 1


def parse_max_tokens(settings: Mapping[str, Any]) -> int:
    """``max-tokens`` from the ``[token-manager]`` section (an int, or digits from INI)."""
    value = settings.get("max-tokens", DEFAULT_MAX_TOKENS)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 1:
        raise ValueError(f"[{SECTION}] max-tokens must be a positive integer, got {value!r}")
    return number


@hookimpl
def ofelia_make_token_manager(settings: Mapping[str, Any], context: DriverContext) -> DictTokenManager:
    """Build the baseline token manager from the ``[token-manager]`` section."""
    return DictTokenManager(clock=context.clock, max_tokens=parse_max_tokens(settings))
