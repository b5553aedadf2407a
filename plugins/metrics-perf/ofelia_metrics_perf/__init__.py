"""Performance metrics: ofelia's ``performance`` driver of ``ofelia.metrics``.

Selected with ``OFELIA_ENABLE_PERFORMANCE_METRICS=true`` (or
``OFELIA_METRICS=performance``, or ``[drivers] metrics = performance``); rolled
back by unsetting the flag, which brings the core's ``noop`` recorder back.

It keeps the latency of every driver operation the core times (Prometheus
histogram buckets, and a log-bucket sketch for p50/p95/p99), errors by
operation, runs by job and state with their durations, throughput, runs in
progress and their peak, the process's CPU, memory, threads and uptime
(psutil), the drivers' own stats and the plugins' samples the core feeds at
each scrape, and four alerts. ``export("prometheus")`` is prometheus_client's
text format from a registry of its own; ``export("json")`` a JSON document.
Settings, section ``[metrics]``: see :mod:`ofelia_metrics_perf.settings` and
this distribution's README.

Like any plugin, this package imports ``ofelia_hookspecs`` only, never ``ofelia_core``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import DriverContext

from .recorder import DRIVER_NAME, JSON_SCHEMA, PerformanceRecorder
from .settings import ENV_OVERRIDES, KEYS, SECTION, PerfSettings, parse_settings

__version__ = "0.1.0"


def build_recorder(
    settings: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    context: DriverContext | None = None,
    **options: Any,
) -> PerformanceRecorder:
    """The recorder the factory hook builds, with the environment given explicitly (for tests)."""
    clock = context.clock if context is not None else None
    if clock is not None:
        options.setdefault("clock", clock)
    return PerformanceRecorder(parse_settings(settings, env), **options)


@hookimpl
def ofelia_make_metrics_recorder(settings: Mapping[str, Any], context: DriverContext) -> PerformanceRecorder:
    """Build the performance recorder from the ``[metrics]`` section and the
    ``OFELIA_METRICS_*`` environment overrides."""
    return build_recorder(settings, os.environ, context)


__all__ = [
    "DRIVER_NAME",
    "ENV_OVERRIDES",
    "JSON_SCHEMA",
    "KEYS",
    "SECTION",
    "PerfSettings",
    "PerformanceRecorder",
    "__version__",
    "build_recorder",
    "ofelia_make_metrics_recorder",
    "parse_settings",
]
