"""The bounded delivery queue and its one worker thread.

Runs hand deliveries over with :meth:`DeliveryQueue.put`, which never blocks: a full
queue refuses (the caller logs and records the drop). The worker takes what is ready (up
to :data:`BATCH` deliveries: one exchange with the notification process) and sends them
one after the other; a send that fails is put back with a due time ``retry_delay`` later,
so a failing destination never holds up the others (no sleep in the worker). At shutdown
:meth:`DeliveryQueue.close` lets the worker drain for a bounded time.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from loguru import logger
from ofelia_hookspecs.types import Notice, Notifier

Outcome = Literal["sent", "failed", "dropped"]
#: ``report(delivery, error)``: a sender says how each delivery of a batch went (``None``: sent).
Report = Callable[["Delivery", "Exception | None"], None]
#: ``send(batch, report)``: one attempt of each delivery, each reported once.
Sender = Callable[[Sequence["Delivery"], Report], None]

#: Deliveries the worker takes at once.
BATCH = 32
#: Seconds a delivery waits at most for a pause in runs (``notify-quiet``).
QUIET_MAX_WAIT = 1.0

REDACTED = "<redacted>"
#: What a delivery still queued at shutdown is recorded with.
STOPPED_ERROR = "not delivered: the daemon stopped first"
#: What a send still running at the end of the drain is recorded with.
STUCK_ERROR = "the send had not finished when the daemon stopped"


@dataclass
class Delivery:
    notifier: Notifier
    notice: Notice
    #: Secret values of the notifier's settings, scrubbed from error messages.
    secrets: tuple[str, ...] = ()
    #: The notifier pickled, for the notification process; None: sent from this process.
    blob: bytes | None = None
    attempts: int = 0
    error: str | None = None
    #: When it was queued, or its retry fell due (the queue's clock).
    queued_at: float = 0.0

    @property
    def prefix(self) -> str:
        return log_prefix(self.notice, self.notifier.name)


def log_prefix(notice: Notice, notifier: str) -> str:
    """How log lines about one run's notice to one notifier begin."""
    return f'[Job "{notice.job_name}" ({notice.run_id})] notifier \'{notifier}\''


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced (longest first, so a prefix never leaves a tail)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def describe(exc: BaseException, secrets: Iterable[str]) -> str:
    text = str(exc) if getattr(exc, "described", False) else f"{type(exc).__name__}: {exc}"
    return scrub(text, secrets)


def send_each(batch: Sequence[Delivery], report: Report) -> None:
    """The plain sender: each notifier's ``send`` on this thread, one after the other."""
    for delivery in batch:
        try:
            delivery.notifier.send(delivery.notice)
        except Exception as exc:  # any failure of a plugin's send is a failed attempt
            report(delivery, exc)
        else:
            report(delivery, None)


class DeliveryQueue:
    """``on_done(delivery, outcome, error)`` is called once per delivery (from the worker,
    or from :meth:`close` for what is left at shutdown); ``send`` makes the attempts."""

    def __init__(
        self,
        on_done: Callable[[Delivery, Outcome, str | None], None],
        *,
        max_size: int = 1000,
        send: Sender = send_each,
        clock: Callable[[], float] = time.monotonic,
        name: str = "ofelia-notify",
    ) -> None:
        self.on_done = on_done
        self.send = send
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
        #: ``notify-quiet``: send once no run has started or ended for this long (0: at once).
        self.quiet_period = 0.0
        self.quiet_max_wait = QUIET_MAX_WAIT
        self._last_activity = float("-inf")
        #: The batch being sent, by id: what close() reports if the worker is still stuck in it.
        self._in_flight: dict[int, Delivery] = {}

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
            delivery.queued_at = self.clock()
            self._ready.append(delivery)
            self._cond.notify()
        return True

    def note_activity(self) -> None:
        """A run started or ended: deliveries wait for the quiet period after it (no lock: the
        worker reads the newest value when it next looks)."""
        self._last_activity = self.clock()

    def pending(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def close(self, timeout: float, interrupt: Callable[[], None] | None = None) -> None:
        """Stop taking deliveries; let the worker send what is queued (and retries due) for up to
        ``timeout`` seconds; report what is left as dropped (never tried) or failed (tried).
        ``interrupt`` is called if a send is still in flight then (to make it fail at once)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = self.clock() + timeout
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout))
            if thread.is_alive() and interrupt is not None:
                interrupt()
            thread.join(1.0)
            if thread.is_alive():
                logger.warning(f"notifications: a delivery was still being sent after {timeout:g}s; not waiting for it")
        with self._cond:
            stuck = list(self._in_flight.values())
            self._in_flight.clear()
            left = list(self._ready) + [item for _, _, item in sorted(self._delayed)]
            self._ready.clear()
            self._delayed.clear()
        for delivery in stuck:
            self._done(delivery, "failed", STUCK_ERROR)
        for delivery in left:
            if delivery.attempts:
                self._done(delivery, "failed", f"{delivery.error}; not retried: the daemon stopped")
            else:
                self._done(delivery, "dropped", STOPPED_ERROR)

    # --- the worker -------------------------------------------------------------------

    def _work(self) -> None:
        while batch := self._next():
            self._attempt(batch)

    def _next(self) -> list[Delivery]:
        """What is ready (due retries first), up to :data:`BATCH`; empty when the worker stops."""
        with self._cond:
            while True:
                now = self.clock()
                if self._closing and now >= self._deadline:
                    return []
                pause = self._quiet_wait(now)
                if pause > 0:
                    self._cond.wait(pause)
                    continue
                batch: list[Delivery] = []
                while self._delayed and self._delayed[0][0] <= now and len(batch) < BATCH:
                    batch.append(heapq.heappop(self._delayed)[2])
                while self._ready and len(batch) < BATCH:
                    batch.append(self._ready.popleft())
                if batch:
                    self._in_flight = {id(delivery): delivery for delivery in batch}
                    return batch
                if self._closing and (not self._delayed or self._delayed[0][0] > self._deadline):
                    return []  # nothing left that could be sent in time
                wait = self._delayed[0][0] - now if self._delayed else None
                if self._closing:
                    wait = min(wait if wait is not None else float("inf"), self._deadline - now)
                self._cond.wait(wait)

    def _quiet_wait(self, now: float) -> float:
        """Seconds to hold what is ready so a burst of runs goes first: until ``quiet_period``
        after the last run activity, and at most ``quiet_max_wait`` after the oldest
        delivery became ready (a steady stream of runs delays deliveries by that, no more)."""
        if self.quiet_period <= 0 or self._closing:
            return 0.0
        ready = [self._ready[0].queued_at] if self._ready else []
        if self._delayed and self._delayed[0][0] <= now:
            ready.append(self._delayed[0][0])
        if not ready:
            return 0.0
        return min(self._last_activity + self.quiet_period, min(ready) + self.quiet_max_wait) - now

    def _attempt(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            delivery.attempts += 1
        try:
            self.send(batch, self._report)
        except Exception as exc:  # a sender that raises fails what it did not report
            for delivery in batch:
                self._report(delivery, exc)

    def _report(self, delivery: Delivery, error: Exception | None) -> None:
        with self._cond:
            if self._in_flight.pop(id(delivery), None) is None:
                return  # reported already (or by close(), the drain over)
        if error is None:
            self._done(delivery, "sent", None)
            return
        delivery.error = describe(error, delivery.secrets)
        if not self._retry(delivery):
            self._done(delivery, "failed", delivery.error)

    def _retry(self, delivery: Delivery) -> bool:
        try:
            retries = int(delivery.notifier.retry_count)
            delay = max(0.0, float(delivery.notifier.retry_delay))
        except Exception:  # a notifier with odd retry settings is not retried
            return False
        if delivery.attempts > retries:
            return False
        due = self.clock() + delay
        delivery.queued_at = due
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
