"""Alert thresholds: each alert is crossed or not at each evaluation; a crossing
is logged once as a warning, the return to normal once as an info.

An alert whose figure is unknown (no data yet, or not enough in its window,
or a driver that does not report it) is not active: if it was, that counts
as back to normal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger

DOCKER_P95 = "docker_api_p95"
BREAKER_OPEN = "circuit_breaker_open"
TOKEN_GROWTH = "token_memory_growth"
BUFFER_HIT_RATE = "buffer_pool_hit_rate"
#: Every alert, in the order the JSON lists them.
ALERT_NAMES: tuple[str, ...] = (DOCKER_P95, BREAKER_OPEN, TOKEN_GROWTH, BUFFER_HIT_RATE)


@dataclass(frozen=True)
class Reading:
    """One evaluation of an alert's figure: ``value`` is ``None`` when unknown."""

    value: float | None
    crossed: bool
    message: str
    details: dict[str, Any] | None = None


@dataclass
class AlertState:
    name: str
    threshold: float
    unit: str
    active: bool = False
    value: float | None = None
    message: str = ""
    details: dict[str, Any] | None = None
    since: float | None = None
    since_wall: str | None = None
    firings: int = 0
    evaluated: int = 0

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "active": self.active,
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "message": self.message,
            "since": self.since_wall if self.active else None,
            "active_for_seconds": (now - self.since) if self.active and self.since is not None else None,
            "firings": self.firings,
            "details": self.details,
        }


def _wall_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Alerts:
    """The states of every alert; ``update`` applies one reading and logs a change."""

    def __init__(self, thresholds: dict[str, tuple[float, str]], *, log: bool, wall: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._log = log
        self._wall = wall
        self._states = {name: AlertState(name, *thresholds[name]) for name in ALERT_NAMES if name in thresholds}

    def update(self, name: str, reading: Reading, now: float) -> None:
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return
            state.evaluated += 1
            state.value, state.message, state.details = reading.value, reading.message, reading.details
            crossed = reading.crossed and reading.value is not None
            if crossed and not state.active:
                state.active, state.since, state.since_wall = True, now, _wall_text(self._wall())
                state.firings += 1
                if self._log:
                    logger.warning("metrics alert {}: {}", name, reading.message)
            elif not crossed and state.active:
                state.active, state.since, state.since_wall = False, None, None
                if self._log:
                    logger.info("metrics alert {} back to normal: {}", name, reading.message)

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        with self._lock:
            return [state.as_dict(now) for state in self._states.values()]

    def active(self) -> list[str]:
        with self._lock:
            return [name for name, state in self._states.items() if state.active]

    def firings(self) -> dict[str, int]:
        with self._lock:
            return {name: state.firings for name, state in self._states.items()}


__all__ = ["ALERT_NAMES", "BREAKER_OPEN", "BUFFER_HIT_RATE", "DOCKER_P95", "TOKEN_GROWTH", "Alerts", "Reading"]
