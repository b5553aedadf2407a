"""Connections to the engine and the pools that keep them.

The transport is Python's ``http.client``: one HTTP/1.1 connection per
request at a time, kept alive between requests (never HTTP/2: the engine's
unix socket speaks HTTP/1.1 only, and forcing HTTP/2 there is what broke the
Go fork's client). Two pools: one for control calls, capped at
``max-conns-per-host`` open connections, and one for long-lived streams (exec
output, logs, events, waits), uncapped because each stream belongs to one
running job and the scheduler already bounds those. Idle connections are
kept up to ``max-idle-conns-per-host`` per pool and ``max-idle-conns`` in all,
and closed once idle for ``idle-conn-timeout``. No background thread: expiry
is checked when a connection is taken or returned.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from .settings import Endpoint


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the engine's unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def connection_factory(
    endpoint: Endpoint, connect_timeout: float, tls: ssl.SSLContext | None
) -> Callable[[], http.client.HTTPConnection]:
    """A function that opens a new (not yet connected) connection to ``endpoint``."""
    if endpoint.scheme == "unix":
        return lambda: UnixHTTPConnection(endpoint.path, connect_timeout)
    if endpoint.scheme == "https":
        return lambda: http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=connect_timeout,
                                                   context=tls)
    return lambda: http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=connect_timeout)


class PoolTimeout(Exception):
    """No connection came free in time."""


class IdleBudget:
    """``max-idle-conns``: the idle connections all pools may keep together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._held >= self.limit:
                return False
            self._held += 1
            return True

    def give_back(self, count: int = 1) -> None:
        with self._lock:
            self._held -= count


@dataclass
class PoolCounters:
    created: int = 0
    reused: int = 0
    closed_idle: int = 0
    closed_stale: int = 0
    discarded: int = 0
    waits: int = 0
    wait_timeouts: int = 0
    overflow: int = 0
    peak_in_use: int = 0
    saturations: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class ConnectionPool:
    """Kept-alive connections to the engine, most recently used first."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], http.client.HTTPConnection],
        *,
        max_open: int | None,
        max_idle: int,
        idle_timeout: float,
        budget: IdleBudget,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._factory = factory
        self._max_open = max_open
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._budget = budget
        self._clock = clock
        # (connection, when it was returned); the right end is the freshest.
        self._idle: deque[tuple[http.client.HTTPConnection, float]] = deque()
        self._in_use = 0
        #: Connections held by calls that start work (exec_create, container_create, ...).
        self._starts_in_use = 0
        self._cond = threading.Condition(threading.Lock())
        # Calls that start work may hold at most half the connections: under overload the
        # engine answers those slowly, and the other half keeps inspects, kills and the
        # runs' own exec_inspect on pooled connections.
        self._starts_max = None if max_open is None else max(1, max_open // 2)
        self.counters = PoolCounters()
        self._saturated = False

    def acquire(self, timeout: float, *, starts_work: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was used before; ``PoolTimeout`` after ``timeout`` s.
        A caller that ``starts_work`` holds at most half the connections and waits when
        none is free; any other caller never waits (see :meth:`_checkout`)."""
        conn, reused, stale = self._checkout(timeout, starts_work)
        for old in stale:
            old.close()
        # Checked outside the lock: poll() releases the GIL, and a lock held across it
        # would make every other caller queue behind this one.
        if reused and _dropped(conn):
            # The engine closed it while idle (restart, its own keep-alive limit): the
            # slot is ours, so a fresh connection takes it.
            conn.close()
            with self._cond:
                self.counters.closed_stale += 1
                self.counters.reused -= 1
                self.counters.created += 1
            return self._factory(), False
        return conn, reused

    def _checkout(
        self, timeout: float, starts_work: bool
    ) -> tuple[http.client.HTTPConnection, bool, list[http.client.HTTPConnection]]:
        deadline: float | None = None
        stale: list[http.client.HTTPConnection] = []
        with self._cond:
            while True:
                capped = self._max_open is not None and self._in_use >= self._max_open
                if starts_work and self._starts_max is not None and self._starts_in_use >= self._starts_max:
                    capped = True
                if not capped:
                    conn = self._take_idle(stale)
                    reused = conn is not None
                    if conn is None:
                        conn = self._factory()
                        self.counters.created += 1
                    else:
                        self.counters.reused += 1
                    self._hand_out(conn, starts_work, overflow=False)
                    return conn, reused, stale
                if not starts_work:
                    # Past max-conns-per-host, a call that only looks at or finishes work opens
                    # a short-lived connection instead of queueing behind calls the engine is
                    # slow to answer; the request limiter still bounds how many there are.
                    conn = self._factory()
                    self.counters.overflow += 1
                    self._hand_out(conn, starts_work, overflow=True)
                    return conn, False, stale
                # A call that starts work waits for a connection to come back.
                if deadline is None:
                    deadline = time.monotonic() + timeout
                    self.counters.waits += 1
                    self._log_saturation(True)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.counters.wait_timeouts += 1
                    for old in stale:
                        old.close()
                    raise PoolTimeout(
                        f"all {self._max_open} {self.name} connections stayed busy for {timeout:g} s"
                    )
                self._cond.wait(remaining)

    def _hand_out(self, conn: http.client.HTTPConnection, starts_work: bool, *, overflow: bool) -> None:
        # Under the lock. The connection remembers how it was handed out, for release().
        conn.ofelia_lease = (starts_work, overflow)  # type: ignore[attr-defined]
        self._in_use += 1
        self._starts_in_use += starts_work
        self._note_in_use()

    def _take_idle(self, stale: list[http.client.HTTPConnection]) -> http.client.HTTPConnection | None:
        """The freshest idle connection; those idle too long go to ``stale`` (closed by the caller)."""
        now = self._clock()
        while self._idle:
            conn, since = self._idle.pop()
            self._budget.give_back()
            if now - since >= self._idle_timeout:
                self.counters.closed_idle += 1
                stale.append(conn)
                continue
            return conn
        return None

    def release(self, conn: http.client.HTTPConnection, *, reusable: bool) -> None:
        """Give a connection back; it is kept if reusable and there is room, else closed."""
        close: list[http.client.HTTPConnection] = []
        starts_work, overflow = getattr(conn, "ofelia_lease", (False, False))
        with self._cond:
            self._in_use -= 1
            self._starts_in_use -= starts_work
            if overflow:
                reusable = False
            now = self._clock()
            # Close the oldest ones that have been idle too long (no background thread does it).
            while self._idle and now - self._idle[0][1] >= self._idle_timeout:
                close.append(self._idle.popleft()[0])
                self._budget.give_back()
                self.counters.closed_idle += 1
            if reusable and conn.sock is not None and len(self._idle) < self._max_idle and self._budget.take():
                self._idle.append((conn, now))
            else:
                close.append(conn)
                self.counters.discarded += not overflow
            # Hysteresis: "free again" once half the connections are, so the log does not flap.
            if self._saturated and self._max_open is not None and self._in_use <= self._max_open // 2:
                self._log_saturation(False)
            self._cond.notify()
        for item in close:
            item.close()

    def close_idle(self) -> None:
        with self._cond:
            idle = [conn for conn, _ in self._idle]
            self._budget.give_back(len(idle))
            self._idle.clear()
        for conn in idle:
            conn.close()

    def _note_in_use(self) -> None:
        self.counters.peak_in_use = max(self.counters.peak_in_use, self._in_use)

    def _log_saturation(self, saturated: bool) -> None:
        if saturated == self._saturated:
            return
        self._saturated = saturated
        if saturated:
            self.counters.saturations += 1
            # Waiting for a connection is flow control, not a fault: info, never a warning.
            logger.info("Docker {} pool: all {} connections busy; calls now wait for one",
                        self.name, self._max_open)
        else:
            logger.info("Docker {} pool: {} of {} connections busy again", self.name, self._in_use, self._max_open)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            figures: dict[str, Any] = {
                "in_use": self._in_use,
                "idle": len(self._idle),
                "max_open": self._max_open,
                "max_idle": self._max_idle,
                "saturated": self._saturated,
            }
        counters = self.counters
        figures.update(
            created=counters.created, reused=counters.reused, closed_idle=counters.closed_idle,
            closed_stale=counters.closed_stale, discarded=counters.discarded, waits=counters.waits,
            wait_timeouts=counters.wait_timeouts, overflow=counters.overflow, peak_in_use=counters.peak_in_use,
            saturations=counters.saturations,
        )
        return figures


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle connection's peer closed it (readable at EOF) or it has no socket."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        # poll, not select: a busy daemon's descriptors go past select's 1024.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        ready = poller.poll(0)
    except (OSError, ValueError):
        return True
    # An idle HTTP connection has nothing to read: readable means EOF or garbage.
    return bool(ready)


__all__ = ["ConnectionPool", "IdleBudget", "PoolTimeout", "UnixHTTPConnection", "connection_factory"]
