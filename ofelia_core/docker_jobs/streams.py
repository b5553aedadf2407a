"""Output copying and the max-runtime/cancel watchdog shared by the container runners.

The runners block on the engine (an exec's output stream, a container's
wait), so something else must notice a passed deadline or a set cancel
event. One :class:`Watchdog` thread serves every run in progress: it wakes
at the earliest deadline, or every :data:`POLL_INTERVAL` to look at the
cancel events, and hands a due run's stop action to a short-lived thread of
its own (stopping a container may take its whole grace period, which must
not delay the other runs). The thread exits when nothing is watched, so an
idle scheduler holds none.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ofelia_hookspecs.types import RunContext, StreamChunk

#: Longest wait, in seconds, for a set cancel event to be noticed.
POLL_INTERVAL = 0.2

Reason = Literal["timeout", "cancel"]


def copy_output(chunks: Iterable[StreamChunk], context: RunContext) -> int:
    """Write demultiplexed ``(stream, bytes)`` chunks into the run's buffers; return the bytes copied."""
    stdout, stderr = context.stdout, context.stderr
    total = 0
    for stream, data in chunks:
        (stderr if stream == "stderr" else stdout).write(data)
        total += len(data)
    return total


def count_output(chunks: Iterable[StreamChunk]) -> dict[str, int]:
    """Bytes per stream, read and dropped."""
    sizes = {"stdout": 0, "stderr": 0}
    for stream, data in chunks:
        key = "stderr" if stream == "stderr" else "stdout"
        sizes[key] += len(data)
    return sizes


def skip_output(chunks: Iterable[StreamChunk], skip: dict[str, int]) -> Iterable[StreamChunk]:
    """``chunks`` without the first ``skip[stream]`` bytes of each stream."""
    left = dict(skip)
    for stream, data in chunks:
        key = "stderr" if stream == "stderr" else "stdout"
        drop = left.get(key, 0)
        if drop:
            left[key] = max(0, drop - len(data))
            data = data[drop:]
            if not data:
                continue
        yield stream, data


class Watch:
    """One run under the watchdog. ``reason`` tells why it was stopped, if it was."""

    def __init__(
        self, watchdog: Watchdog, deadline: float | None, cancel: threading.Event, stop: Callable[[Reason], None]
    ) -> None:
        self._watchdog = watchdog
        self.deadline = deadline
        self.cancel = cancel
        self._stop = stop
        self.reason: Reason | None = None
        #: Set when the stop action has returned (or raised).
        self.stopped = threading.Event()
        #: The stop action's failure, if it raised.
        self.stop_error: BaseException | None = None

    @property
    def fired(self) -> bool:
        return self.reason is not None

    def close(self) -> bool:
        """Stop watching; True when the run had already been stopped (then wait with :meth:`wait_stopped`)."""
        self._watchdog.forget(self)
        return self.fired

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)

    def _fire(self, reason: Reason) -> None:
        try:
            self._stop(reason)
        except BaseException as exc:  # reported by the runner, never lost in a thread
            self.stop_error = exc
        finally:
            self.stopped.set()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Watchdog:
    """Calls a run's ``stop(reason)`` once, when its deadline passes or its cancel event is set."""

    def __init__(self, poll_interval: float = POLL_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self._poll = poll_interval
        self._clock = clock
        self._cond = threading.Condition()
        self._watches: set[Watch] = set()
        self._thread: threading.Thread | None = None

    def watch(self, context: RunContext, stop: Callable[[Reason], None]) -> Watch:
        """Watch a run with ``context.max_runtime`` (from now) and ``context.cancel``."""
        limit = context.max_runtime
        deadline = None if limit is None else self._clock() + limit
        watch = Watch(self, deadline, context.cancel, stop)
        with self._cond:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ofelia-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return watch

    def forget(self, watch: Watch) -> None:
        with self._cond:
            self._watches.discard(watch)

    @property
    def watching(self) -> int:
        with self._cond:
            return len(self._watches)

    def _loop(self) -> None:
        while True:
            due: list[tuple[Watch, Reason]] = []
            with self._cond:
                if not self._watches:
                    # Exit when idle; the next watch() starts a new thread (under the same lock).
                    self._thread = None
                    return
                now = self._clock()
                wait = self._poll
                for watch in list(self._watches):
                    if watch.cancel.is_set():
                        due.append((watch, "cancel"))
                    elif watch.deadline is not None and now >= watch.deadline:
                        due.append((watch, "timeout"))
                    elif watch.deadline is not None:
                        wait = min(wait, watch.deadline - now)
                for watch, reason in due:
                    # Decided under the lock: a run that closes its watch first is never stopped.
                    self._watches.discard(watch)
                    watch.reason = reason
                if not due:
                    self._cond.wait(max(wait, 0.0))
            for watch, reason in due:
                threading.Thread(target=watch._fire, args=(reason,), name="ofelia-stop", daemon=True).start()


_WATCHDOG: Watchdog | None = None
_WATCHDOG_LOCK = threading.Lock()


def watchdog() -> Watchdog:
    """The process's watchdog, made on first use (no thread until a run is watched)."""
    global _WATCHDOG
    if _WATCHDOG is None:
        with _WATCHDOG_LOCK:
            if _WATCHDOG is None:
                _WATCHDOG = Watchdog()
    return _WATCHDOG


def close_quietly(stream: object) -> None:
    """Close a driver's stream from any thread; a stream that cannot be closed is left to end."""
    close = getattr(stream, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
