"""A clock tests can move by hand: the one thing the contract kits fake."""

from __future__ import annotations

import threading


class FakeClock:
    """Monotonic seconds that only change when :meth:`advance` is called.

    Pass it where a driver takes ``DriverContext.clock``; it is callable the
    same way and safe to read from many threads.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        with self._lock:
            self._now += seconds


__all__ = ["FakeClock"]
