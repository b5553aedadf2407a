"""Web tokens in an LRU-ordered dict with a min-heap by expiry and one clean-up worker.

Two structures behind one lock:

* ``_tokens``, an :class:`~collections.OrderedDict` from token to its entry
  ``(expires_at, token, subject)`` in least-recently-*used* order: ``issue`` adds at
  the end and ``validate`` moves the token there (``move_to_end``, O(1)), so
  the first entry is the token idle longest. Past the cap it is the one
  evicted: the user who has not used the UI for longest is logged out, not
  the one who logged in first.
* ``_heap``, a min-heap of the same entry tuples (ordered by expiry, then by
  token), so the token that expires next is always on top: ``issue`` pushes
  (O(log n)) and clean-up pops. Sharing one tuple between the two structures
  keeps a token's cost to its string, one tuple, one float and the two
  containers' slots (about 300 bytes).

Revoking, evicting or expiring a token on ``validate`` removes it from the
dict only and leaves its heap entry behind as garbage (lazy deletion, O(1)
here; O(log n) when popped later). An entry is garbage when it is no longer
the dict's entry for its token (checked by identity), and garbage is bounded: when
it outnumbers the held tokens by more than :data:`COMPACT_SLACK`, the heap is
rebuilt from the live entries (O(n), at most once per n + slack removals, so
amortised O(1) per removal).

A token is valid while ``clock() < expires_at``; ``validate`` checks that
itself, so an expired token is never valid, whether or not clean-up has
removed it yet. Clean-up is only about memory: one daemon thread, started by
the first ``issue`` (building the manager starts nothing), wakes up every
``cleanup-interval`` and removes at most ``cleanup-batch-size`` expired
tokens, those that expired first, in one pass under the lock. At the cap,
``issue`` first drops expired tokens from the top of the heap and evicts a
live token only when none is left.

The clock is ``DriverContext.clock`` (monotonic seconds, a FakeClock in
tests); the worker's sleep is a real :meth:`threading.Event.wait`, so
:meth:`HeapTokenManager.close` stops it at once. Tests call
:meth:`HeapTokenManager.cleanup_once` directly instead of waiting for it.

Tokens are never logged, and never appear in ``stats()``.
"""

from __future__ import annotations

import heapq
import math
import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from loguru import logger

from .settings import HeapSettings

#: Bytes of randomness per token: 256 bits, 43 URL-safe characters (as the baseline).
TOKEN_BYTES = 32
#: Heap entries of tokens no longer held allowed beyond the number of held tokens.
COMPACT_SLACK = 1024
#: How long ``close`` waits for the worker (it only ever waits on an event or does one pass).
JOIN_TIMEOUT = 10.0
WORKER_NAME = "ofelia-tokens-heap-cleanup"

#: ``(expires_at, token, subject)``: one tuple per token, in the dict and in the heap.
Entry = tuple[float, str, str]


class HeapTokenManager:
    """Opaque bearer tokens, safe to share between threads.

    Costs with n tokens held: ``issue`` O(log n) (a heap push; at the cap, one
    eviction in O(1) plus popping expired tokens, each popped once), ``revoke``
    O(1) (lazy deletion; the heap entry is popped or compacted away later, in
    amortised O(log n)), ``validate`` O(1) (a dict lookup and an LRU move).

    ``validate`` looks the token up as a dict key instead of comparing it with
    :func:`hmac.compare_digest`: the token *is* the key, so a timing
    difference can at best say something about a hash of the attacker's own
    guess, never about a stored token, and 256 random bits cannot be guessed.
    """

    def __init__(self, settings: HeapSettings, *, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._max_tokens = settings.max_tokens
        self._batch = settings.cleanup_batch_size
        # Both hold the same (expires_at, token, subject) tuples.
        self._tokens: OrderedDict[str, Entry] = OrderedDict()
        self._heap: list[Entry] = []
        self._lock = threading.Lock()
        self._issued = 0
        self._revoked = 0
        self._expired = 0
        self._evicted = 0
        self._cleanup_passes = 0
        self._cleanup_removed = 0
        self._compactions = 0
        self._worker_errors = 0
        # The worker, started by the first issue(); the stop event is its only link back
        # besides a weak reference, so a manager dropped without close() still goes away.
        self._worker_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

    # -- the TokenManager Protocol -------------------------------------------------

    def issue(self, subject: str, expires_in: float) -> str:
        # NaN would compare false with every time and so never expire.
        if not isinstance(expires_in, int | float) or math.isnan(expires_in) or expires_in <= 0:
            raise ValueError(f"expires_in must be a positive number of seconds, got {expires_in!r}")
        if self._worker is None and not self._closed:
            self._start_worker()
        token = secrets.token_urlsafe(TOKEN_BYTES)  # outside the lock: a getrandom() call
        with self._lock:
            tokens = self._tokens
            while token in tokens:  # astronomically unlikely; costs one lookup
                token = secrets.token_urlsafe(TOKEN_BYTES)
            now = self._clock()
            if len(tokens) >= self._max_tokens:
                self._make_room(now)
            entry = (now + expires_in, token, subject)
            tokens[token] = entry
            heapq.heappush(self._heap, entry)
            self._issued += 1
        return token

    def validate(self, token: str) -> str | None:
        if not isinstance(token, str):
            return None
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._tokens[token]
                self._expired += 1
                self._compact_if_needed()
                return None
            self._tokens.move_to_end(token)
            return entry[2]

    def revoke(self, token: str) -> bool:
        """Forget ``token``. An expired token counts as unknown (``False``), as it
        does for ``validate`` and for the baseline; it is dropped either way."""
        if not isinstance(token, str):
            return False
        with self._lock:
            entry = self._tokens.pop(token, None)
            if entry is None:
                return False
            self._compact_if_needed()
            if self._clock() >= entry[0]:
                self._expired += 1
                return False
            self._revoked += 1
            return True

    def stats(self) -> dict[str, Any]:
        """``active`` counts unexpired tokens; ``held`` also counts expired ones not
        yet removed (they are invalid already). Counting the expired ones walks only
        the top of the heap, the entries that expired, never the whole of it."""
        with self._lock:
            held = len(self._tokens)
            expired_held = self._count_expired(self._clock())
            figures: dict[str, Any] = {
                "driver": "heap",
                "active": held - expired_held,
                "held": held,
                "max_tokens": self._max_tokens,
                "issued": self._issued,
                "revoked": self._revoked,
                "expired": self._expired,
                "evicted": self._evicted,
                "cleanup_passes": self._cleanup_passes,
                "cleanup_removed": self._cleanup_removed,
                "heap_size": len(self._heap),
                "heap_garbage": len(self._heap) - held,
                "compactions": self._compactions,
            }
        figures.update(
            worker=self.worker_state,
            worker_alive=self.worker_alive,
            worker_errors=self._worker_errors,
            cleanup_batch_size=self._batch,
            cleanup_interval=self._settings.cleanup_interval,
        )
        return figures

    def close(self) -> None:
        """Stop the clean-up worker and wait for it (it wakes up at once). Tokens stay
        valid; issuing after ``close`` still works, without the worker."""
        with self._worker_lock:
            self._closed = True
            thread = self._worker
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():  # pragma: no cover - a pass never takes this long
                logger.warning("token manager: the clean-up worker did not stop within {}s", JOIN_TIMEOUT)

    # -- beyond the Protocol ---------------------------------------------------------

    @property
    def settings(self) -> HeapSettings:
        return self._settings

    @property
    def worker_alive(self) -> bool:
        thread = self._worker
        return thread is not None and thread.is_alive()

    @property
    def worker_state(self) -> str:
        """``not started`` (no token issued yet), ``running`` or ``stopped``."""
        if self._worker is None:
            return "stopped" if self._closed else "not started"
        return "running" if self._worker.is_alive() else "stopped"

    def cleanup_once(self) -> int:
        """One clean-up pass: remove at most ``cleanup-batch-size`` expired tokens,
        those that expired first. Returns how many were removed. The worker calls
        this every ``cleanup-interval``; tests call it directly."""
        with self._lock:
            now = self._clock()
            tokens, heap = self._tokens, self._heap
            removed = 0
            while heap and removed < self._batch:
                top = heap[0]
                if tokens.get(top[1]) is not top:
                    heapq.heappop(heap)  # garbage: revoked, evicted or expired on validate
                    continue
                if now < top[0]:
                    break
                heapq.heappop(heap)
                del tokens[top[1]]
                removed += 1
            self._expired += removed
            self._cleanup_removed += removed
            self._cleanup_passes += 1
            self._compact_if_needed()
            held = len(tokens)
        if removed:
            logger.debug("token manager: clean-up removed {} expired tokens, {} held", removed, held)
        return removed

    # -- under self._lock --------------------------------------------------------------

    def _make_room(self, now: float) -> None:
        """At the cap: drop expired tokens from the top of the heap, then evict the
        least recently used tokens until one more fits."""
        tokens, heap = self._tokens, self._heap
        while heap and len(tokens) >= self._max_tokens:
            top = heap[0]
            if tokens.get(top[1]) is not top:
                heapq.heappop(heap)  # garbage
            elif now >= top[0]:
                heapq.heappop(heap)
                del tokens[top[1]]
                self._expired += 1
            else:
                break
        while len(tokens) >= self._max_tokens:
            tokens.popitem(last=False)  # idle longest; its heap entry becomes garbage
            self._evicted += 1
        self._compact_if_needed()

    def _compact_if_needed(self) -> None:
        """Rebuild the heap from its live entries once garbage outnumbers the held
        tokens by more than COMPACT_SLACK: O(n), once per n + slack removals."""
        tokens, heap = self._tokens, self._heap
        if len(heap) - len(tokens) <= len(tokens) + COMPACT_SLACK:
            return
        live = [entry for entry in heap if tokens.get(entry[1]) is entry]
        heapq.heapify(live)
        self._heap = live
        self._compactions += 1

    def _count_expired(self, now: float) -> int:
        """Held tokens that have expired: a walk of the heap's top, where every entry
        has expired (a child never expires before its parent), O(entries expired)."""
        heap, tokens = self._heap, self._tokens
        size, count, stack = len(heap), 0, [0]
        while stack:
            index = stack.pop()
            if index >= size:
                continue
            entry = heap[index]
            if entry[0] > now:
                continue
            if tokens.get(entry[1]) is entry:
                count += 1
            stack.append(2 * index + 1)
            stack.append(2 * index + 2)
        return count

    # -- the worker ------------------------------------------------------------------------

    def _start_worker(self) -> None:
        with self._worker_lock:
            if self._worker is not None or self._closed:
                return
            thread = threading.Thread(
                target=_worker_loop,
                args=(weakref.ref(self), self._stop, self._settings.cleanup_interval),
                name=WORKER_NAME,
                daemon=True,
            )
            thread.start()
            self._worker = thread
        logger.debug("token manager: clean-up worker started (every {}s, {} tokens a pass)",
                     self._settings.cleanup_interval, self._batch)

    def _worker_failed(self) -> None:
        self._worker_errors += 1


def _worker_loop(ref: weakref.ref[HeapTokenManager], stop: threading.Event, interval: float) -> None:
    """Every ``interval`` seconds, one clean-up pass; returns when ``stop`` is set or
    the manager is gone. A failing pass is logged and the next one tried."""
    while not stop.wait(interval):
        manager = ref()
        if manager is None:
            return
        try:
            manager.cleanup_once()
        except Exception:  # never let the worker die quietly: log, count and carry on
            manager._worker_failed()
            logger.exception("token manager: clean-up pass failed; next one in {}s", interval)
        del manager


__all__ = ["COMPACT_SLACK", "TOKEN_BYTES", "WORKER_NAME", "HeapTokenManager"]
