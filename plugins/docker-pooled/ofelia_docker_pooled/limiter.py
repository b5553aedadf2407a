"""At most ``max-concurrent-requests`` requests in flight.

A slot is taken before a request is sent and given back when its answer has
been read. A stream (exec output, logs, events) keeps its slot after its
headers only until its first bytes arrive, or ``stream-slot-hold`` seconds at
most: the engine answers an exec's start before it has spawned the process,
so the first bytes are what says the work is done, and a job that stays
silent for hours never holds a slot. A caller that finds no slot free waits
up to ``request-queue-timeout`` and then fails with :class:`Overloaded`.
Checking and taking a slot happen under one lock, so there is no
time-of-check race; slots of streams whose hold ran out are taken back by
the callers waiting for one (no thread of its own).

Calls that start new work in the engine (:data:`STARTS_WORK`) may take at
most nine tenths of the slots, and when callers wait, those that look at or
finish work (inspect, list, ping, kill, remove, ...) get the next free slot
first: under overload the runs in progress finish and control calls are
answered, while new work queues.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger
from ofelia_hookspecs.errors import DockerError

#: Operations that make the engine start something new; they yield to every other call.
STARTS_WORK = frozenset(
    {"exec_create", "exec_start", "container_create", "container_start", "image_pull", "service_create"}
)


class Overloaded(DockerError):
    """No request slot came free in time. The engine is busy, not down: never
    counted by the circuit breaker."""


class RequestLimiter:
    def __init__(
        self, limit: int, queue_timeout: float, stream_hold: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.queue_timeout = queue_timeout
        self.stream_hold = stream_hold
        self._clock = clock
        lock = threading.Lock()
        #: Waiters that finish or look at work, and waiters that start new work: one lock.
        self._first = threading.Condition(lock)
        self._second = threading.Condition(lock)
        self._cond = self._first
        self._waiting_first = 0
        # A tenth of the slots stays for calls that do not start work (at least one).
        self._starts_limit = max(1, limit - max(1, limit // 10))
        self._in_flight = 0
        #: Streams still holding their slot: token -> when the hold runs out.
        self._holds: dict[int, float] = {}
        self._tokens = itertools.count(1)
        self._peak = 0
        self._waited = 0
        self._timeouts = 0
        self._expired_holds = 0
        self._queueing = False

    def acquire(self, operation: str) -> None:
        starts_work = operation in STARTS_WORK
        with self._cond:
            if self._in_flight >= (self._starts_limit if starts_work else self.limit) or (
                starts_work and self._waiting_first
            ):
                self._wait(operation, starts_work)
            self._in_flight += 1
            if self._in_flight > self._peak:
                self._peak = self._in_flight

    def _wait(self, operation: str, starts_work: bool) -> None:
        """Under the lock, with every slot taken: wait for one or raise ``Overloaded``."""
        self._waited += 1
        if not starts_work:
            self._waiting_first += 1
        try:
            self._wait_turn(operation, starts_work)
        finally:
            if not starts_work:
                self._waiting_first -= 1

    def _wait_turn(self, operation: str, starts_work: bool) -> None:
        if not self._queueing:
            self._queueing = True
            # Flow control, not a fault: info, never a warning.
            logger.info("Docker client: {} requests in flight; further calls wait up to {:g} s",
                        self.limit, self.queue_timeout)
        deadline = time.monotonic() + self.queue_timeout
        condition = self._second if starts_work else self._first
        while True:
            self._reclaim_expired()
            cap = self._starts_limit if starts_work else self.limit
            if self._in_flight < cap and not (starts_work and self._waiting_first):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._timeouts += 1
                raise Overloaded(
                    f"too many Docker requests in flight: waited {self.queue_timeout:g} s for one of "
                    f"{self.limit} slots ([docker-client] max-concurrent-requests, request-queue-timeout)",
                    operation=operation,
                )
            if self._holds:
                remaining = min(remaining, max(0.001, min(self._holds.values()) - self._clock()))
            condition.wait(remaining)

    def _reclaim_expired(self) -> None:
        if not self._holds:
            return
        now = self._clock()
        for token in [t for t, until in self._holds.items() if until <= now]:
            del self._holds[token]
            self._in_flight -= 1
            self._expired_holds += 1

    def release(self) -> None:
        with self._cond:
            self._free_one()

    def hold(self) -> int:
        """Keep the caller's slot for a stream until :meth:`release_hold` or the hold runs out."""
        with self._cond:
            token = next(self._tokens)
            self._holds[token] = self._clock() + self.stream_hold
            return token

    def release_hold(self, token: int) -> None:
        """The stream's first bytes arrived (or it ended): its slot is free. Idempotent."""
        with self._cond:
            if self._holds.pop(token, None) is not None:
                self._free_one()

    def _free_one(self) -> None:
        self._in_flight -= 1
        if self._queueing and self._in_flight < self.limit // 2:
            self._queueing = False
            logger.info("Docker client: requests in flight back to {}", self._in_flight)
        if self._waiting_first:
            self._first.notify()
        else:
            self._second.notify()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "in_flight": self._in_flight,
                "streams_holding": len(self._holds),
                "limit": self.limit,
                "peak": self._peak,
                "waited": self._waited,
                "timeouts": self._timeouts,
                "expired_stream_holds": self._expired_holds,
            }


__all__ = ["Overloaded", "RequestLimiter"]
