"""Runs in progress, for the metrics driver: a small general plugin.

The executor calls ``ofelia_observe_run_start`` when a run starts and
``ofelia_observe_run_end`` when it has its final state; this plugin counts
the runs between the two and sets the recorder's ``concurrent_jobs`` gauge
(the driver keeps the peak). Runs recorded without starting (skipped,
missed) reach only the end hook and are not counted.

:func:`register_run_metrics` is called by the Runtime, which registers it as
it registers its middlewares; with the ``noop`` metrics driver it registers
nothing, so a deployment without metrics pays nothing per run.
"""

from __future__ import annotations

import threading
from typing import Any

import pluggy
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.protocols import MetricsRecorder
from ofelia_hookspecs.types import JobView, RunView

from .metrics_feed import is_noop

#: The unlabelled gauge the metrics driver reads as the number of runs in progress.
CONCURRENT_GAUGE = "concurrent_jobs"


class RunMetrics:
    """Counts runs in progress and sets :data:`CONCURRENT_GAUGE` at each change."""

    PLUGIN_NAME = "ofelia_core.metrics_runs"

    def __init__(self, recorder: MetricsRecorder) -> None:
        self._recorder = recorder
        self._lock = threading.Lock()
        self._running: dict[str, None] = {}
        self._count = 0
        #: Bumped at every change, so a thread can tell whether the value it set is still current.
        self._version = 0

    @property
    def running(self) -> int:
        with self._lock:
            return self._count

    @hookimpl
    def ofelia_observe_run_start(self, job: JobView, run: RunView) -> None:
        run_id = run.id
        # No call inside the lock (CPython switches threads only at calls and loops), so no
        # worker ever waits behind one that was preempted while holding it.
        with self._lock:
            if run_id in self._running:
                return
            self._running[run_id] = None
            self._count += 1
            self._version += 1
            state = (self._count, self._version)
        self._publish(state)

    @hookimpl
    def ofelia_observe_run_end(self, job: JobView, run: RunView) -> None:
        run_id = run.id
        with self._lock:
            if run_id not in self._running:
                return  # never started (skipped, missed)
            del self._running[run_id]
            self._count -= 1
            self._version += 1
            state = (self._count, self._version)
        self._publish(state)

    def _publish(self, state: tuple[int, int]) -> None:
        """Set the gauge outside the lock; if another change came meanwhile, set again, so
        the last value set is always the current count (every value set was true at some
        instant, so the driver's peak is right too)."""
        count, version = state
        while True:
            self._recorder.set_gauge(CONCURRENT_GAUGE, float(count), None)
            with self._lock:
                if self._version == version:
                    return
                count, version = self._count, self._version


def register_run_metrics(pm: pluggy.PluginManager, drivers: Any) -> RunMetrics | None:
    """(Re)register the plugin for ``drivers.metrics``; nothing with the ``noop`` driver."""
    old = pm.get_plugin(RunMetrics.PLUGIN_NAME)
    if old is not None:
        pm.unregister(old)
    if is_noop(drivers):
        return None
    plugin = RunMetrics(drivers.metrics)
    pm.register(plugin, name=RunMetrics.PLUGIN_NAME)
    return plugin


__all__ = ["CONCURRENT_GAUGE", "RunMetrics", "register_run_metrics"]
