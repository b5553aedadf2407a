"""At most ``max-concurrent-requests`` requests in flight.

A slot is taken before a request is sent and given back when its answer has
been read (for a stream: when its headers arrived, so a long-lived stream
never holds one). A caller that finds none free waits up to
``request-queue-timeout`` and then fails with :class:`Overloaded`. The slot
count lives in one semaphore, so checking and taking are one step.
"""

from __future__ import annotations

import threading
from typing import Any

from loguru import logger
from ofelia_hookspecs.errors import DockerError


class Overloaded(DockerError):
    """No request slot came free in time. The engine is busy, not down: never
    counted by the circuit breaker."""


class RequestLimiter:
    def __init__(self, limit: int, queue_timeout: float) -> None:
        self.limit = limit
        self.queue_timeout = queue_timeout
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._peak = 0
        self._waited = 0
        self._timeouts = 0
        self._queueing = False

    def acquire(self, operation: str) -> None:
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self._waited += 1
                if not self._queueing:
                    self._queueing = True
                    logger.info("Docker client: {} requests in flight; further calls wait up to {:g} s",
                                self.limit, self.queue_timeout)
            if not self._slots.acquire(timeout=self.queue_timeout):
                with self._lock:
                    self._timeouts += 1
                raise Overloaded(
                    f"too many Docker requests in flight: waited {self.queue_timeout:g} s for one of "
                    f"{self.limit} slots ([docker-client] max-concurrent-requests, request-queue-timeout)",
                    operation=operation,
                )
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._queueing and self._in_flight < self.limit // 2:
                self._queueing = False
                logger.info("Docker client: requests in flight back to {}", self._in_flight)
        self._slots.release()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "in_flight": self._in_flight,
                "limit": self.limit,
                "peak": self._peak,
                "waited": self._waited,
                "timeouts": self._timeouts,
            }


__all__ = ["Overloaded", "RequestLimiter"]
