"""Delivery records made on runs' threads (drops, cooldown suppressions), written by a thread
of their own, several per commit.

A full queue drops every run's notices; one commit per drop on the run's thread cost each
run 0.5 to 1 ms (``bench/bench_notify.py``, ``all``). The delivery worker cannot write them:
when the queue is full it is usually stuck on a destination that does not answer.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence

from ..history import NotificationRecord

Store = Callable[[Sequence[NotificationRecord]], None]


class RecordWriter:
    def __init__(self, store: Store, name: str = "ofelia-notify-records") -> None:
        self.store = store
        self.name = name
        self._pending: deque[NotificationRecord] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def add(self, record: NotificationRecord) -> None:
        """Write ``record`` soon (at once, on this thread, when the writer is not running)."""
        with self._lock:
            running = self._thread is not None and not self._closed
            if running:
                self._pending.append(record)
        if running:
            self._wake.set()
        else:
            self.store([record])

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending and stop; later records are written by the caller's thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        self._flush()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._flush()
            if self._closed:
                self._flush()  # what came while the last write went on
                return

    def _flush(self) -> None:
        records: list[NotificationRecord] = []
        with contextlib.suppress(IndexError):  # popleft is atomic: close() may flush at the same time
            while True:
                records.append(self._pending.popleft())
        if records:
            self.store(records)
