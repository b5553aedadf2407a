"""Metric names: what the exposition calls things, and the gauge names the core feeds.

The core's feed (``ofelia_core/metrics_feed.py``) follows a naming convention
this driver reads back; it is written down here because a plugin never
imports the core:

* each driver's ``stats()`` is flattened into gauges named
  ``<concern>_<key>_<key>...`` with the concern's key in snake case
  (``docker_client_``, ``token_manager_``, ``buffer_pool_``): numbers and
  booleans as their value; a short word (``"open"``, ``"pooled"``) as the
  gauge ``<concern>_<path>{<last key>="<word>"}`` set to 1, and to 0 once the
  word changes (so the breaker's state reads
  ``docker_client_breaker_state{state="open"} 1``);
* the number of runs in progress is the unlabelled gauge ``concurrent_jobs``.
"""

from __future__ import annotations

import re

PREFIX = "ofelia_"

#: The unlabelled gauge the core sets to the number of runs in progress.
CONCURRENT_GAUGE = "concurrent_jobs"

#: Gauge name prefix of each concern's flattened ``stats()``, by concern key.
CONCERN_PREFIXES: dict[str, str] = {
    "docker-client": "docker_client",
    "token-manager": "token_manager",
    "buffer-pool": "buffer_pool",
}

# Gauges of the drivers' stats this driver reads (alerts, JSON summaries).
BREAKER_STATE = "docker_client_breaker_state"
BREAKER_TIMES_OPENED = "docker_client_breaker_times_opened"
TOKENS_HELD = "token_manager_held"
TOKENS_ACTIVE = "token_manager_active"
BUFFER_HITS = "buffer_pool_hits"
BUFFER_MISSES = "buffer_pool_misses"
BUFFER_HIT_RATE = "buffer_pool_hit_rate"

# The families this driver writes itself.
OPERATION_DURATION = "ofelia_operation_duration_seconds"
OPERATION_ERRORS = "ofelia_operation_errors"  # counter: exposed with _total
JOB_RUNS = "ofelia_job_runs"  # counter
JOB_RUN_SECONDS = "ofelia_job_run_seconds"  # counter
JOB_RUN_DURATION = "ofelia_job_run_duration_seconds"
JOB_THROUGHPUT = "ofelia_job_throughput_runs_per_second"
JOBS_CONCURRENT = "ofelia_job_runs_concurrent"
JOBS_CONCURRENT_PEAK = "ofelia_job_runs_concurrent_peak"
PROCESS_CPU = "ofelia_process_cpu_seconds"  # counter
PROCESS_CPU_PERCENT = "ofelia_process_cpu_percent"
PROCESS_RSS = "ofelia_process_resident_memory_bytes"
PROCESS_RSS_PEAK = "ofelia_process_resident_memory_peak_bytes"
PROCESS_THREADS = "ofelia_process_threads"
PROCESS_FDS = "ofelia_process_open_fds"
PROCESS_UPTIME = "ofelia_process_uptime_seconds"
PROCESS_START = "ofelia_process_start_time_seconds"
TOKENS_ESTIMATED_BYTES = "ofelia_token_manager_estimated_bytes"
ALERT_ACTIVE = "ofelia_alert_active"
ALERT_FIRINGS = "ofelia_alert_firings"  # counter
DROPPED = "ofelia_metrics_dropped"  # counter

#: The families written by this driver and how prometheus_client suffixes them.
OWN_FAMILIES: dict[str, str] = {
    OPERATION_DURATION: "histogram",
    OPERATION_ERRORS: "counter",
    JOB_RUNS: "counter",
    JOB_RUN_SECONDS: "counter",
    JOB_RUN_DURATION: "histogram",
    JOB_THROUGHPUT: "gauge",
    JOBS_CONCURRENT: "gauge",
    JOBS_CONCURRENT_PEAK: "gauge",
    PROCESS_CPU: "counter",
    PROCESS_CPU_PERCENT: "gauge",
    PROCESS_RSS: "gauge",
    PROCESS_RSS_PEAK: "gauge",
    PROCESS_THREADS: "gauge",
    PROCESS_FDS: "gauge",
    PROCESS_UPTIME: "gauge",
    PROCESS_START: "gauge",
    TOKENS_ESTIMATED_BYTES: "gauge",
    ALERT_ACTIVE: "gauge",
    ALERT_FIRINGS: "counter",
    DROPPED: "counter",
}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"), "gauge": ()}
#: Every sample name the driver's own families produce: a gauge may not take one.
RESERVED: frozenset[str] = frozenset(
    name + suffix for name, kind in OWN_FAMILIES.items() for suffix in ("", *_SUFFIXES[kind])
)

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(name: str) -> str:
    """The exposition name of a gauge set as ``name``: ``ofelia_`` + ``name``, made valid."""
    clean = _INVALID.sub("_", name.strip()) or "unnamed"
    if not clean.startswith(PREFIX):
        clean = PREFIX + clean
    return clean


def label_name(name: str) -> str:
    """A valid label name (``__`` at the start is reserved by Prometheus)."""
    clean = _INVALID_LABEL.sub("_", str(name).strip()) or "label"
    if clean[0].isdigit():
        clean = "_" + clean
    if clean.startswith("__"):
        clean = "x" + clean
    return clean


__all__ = [
    "CONCERN_PREFIXES",
    "CONCURRENT_GAUGE",
    "OWN_FAMILIES",
    "PREFIX",
    "RESERVED",
    "label_name",
    "metric_name",
]
