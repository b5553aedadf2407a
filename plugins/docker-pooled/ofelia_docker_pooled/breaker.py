"""A circuit breaker for calls to the engine: closed, open, half-open.

Closed: every call goes through; ``failure_threshold`` engine failures in a
row (a refused connection, a timeout, a 5xx of the engine's own) open it.
Open: calls fail at once with :class:`CircuitOpen`, an ``EngineUnavailable``
that says since when. After ``open_timeout`` seconds it half-opens: up to
``half_open_max_calls`` trial calls go through at once and the rest still
fail fast; a trial that reaches the engine closes the circuit, one that
fails opens it again. Anything the engine answers (a 404, a conflict, a
registry failure) proves the engine is up, so it counts as a success.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from ofelia_hookspecs.errors import EngineUnavailable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
#: Transitions kept for ``stats()``.
HISTORY = 20


class CircuitOpen(EngineUnavailable):
    """The breaker refused the call without contacting the engine."""


@dataclass(frozen=True)
class Transition:
    before: str
    after: str
    at: str
    reason: str


def _wall(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class CircuitBreaker:
    """Thread-safe; ``clock`` is monotonic seconds (tests inject one), ``wall`` epoch seconds."""

    def __init__(
        self,
        *,
        failure_threshold: int = 10,
        open_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.open_timeout = open_timeout
        self.half_open_max_calls = half_open_max_calls
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._opened_wall = 0.0
        self._trials = 0
        self._last_error = ""
        self._rejected = 0
        self._transitions: deque[Transition] = deque(maxlen=HISTORY)
        self._counts = {OPEN: 0, HALF_OPEN: 0, CLOSED: 0}

    @property
    def state(self) -> str:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def before_call(self, operation: str) -> bool:
        """Admit a call or raise :class:`CircuitOpen`; ``True`` when it is a trial call,
        which must then be reported with :meth:`record` (exactly once)."""
        with self._lock:
            if self._state == CLOSED:
                return False
            self._maybe_half_open()
            if self._state == HALF_OPEN and self._trials < self.half_open_max_calls:
                self._trials += 1
                return True
            self._rejected += 1
            raise self._refusal(operation)

    def record(self, *, engine_failure: bool, trial: bool, error: str = "") -> None:
        """Report how an admitted call ended."""
        with self._lock:
            if trial:
                self._trials -= 1
            if not engine_failure:
                self._failures = 0
                if self._state == HALF_OPEN and trial:
                    self._move(CLOSED, "a trial call reached the engine")
                return
            self._failures += 1
            self._last_error = error
            if self._state == HALF_OPEN and trial:
                self._open(f"the trial call failed: {error}")
            elif self._state == CLOSED and self._failures >= self.failure_threshold:
                self._open(f"{self._failures} consecutive engine failures, the last: {error}")

    def release_trial(self) -> None:
        """A trial call ended without telling anything about the engine (it was cancelled)."""
        with self._lock:
            self._trials -= 1

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._opened_wall = self._wall()
        self._move(OPEN, reason)

    def _maybe_half_open(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.open_timeout:
            self._trials = 0
            self._move(HALF_OPEN, f"{self.open_timeout:g} s passed since it opened")

    def _move(self, after: str, reason: str) -> None:
        before, self._state = self._state, after
        self._counts[after] += 1
        self._transitions.append(Transition(before, after, _wall(self._wall()), reason))
        if after == OPEN:
            logger.error("Docker circuit breaker {} -> open: {}; calls fail fast for {:g} s",
                         before, reason, self.open_timeout)
        elif after == HALF_OPEN:
            logger.warning("Docker circuit breaker open -> half-open: letting {} trial call(s) through",
                           self.half_open_max_calls)
        else:
            logger.info("Docker circuit breaker {} -> closed: {}", before, reason)

    def _refusal(self, operation: str) -> CircuitOpen:
        since = _wall(self._opened_wall)
        if self._state == HALF_OPEN:
            detail = "a trial call is in progress"
        else:
            wait = max(0.0, self.open_timeout - (self._clock() - self._opened_at))
            detail = f"next trial in {wait:.0f} s"
        return CircuitOpen(
            f"Docker engine unavailable, circuit open since {since} ({detail}; last error: "
            f"{self._last_error or 'unknown'})",
            operation=operation,
        )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._maybe_half_open()
            return {
                "state": self._state,
                "consecutive_failures": self._failures,
                "failure_threshold": self.failure_threshold,
                "open_timeout": self.open_timeout,
                "half_open_max_calls": self.half_open_max_calls,
                "opened_since": _wall(self._opened_wall) if self._state != CLOSED else None,
                "rejected": self._rejected,
                "times_opened": self._counts[OPEN],
                "transitions": [t.__dict__ for t in self._transitions],
            }


__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "CircuitOpen"]
