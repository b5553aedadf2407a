"""The bounded delivery queue and its one worker thread.

Runs hand deliveries over with :meth:`DeliveryQueue.put`, which never blocks: a full
queue refuses (the caller logs and records the drop). The worker sends one delivery at a
time; a ``send`` that raises is put back with a due time ``retry_delay`` later, so a
failing destination never holds up the others (no sleep in the worker). At shutdown
:meth:`DeliveryQueue.close` lets the worker drain for a bounded time.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from loguru import logger
from ofelia_hookspecs.types import Notice, Notifier

Outcome = Literal["sent", "failed", "dropped"]

REDACTED = "<redacted>"
#: What a delivery still queued at shutdown is recorded with.
STOPPED_ERROR = "not delivered: the daemon stopped first"


@dataclass
class Delivery:
    notifier: Notifier
    notice: Notice
    #: Secret values of the notifier's settings, scrubbed from error messages.
    secrets: tuple[str, ...] = ()
    attempts: int = 0
    error: str | None = None

    @property
    def prefix(self) -> str:
        return f'[Job "{self.notice.job_name}" ({self.notice.run_id})] notifier \'{self.notifier.name}\''


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced (longest first, so a prefix never leaves a tail)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def describe(exc: BaseException, secrets: Iterable[str]) -> str:
    return scrub(f"{type(exc).__name__}: {exc}", secrets)


class DeliveryQueue:
    """``on_done(delivery, outcome, error)`` is called once per delivery (from the worker,
    or from :meth:`close` for what is left at shutdown)."""

    def __init__(
        self,
        on_done: Callable[[Delivery, Outcome, str | None], None],
        *,
        max_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        name: str = "ofelia-notify",
    ) -> None:
        self.on_done = on_done
        self.max_size = max_size
        self.clock = clock
        self.name = name
        self._cond = threading.Condition()
        self._ready: deque[Delivery] = deque()
        #: (due, sequence, delivery): retries waiting for their time.
        self._delayed: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._closing = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            # A daemon thread: a send stuck past the drain time must not keep the process alive.
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._thread.start()

    def put(self, delivery: Delivery) -> bool:
        """Queue ``delivery``; ``False`` (at once) when the queue is full or closed."""
        with self._cond:
            if self._closing or len(self._ready) + len(self._delayed) >= self.max_size:
                return False
            self._ready.append(delivery)
            self._cond.notify()
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def close(self, timeout: float) -> None:
        """Stop taking deliveries; let the worker send what is queued (and retries due) for up to
        ``timeout`` seconds; report what is left as dropped (never tried) or failed (tried)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = self.clock() + timeout
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout) + 1.0)
            if thread.is_alive():
                logger.warning(f"notifications: a delivery was still being sent after {timeout:g}s; not waiting for it")
        with self._cond:
            left = list(self._ready) + [item for _, _, item in sorted(self._delayed)]
            self._ready.clear()
            self._delayed.clear()
        for delivery in left:
            if delivery.attempts:
                self._done(delivery, "failed", f"{delivery.error}; not retried: the daemon stopped")
            else:
                self._done(delivery, "dropped", STOPPED_ERROR)

    # --- the worker -------------------------------------------------------------------

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            self._attempt(delivery)

    def _next(self) -> Delivery | None:
        with self._cond:
            while True:
                now = self.clock()
                if self._closing and now >= self._deadline:
                    return None
                if self._delayed and self._delayed[0][0] <= now:
                    return heapq.heappop(self._delayed)[2]
                if self._ready:
                    return self._ready.popleft()
                if self._closing and (not self._delayed or self._delayed[0][0] > self._deadline):
                    return None  # nothing left that could be sent in time
                wait = self._delayed[0][0] - now if self._delayed else None
                if self._closing:
                    wait = min(wait if wait is not None else float("inf"), self._deadline - now)
                self._cond.wait(wait)

    def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        try:
            delivery.notifier.send(delivery.notice)
        except Exception as exc:  # any failure of a plugin's send is a failed attempt
            delivery.error = describe(exc, delivery.secrets)
            if self._retry(delivery):
                return
            self._done(delivery, "failed", delivery.error)
            return
        self._done(delivery, "sent", None)

    def _retry(self, delivery: Delivery) -> bool:
        try:
            retries = int(delivery.notifier.retry_count)
            delay = max(0.0, float(delivery.notifier.retry_delay))
        except Exception:  # a notifier with odd retry settings is not retried
            return False
        if delivery.attempts > retries:
            return False
        due = self.clock() + delay
        with self._cond:
            if self._closing and due > self._deadline:
                return False
            heapq.heappush(self._delayed, (due, next(self._seq), delivery))
        logger.info(f"{delivery.prefix}: attempt {delivery.attempts} failed ({delivery.error}); "
                    f"retrying in {delay:g}s")
        return True

    def _done(self, delivery: Delivery, outcome: Outcome, error: str | None) -> None:
        try:
            self.on_done(delivery, outcome, error)
        except Exception as exc:  # recording must never kill the worker
            logger.opt(exception=exc).error(f"{delivery.prefix}: cannot record the delivery: {exc}")
