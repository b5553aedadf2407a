"""``notify-cooldown``: per job and notifier, at most one notice per period."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

Admission = Literal["queued", "suppressed", "dropped"]


class Cooldown:
    """Thread-safe. A period of 0 lets everything through, as Ofelia sends every run's notice.

    The period starts when a notice is queued for delivery, whatever its outcome: the
    cooldown bounds how often a destination is contacted, failing or not.
    """

    def __init__(self, period: float = 0.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def admit(self, job: str, notifier: str, enqueue: Callable[[int], bool]) -> Admission:
        """Suppress the notice, or call ``enqueue(suppressed_before)``, which returns whether
        it was queued. A dropped notice neither starts the period nor resets the count."""
        if self.period <= 0:
            return "queued" if enqueue(0) else "dropped"
        key = (job, notifier)
        with self._lock:  # held across enqueue: two runs ending at once cannot both pass
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return "suppressed"
            if not enqueue(self._suppressed.get(key, 0)):
                return "dropped"
            self._last[key] = now
            self._suppressed.pop(key, None)
            return "queued"
