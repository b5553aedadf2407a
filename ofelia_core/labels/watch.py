"""Follow the engine's containers and hand each new label set to the daemon.

Two threads, both stopped by :meth:`LabelWatcher.stop`:

- the **events** thread reads the engine's container events (create, start,
  die, destroy, rename, update, pause, unpause). An event does not describe
  the new state: it only marks the label set dirty. When the stream ends (the
  engine restarted) or cannot be opened, it reconnects with a doubling
  backoff, ``since=`` the last event's time, and marks the set dirty again,
  since events of an engine restart are not replayed;
- the **reconcile** thread lists the enabled containers when the set is dirty
  (after a short pause that folds a burst, such as ``compose up``, into one
  listing) and every ``poll_interval`` seconds whatever happens, parses their
  labels and calls ``on_change(labels)`` only when the result differs from
  the last one handed over.

Only running containers are listed (as Ofelia does): a stopped container's
jobs go away with its ``die`` event and come back with ``start``. While the
engine does not answer, the last label set stays in force and one warning is
logged; the next successful listing replaces it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loguru import logger
from ofelia_hookspecs.errors import DockerError
from ofelia_hookspecs.protocols import DockerClient

from ..errors import OfeliaError
from .parse import ENABLED_LABEL, LabelConfig

#: Container events that may change the set of running labelled containers or their names.
EVENTS = ("create", "start", "die", "destroy", "rename", "update", "pause", "unpause")
#: Pause after an event before listing, so a burst of events costs one listing.
DEBOUNCE = 0.2
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0

Parse = Callable[[list[dict[str, Any]]], LabelConfig]
OnChange = Callable[[LabelConfig], None]


class LabelSourceError(OfeliaError):
    """The engine could not be read at start-up."""


class LabelWatcher:
    """Reads labels through ``client`` (the chosen Docker client driver)."""

    def __init__(
        self,
        client: DockerClient,
        parse: Parse,
        on_change: OnChange,
        *,
        filters: Mapping[str, Sequence[str]],
        poll_interval: float = 10.0,
        startup_retries: int = 10,
        startup_interval: float = 2.0,
        backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_MAX),
        debounce: float = DEBOUNCE,
    ) -> None:
        self.client = client
        self.parse = parse
        self.on_change = on_change
        self.filters = {key: list(values) for key, values in filters.items()}
        self.poll_interval = poll_interval
        self.startup_retries = startup_retries
        self.startup_interval = startup_interval
        self.backoff = backoff
        self.debounce = debounce
        self.current: LabelConfig | None = None
        self._fingerprint: str | None = None
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._refresh_lock = threading.Lock()
        self._stream_lock = threading.Lock()
        self._stream: Any = None
        self._since: float | None = None
        self._engine_down = False
        self._threads: list[threading.Thread] = []
        self.counts = {"listings": 0, "changes": 0, "events": 0, "connects": 0, "list_failures": 0}

    @property
    def event_filters(self) -> dict[str, list[str]]:
        """Events of labelled containers only (label filters are the only ones events share with lists)."""
        labels = self.filters.get("label", [f"{ENABLED_LABEL}=true"])
        return {"type": ["container"], "event": list(EVENTS), "label": labels}

    # --- start-up ------------------------------------------------------------------

    def load_initial(self, stop: threading.Event | None = None) -> LabelConfig:
        """List and parse once, retrying while the engine is not up; raise :class:`LabelSourceError`."""
        stop = stop or self._stop
        attempts = self.startup_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                records = self._list()
                break
            except DockerError as exc:
                if not exc.engine_failure:
                    raise LabelSourceError(f"cannot read Docker labels: {exc}") from exc
                if attempt == attempts:
                    raise LabelSourceError(
                        f"cannot read Docker labels: the engine did not answer after {attempts} attempt(s) "
                        f"{self.startup_interval:g}s apart: {exc}. Is it running, and does DOCKER_HOST "
                        "(or [docker-client] base-url) name it?"
                    ) from exc
                logger.warning(
                    f"docker labels: the engine does not answer ({exc}); "
                    f"retry {attempt}/{self.startup_retries} in {self.startup_interval:g}s"
                )
                if stop.wait(self.startup_interval):
                    raise LabelSourceError("stopped while waiting for the Docker engine") from exc
        labels = self.parse(records)
        self.current = labels
        self._fingerprint = labels.fingerprint()
        return labels

    # --- threads -------------------------------------------------------------------

    def start(self) -> None:
        loops = (("ofelia-label-events", self._events_loop), ("ofelia-label-reconcile", self._reconcile_loop))
        for name, target in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads: closing the events stream wakes the thread blocked reading it."""
        self._stop.set()
        self._dirty.set()
        self._close_stream()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning(f"docker labels: thread {thread.name} did not stop within {timeout:g}s")

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        close = getattr(stream, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # closing is best effort: the connection is dropped anyway
                logger.debug(f"docker labels: closing the events stream: {exc}")

    def _events_loop(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            opened = time.monotonic()
            try:
                received = self._follow_events()
            except Exception:  # a driver breaking its contract must not end the watcher
                logger.exception("docker labels: reading the events stream failed")
                received = False
            if self._stop.is_set():
                return
            # A stream that delivered events or lasted a while was healthy: start the backoff over.
            if received or time.monotonic() - opened > self.backoff[1]:
                delay = self.backoff[0]
            logger.debug(f"docker labels: events stream ended; reconnecting in {delay:g}s")
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.backoff[1])

    def _follow_events(self) -> bool:
        """Read one events stream to its end; True when it delivered anything."""
        try:
            stream = self.client.events(since=self._since, filters=self.event_filters)
        except DockerError as exc:
            self._note_engine_down(exc)
            return False
        with self._stream_lock:
            if self._stop.is_set():
                stream_to_close: Any = stream
            else:
                self._stream, stream_to_close = stream, None
        if stream_to_close is not None:
            stream_to_close.close()
            return False
        self.counts["connects"] += 1
        self._dirty.set()  # what happened while nobody listened is not replayed after a restart
        received = False
        try:
            for event in stream:
                received = True
                self.counts["events"] += 1
                self._since = _event_time(event, self._since)
                self._dirty.set()
        except DockerError as exc:
            if not self._stop.is_set():
                self._note_engine_down(exc)
        finally:
            self._close_stream()
        return received

    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            woken = self._dirty.wait(self.poll_interval or None)
            if self._stop.is_set():
                return
            if woken and self._stop.wait(self.debounce):
                return
            self._dirty.clear()
            try:
                self.refresh()
            except Exception:  # as above: log, keep the current labels, try again later
                logger.exception("docker labels: listing the containers failed")

    # --- listing -------------------------------------------------------------------

    def refresh(self) -> bool:
        """List, parse and hand over the labels if they changed; True when they did."""
        with self._refresh_lock:
            try:
                records = self._list()
            except DockerError as exc:
                self.counts["list_failures"] += 1
                self._note_engine_down(exc)
                return False
            if self._engine_down:
                self._engine_down = False
                logger.info("docker labels: the engine answers again; label jobs follow its containers again")
            labels = self.parse(records)
            fingerprint = labels.fingerprint()
            if fingerprint == self._fingerprint:
                return False
            self._fingerprint = fingerprint
            self.current = labels
            self.counts["changes"] += 1
        try:
            self.on_change(labels)
        except Exception:  # a failing callback must not end the watcher
            logger.exception("docker labels: applying the new label set failed")
        return True

    def _list(self) -> list[dict[str, Any]]:
        self.counts["listings"] += 1
        return self.client.container_list(filters=self.filters, all=False)

    def _note_engine_down(self, exc: DockerError) -> None:
        if not self._engine_down:
            self._engine_down = True
            logger.warning(
                f"docker labels: cannot reach the engine ({exc}); label jobs stay as they are "
                "until it answers again"
            )


def _event_time(event: Mapping[str, Any], previous: float | None) -> float | None:
    nanos = event.get("timeNano")
    if isinstance(nanos, int):
        return nanos / 1e9
    seconds = event.get("time")
    return float(seconds) if isinstance(seconds, int | float) else previous
