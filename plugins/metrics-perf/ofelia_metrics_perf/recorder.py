"""The performance metrics recorder: figures kept in process, exposed by
prometheus_client (text format) and as a JSON document.

Hot paths (``observe_operation`` on every driver call, ``record_run`` at the
end of every run, ``set_gauge``) take one short lock each, with no call inside
it on the usual path (CPython switches threads only at calls and loops, so no
thread waits behind one switched out while holding it); where a value goes is
worked out before the lock. Everything else (quantiles, process figures,
alerts, the exposition itself) is computed when someone asks: at a scrape
(``export``) or by the background sampler.

Exposition: a per-recorder ``CollectorRegistry`` with one custom collector
that builds the families from the recorder's figures at each scrape, so two
recorders in one process never clash and nothing is registered globally.
"""

from __future__ import annotations

import json
import math
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from . import names as n
from .alerts import BREAKER_OPEN, BUFFER_HIT_RATE, DOCKER_P95, TOKEN_GROWTH, Alerts, Reading
from .exposition import text_exposition
from .process import ProcessFigures, ProcessSampler
from .settings import PerfSettings
from .sketch import DEFAULT_GAMMA, MIN_VALUE, ZERO_KEY, LatencySeries, LogBuckets, PromBuckets, quantiles

#: ``1 / log(gamma)`` of the sketches' default spacing (job durations use it).
_INV_LOG_GAMMA = 1.0 / math.log(DEFAULT_GAMMA)
_log = math.log
_ceil = math.ceil
_bisect_left = bisect_left

DRIVER_NAME = "performance"
#: Version of the JSON document's shape (see the README).
JSON_SCHEMA = 1
FORMATS = ("prometheus", "json")
STREAM_SUFFIX = ".stream"
#: A job series beyond ``max-jobs`` is counted under this job name.
OTHER_JOB = "_other"
#: Operation series (concern x operation) kept; later ones go to operation "_other".
MAX_OPERATIONS = 1_000
#: Runs in these states never started, so their duration is not a run's duration.
NOT_STARTED = frozenset({"skipped", "missed"})
SAMPLER_THREAD = "ofelia-metrics-sampler"
#: At most this many samples are kept per alert window (older ones are thinned out).
WINDOW_SAMPLES = 256
Labels = tuple[tuple[str, str], ...]


class _Operation:
    """Latency and errors of one (concern, operation), under its own lock."""

    __slots__ = ("errors", "latency", "lock")

    def __init__(self, bounds: tuple[float, ...], window: float) -> None:
        self.lock = threading.Lock()
        self.latency = LatencySeries(bounds, window)
        self.errors: dict[str, int] = {}


class _Job:
    """Runs of one job: count and seconds by state, and a sketch of their durations."""

    __slots__ = ("by_state", "durations", "last_seconds", "last_state")

    def __init__(self) -> None:
        self.by_state: dict[str, list[float]] = {}
        self.durations = LogBuckets()
        self.last_state = ""
        self.last_seconds = 0.0


class _Throughput:
    """Runs finished per time slice over a recent window (a ring of slices)."""

    __slots__ = ("counts", "ids", "slice_seconds", "window")

    def __init__(self, window: float) -> None:
        slices = max(1, min(600, math.ceil(window)))
        self.window = window
        self.slice_seconds = window / slices
        self.counts = [0] * slices
        self.ids = [-1] * slices

    def rate(self, now: float, started: float) -> tuple[int, float, float]:
        """``(runs, seconds covered, runs per second)`` over the window ending at ``now``."""
        newest = int(now // self.slice_seconds)
        oldest = newest - len(self.counts) + 1
        runs = sum(count for slice_id, count in zip(self.ids, self.counts, strict=True)
                   if oldest <= slice_id <= newest)
        covered = (len(self.counts) - 1) * self.slice_seconds + (now - newest * self.slice_seconds)
        # Never less than one slice: the first runs after a start are not a burst.
        covered = max(min(covered, now - started), self.slice_seconds)
        return runs, covered, runs / covered


class PerformanceRecorder:
    """A :class:`~ofelia_hookspecs.protocols.MetricsRecorder` that keeps figures.

    ``clock`` is monotonic seconds (``DriverContext.clock``; tests pass a
    ``FakeClock``); it times windows, throughput and alerts. ``wall`` is epoch
    seconds, for the timestamps shown. The background sampler starts here when
    ``sample_interval`` is positive and stops in :meth:`close`.
    """

    def __init__(
        self,
        settings: PerfSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        start_sampler: bool = True,
    ) -> None:
        self.settings = settings or PerfSettings()
        self._clock = clock
        self._wall = wall
        self._started = clock()
        s = self.settings
        # Driver operations.
        self._ops: dict[tuple[str, str], _Operation] = {}
        self._ops_lock = threading.Lock()
        # Runs.
        self._runs_lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._run_durations: dict[str, PromBuckets] = {}
        self._throughput = _Throughput(s.throughput_window)
        self._runs_total = 0
        # Gauges, by name then labels.
        self._gauges_lock = threading.Lock()
        self._gauges: dict[str, dict[Labels, float]] = {}
        self._gauge_series = 0
        self._concurrent = 0.0
        self._concurrent_peak = 0.0
        self._dropped = {"gauges": 0, "jobs": 0, "operations": 0, "values": 0}
        # Derived figures and alerts, under the evaluation lock.
        self._eval_lock = threading.Lock()
        self._token_samples: deque[tuple[float, float]] = deque()
        self._buffer_samples: deque[tuple[float, float, float]] = deque([(self._started, 0.0, 0.0)])
        self._breaker_state: str | None = None
        self._breaker_not_closed_since: float | None = None
        self._breaker_changes: deque[dict[str, Any]] = deque(maxlen=20)
        self._breaker_changes_seen = 0
        self._derived: dict[str, Any] = {}
        thresholds: dict[str, tuple[float, str]] = {
            DOCKER_P95: (s.alert_docker_p95, "seconds"),
            BREAKER_OPEN: (s.alert_breaker_open, "seconds"),
            TOKEN_GROWTH: (float(s.alert_token_growth), "bytes"),
            BUFFER_HIT_RATE: (s.alert_buffer_hit_rate, "ratio"),
        }
        self._alerts = Alerts(thresholds if s.alerts else {}, log=s.alerts, wall=wall)
        # Process figures and the sampler.
        self._process = ProcessSampler(wall=wall)
        self._sampler_errors = 0
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        # Exposition.
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        if start_sampler and s.sample_interval > 0:
            self._thread = threading.Thread(target=self._sample_loop, name=SAMPLER_THREAD, daemon=True)
            self._thread.start()

    # -- the Protocol: measurements ---------------------------------------

    def observe_operation(self, concern: str, operation: str, seconds: float, error: str | None) -> None:
        series = self._ops.get((concern, operation))
        if series is None:
            series = self._new_operation(concern, operation)
        if not 0.0 <= seconds < math.inf:  # negative, infinite or NaN: a broken clock, not a latency
            self._count_dropped("values")
            return
        # LatencySeries.place and add_placed, inlined: this runs on every driver call. Where the
        # value goes is worked out before the lock, which is held for the counting only.
        latency = series.latency
        total = latency.total
        key = _ceil(_log(seconds) * total.inv_log_gamma) if seconds > MIN_VALUE else ZERO_KEY
        index = _bisect_left(latency.bounds, seconds)
        slice_id = int(self._clock() // latency.slice_seconds)
        position = slice_id % len(latency.slice_ids)
        with series.lock:  # no call inside on the usual path (see record_run)
            buckets = total.buckets
            try:
                buckets[key] += 1
            except KeyError:
                buckets[key] = 1
            total.count += 1
            total.sum += seconds
            if seconds < total.min:
                total.min = seconds
            if seconds > total.max:
                total.max = seconds
            latency.prom[index] += 1
            if latency.slice_ids[position] != slice_id:
                latency.slice_ids[position] = slice_id
                latency.slice_counts[position] = {key: 1}
            else:
                counts = latency.slice_counts[position]
                try:
                    counts[key] += 1
                except KeyError:
                    counts[key] = 1
            if error is not None:
                errors = series.errors
                try:
                    errors[error] += 1
                except KeyError:
                    errors[error] = 1

    def record_run(self, job_name: str, state: str, seconds: float) -> None:
        if not 0.0 <= seconds < math.inf:
            seconds = 0.0
        # Where the duration goes is worked out before the lock (see observe_operation).
        key = _ceil(_log(seconds) * _INV_LOG_GAMMA) if seconds > MIN_VALUE else ZERO_KEY
        index = _bisect_left(self.settings.run_buckets, seconds)
        throughput = self._throughput
        slice_id = int(self._clock() // throughput.slice_seconds)
        position = slice_id % len(throughput.counts)
        # No call inside the lock: CPython only switches threads at calls and loops, so a
        # thread is never preempted while it holds the lock and others never queue behind it.
        with self._runs_lock:
            try:
                job = self._jobs[job_name]
                figures = job.by_state[state]
                histogram = self._run_durations[state]
            except KeyError:  # the first run of this job or in this state (rare)
                job, figures, histogram = self._run_series(job_name, state)
            figures[0] += 1
            figures[1] += seconds
            job.last_state = state
            job.last_seconds = seconds
            if state not in NOT_STARTED:
                durations = job.durations
                buckets = durations.buckets
                try:
                    buckets[key] += 1
                except KeyError:
                    buckets[key] = 1
                durations.count += 1
                durations.sum += seconds
                if seconds < durations.min:
                    durations.min = seconds
                if seconds > durations.max:
                    durations.max = seconds
            histogram.counts[index] += 1
            histogram.sum += seconds
            if throughput.ids[position] != slice_id:
                throughput.ids[position] = slice_id
                throughput.counts[position] = 0
            throughput.counts[position] += 1
            self._runs_total += 1

    def _run_series(self, job_name: str, state: str) -> tuple[_Job, list[float], PromBuckets]:
        """The series of a run of ``job_name`` in ``state``, made as needed (under the runs lock)."""
        job = self._jobs.get(job_name)
        if job is None:
            if len(self._jobs) >= self.settings.max_jobs:
                self._dropped["jobs"] += 1
                job_name = OTHER_JOB
                job = self._jobs.get(OTHER_JOB)
            if job is None:
                job = self._jobs[job_name] = _Job()
        figures = job.by_state.get(state)
        if figures is None:
            figures = job.by_state[state] = [0, 0.0]
        histogram = self._run_durations.get(state)
        if histogram is None:
            histogram = self._run_durations[state] = PromBuckets(self.settings.run_buckets)
        return job, figures, histogram

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self._count_dropped("values")
            return
        if name == n.CONCURRENT_GAUGE and not labels:
            with self._gauges_lock:
                self._concurrent = number
                if number > self._concurrent_peak:
                    self._concurrent_peak = number
            return
        key: Labels = tuple(sorted((str(k), str(v)) for k, v in labels.items())) if labels else ()
        with self._gauges_lock:  # no call inside on the usual path (see record_run)
            try:
                series = self._gauges[name]
            except KeyError:
                series = None
            if series is not None and key in series:
                series[key] = number
            else:
                self._add_gauge(name, key, number)

    def _add_gauge(self, name: str, key: Labels, number: float) -> None:
        """A new gauge series (under the gauges lock), unless past ``max-gauges``."""
        if self._gauge_series >= self.settings.max_gauges:
            self._dropped["gauges"] += 1
            return
        self._gauge_series += 1
        self._gauges.setdefault(name, {})[key] = number

    # -- the Protocol: exposition and management ---------------------------

    def export(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise ValueError(f"unknown metrics format {fmt!r}: use prometheus or json")
        self._process.sample()
        self.evaluate()
        if fmt == "prometheus":
            return text_exposition(self._registry.collect())
        document = self.document()
        try:
            return json.dumps(document, allow_nan=False, default=str)
        except ValueError:  # a NaN or infinity that reached a derived figure: JSON has neither
            return json.dumps(_json_safe(document), allow_nan=False, default=str)

    def stats(self) -> dict[str, Any]:
        with self._ops_lock:
            operations = len(self._ops)
        with self._runs_lock:
            jobs, runs = len(self._jobs), self._runs_total
        with self._gauges_lock:
            gauges, dropped = self._gauge_series, dict(self._dropped)
        thread = self._thread
        return {
            "driver": DRIVER_NAME,
            "operations": operations,
            "jobs": jobs,
            "runs": runs,
            "gauges": gauges,
            "dropped": dropped,
            "sampler": {
                "interval": self.settings.sample_interval,
                "alive": thread is not None and thread.is_alive(),
                "samples": self._process.samples,
                "errors": self._sampler_errors,
            },
            "alerts_active": self._alerts.active(),
        }

    def close(self) -> None:
        """Stop the sampler and wait for it (it wakes at once). Figures stay readable."""
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    @property
    def sampler_thread(self) -> threading.Thread | None:
        return self._thread

    # -- internals: series -------------------------------------------------

    def _new_operation(self, concern: str, operation: str) -> _Operation:
        with self._ops_lock:
            series = self._ops.get((concern, operation))
            if series is not None:
                return series
            if len(self._ops) >= MAX_OPERATIONS:
                self._dropped["operations"] += 1
                key = (concern, "_other")
                series = self._ops.get(key)
                if series is None:
                    series = _Operation(self.settings.histogram_buckets, self.settings.quantile_window)
                    self._ops = {**self._ops, key: series}
                return series
            series = _Operation(self.settings.histogram_buckets, self.settings.quantile_window)
            # Replace the dict rather than mutate it, so readers without the lock never see it resize.
            self._ops = {**self._ops, (concern, operation): series}
            return series

    def _count_dropped(self, what: str) -> None:
        with self._gauges_lock:
            self._dropped[what] += 1

    def _gauge(self, name: str, labels: Labels = ()) -> float | None:
        with self._gauges_lock:
            series = self._gauges.get(name)
            return None if series is None else series.get(labels)

    def _gauges_snapshot(self) -> tuple[dict[str, dict[Labels, float]], float, float]:
        with self._gauges_lock:
            return ({name: dict(series) for name, series in self._gauges.items()},
                    self._concurrent, self._concurrent_peak)

    # -- internals: derived figures and alerts ------------------------------

    def _docker_api(self, now: float) -> tuple[LogBuckets, LogBuckets, int, int, dict[str, float | None]]:
        """Docker API calls (no streams, no excluded operations): since start, in the
        window, their calls and errors, and each operation's p95 in the window."""
        excluded = set(self.settings.alert_docker_exclude)
        total, recent = LogBuckets(), LogBuckets()
        calls = errors = 0
        per_operation: dict[str, float | None] = {}
        for (concern, operation), series in list(self._ops.items()):
            if concern != "docker-client" or operation.endswith(STREAM_SUFFIX) or operation in excluded:
                continue
            with series.lock:
                total.merge(series.latency.total)
                window = series.latency.recent(now)
                calls += series.latency.total.count
                errors += sum(series.errors.values())
            recent.merge(window)
            per_operation[operation] = window.quantile(0.95)
        return total, recent, calls, errors, per_operation

    def evaluate(self) -> None:
        """Compute the derived figures and update every alert (at each scrape)."""
        self._evaluate(full=True)

    def _evaluate(self, *, full: bool) -> None:
        now = self._clock()
        with self._eval_lock:
            self._evaluate_docker(now)
            if not full:
                return
            self._evaluate_breaker(now)
            self._evaluate_tokens(now)
            self._evaluate_buffers(now)

    def _evaluate_docker(self, now: float) -> None:
        s = self.settings
        total, recent, calls, errors, per_operation = self._docker_api(now)
        p95 = recent.quantile(0.95) if recent.count >= s.alert_docker_min_calls else None
        slowest = max(((op, q) for op, q in per_operation.items() if q is not None), key=lambda item: item[1],
                      default=None)
        window = _duration_text(s.quantile_window)
        if p95 is None:
            message = (f"{recent.count} Docker API calls in the last {window}, fewer than the "
                       f"{s.alert_docker_min_calls} needed to judge their p95")
        else:
            message = (f"Docker API p95 latency over the last {window} is {p95 * 1000:.0f} ms "
                       f"(threshold {s.alert_docker_p95 * 1000:.0f} ms, {recent.count} calls"
                       + (f"; slowest operation {slowest[0]} at {slowest[1] * 1000:.0f} ms" if slowest else "")
                       + ")")
        self._derived["docker"] = {"total": total, "recent": recent, "calls": calls, "errors": errors}
        self._alerts.update(DOCKER_P95, Reading(
            p95, p95 is not None and p95 > s.alert_docker_p95, message,
            {"window_calls": recent.count, "slowest_operation": slowest[0] if slowest else None},
        ), now)

    def _evaluate_breaker(self, now: float) -> None:
        s = self.settings
        with self._gauges_lock:
            series = dict(self._gauges.get(n.BREAKER_STATE, {}))
        state = next((labels[0][1] for labels, value in series.items()
                      if value == 1.0 and len(labels) == 1 and labels[0][0] == "state"), None)
        if state is not None and state != self._breaker_state:
            if self._breaker_state is not None:
                self._breaker_changes_seen += 1
                self._breaker_changes.append({"from": self._breaker_state, "to": state,
                                              "seen_at": _wall_text(self._wall())})
            self._breaker_state = state
        if state is None or state == "closed":
            self._breaker_not_closed_since = None
        elif self._breaker_not_closed_since is None:
            self._breaker_not_closed_since = now
        since = self._breaker_not_closed_since
        value = None if state is None else (now - since if since is not None else 0.0)
        times_opened = self._gauge(n.BREAKER_TIMES_OPENED)
        self._derived["breaker"] = None if state is None else {
            "state": state,
            "not_closed_for_seconds": value,
            "times_opened": times_opened,
            "changes_seen": self._breaker_changes_seen,
            "recent_changes": list(self._breaker_changes),
        }
        if state is None:
            message = "the Docker client driver reports no circuit breaker"
        elif state == "closed":
            message = "the circuit breaker is closed"
        else:
            message = (f"the circuit breaker has not been closed for {_duration_text(value or 0.0)} "
                       f"(now {state}; threshold {_duration_text(s.alert_breaker_open)})")
        self._alerts.update(BREAKER_OPEN, Reading(value, value is not None and value > s.alert_breaker_open,
                                                  message), now)

    def _evaluate_tokens(self, now: float) -> None:
        s = self.settings
        held = self._gauge(n.TOKENS_HELD)
        if held is None:
            held = self._gauge(n.TOKENS_ACTIVE)
        if held is None:
            self._derived["tokens"] = None
            self._alerts.update(TOKEN_GROWTH, Reading(None, False, "the token manager reports no token count"), now)
            return
        estimate = held * s.token_bytes
        samples = self._token_samples
        window = s.alert_token_growth_window
        while samples and samples[0][0] < now - window:
            samples.popleft()
        _add_sample(samples, (now, estimate), window)
        lowest = min(min(value for _, value in samples), estimate)
        growth = estimate - lowest
        covered = now - samples[0][0]
        self._derived["tokens"] = {
            "held": held, "bytes_per_token": s.token_bytes, "estimated_bytes": estimate,
            "growth_bytes": growth, "window_seconds": window, "covered_seconds": covered,
        }
        message = (f"token manager memory (estimated: {held:.0f} tokens x {s.token_bytes} B = "
                   f"{estimate / 1e6:.2f} MB) grew by {growth / 1e6:.2f} MB within the last "
                   f"{_duration_text(min(covered, window))} (threshold {s.alert_token_growth / 1e6:.2f} MB "
                   f"per {_duration_text(window)})")
        self._alerts.update(TOKEN_GROWTH, Reading(growth, growth > s.alert_token_growth, message), now)

    def _evaluate_buffers(self, now: float) -> None:
        s = self.settings
        hits, misses = self._gauge(n.BUFFER_HITS), self._gauge(n.BUFFER_MISSES)
        if hits is None or misses is None:
            self._derived["buffers"] = None
            self._alerts.update(BUFFER_HIT_RATE, Reading(None, False, "the buffer pool reports no hits and misses"),
                                now)
            return
        samples = self._buffer_samples
        window = s.alert_buffer_window
        # The base is the newest sample at least a window old (or the oldest one), so the
        # figure covers at least the window once it has passed, whatever the scrape interval.
        while len(samples) > 1 and samples[1][0] <= now - window:
            samples.popleft()
        _add_sample(samples, (now, hits, misses), window)
        _, base_hits, base_misses = samples[0]
        window_hits, window_misses = max(0.0, hits - base_hits), max(0.0, misses - base_misses)
        acquisitions = window_hits + window_misses
        rate = window_hits / acquisitions if acquisitions >= s.alert_buffer_min_acquisitions else None
        self._derived["buffers"] = {
            "hits": hits, "misses": misses,
            "hit_rate": self._gauge(n.BUFFER_HIT_RATE),
            "window_hit_rate": rate, "window_acquisitions": acquisitions,
            "window_seconds": window, "covered_seconds": now - samples[0][0],
        }
        if rate is None:
            message = (f"{acquisitions:.0f} buffer acquisitions in the window, fewer than the "
                       f"{s.alert_buffer_min_acquisitions} needed to judge the hit rate")
        else:
            message = (f"buffer pool hit rate {rate:.1%} over the last {_duration_text(now - samples[0][0])} "
                       f"({acquisitions:.0f} acquisitions; threshold {s.alert_buffer_hit_rate:.0%})")
        self._alerts.update(BUFFER_HIT_RATE, Reading(rate, rate is not None and rate < s.alert_buffer_hit_rate,
                                                     message), now)

    # -- internals: the sampler ---------------------------------------------

    def _sample_loop(self) -> None:
        interval = self.settings.sample_interval
        while not self._stop.wait(interval):
            try:
                self._process.sample()
                # Operation latency arrives continuously, so its alert is judged here too; the
                # drivers' stats arrive with a scrape, so their alerts are judged at the scrape.
                self._evaluate(full=False)
            except Exception:
                self._sampler_errors += 1
                if self._sampler_errors == 1:
                    logger.opt(exception=True).warning("metrics sampler failed; further failures are only counted")

    # -- the JSON document ---------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The JSON export as a dict (see the README for its shape)."""
        now = self._clock()
        with self._eval_lock:
            derived = dict(self._derived)
        process = self._process.last or self._process.sample()
        gauges, concurrent, peak = self._gauges_snapshot()
        return {
            "schema": JSON_SCHEMA,
            "driver": DRIVER_NAME,
            "generated_at": _wall_text(self._wall()),
            "recorder_uptime_seconds": now - self._started,
            "docker": self._docker_document(derived.get("docker"), derived.get("breaker")),
            "operations": self._operations_document(now),
            "runs": self._runs_document(),
            "throughput": self._throughput_document(now),
            "concurrency": {"current": concurrent, "peak": peak},
            "process": process.as_dict(),
            "token_manager": derived.get("tokens"),
            "buffer_pool": derived.get("buffers"),
            "drivers": _drivers_document(gauges),
            "gauges": _other_gauges(gauges),
            "alerts": self._alerts.snapshot(now),
            "recorder": self.stats(),
        }

    def _docker_document(self, docker: dict[str, Any] | None, breaker: dict[str, Any] | None) -> dict[str, Any]:
        s = self.settings
        if docker is None:
            return {"calls": 0, "errors": 0, "breaker": breaker}
        total: LogBuckets = docker["total"]
        recent: LogBuckets = docker["recent"]
        calls, errors = docker["calls"], docker["errors"]
        return {
            "calls": calls,
            "errors": errors,
            "error_rate": errors / calls if calls else 0.0,
            **_quantile_fields(total),
            "window": {"seconds": s.quantile_window, "calls": recent.count, **_quantile_fields(recent)},
            "excluded_operations": list(s.alert_docker_exclude),
            "breaker": breaker,
        }

    def _operations_document(self, now: float) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (concern, operation), series in sorted(self._ops.items()):
            with series.lock:
                total = series.latency.total
                count, seconds = total.count, total.sum
                errors = dict(series.errors)
                overall = _quantile_fields(total)
                recent = series.latency.recent(now)
            error_count = sum(errors.values())
            out.setdefault(concern, {})[operation] = {
                "count": count,
                "errors": error_count,
                "error_rate": error_count / count if count else 0.0,
                "errors_by_type": errors,
                "sum": seconds,
                "mean": seconds / count if count else None,
                **overall,
                "window": {"seconds": self.settings.quantile_window, "count": recent.count,
                           **_quantile_fields(recent)},
            }
        return out

    def _runs_document(self) -> dict[str, Any]:
        by_state: dict[str, int] = {}
        jobs: dict[str, Any] = {}
        total, snapshot = self._jobs_snapshot(with_durations=True)
        for name, figures, last_state, last_seconds, durations in snapshot:
            states: dict[str, dict[str, Any]] = {}
            runs = 0
            for state, count, seconds in figures:
                states[state] = {"count": int(count), "seconds": seconds}
                by_state[state] = by_state.get(state, 0) + int(count)
                runs += int(count)
            assert durations is not None
            jobs[name] = {
                "runs": runs,
                "by_state": states,
                "last": {"state": last_state, "seconds": last_seconds},
                "duration": _quantile_fields(durations),
            }
        return {"total": total, "by_state": by_state, "jobs": jobs}

    def _jobs_snapshot(self, *, with_durations: bool) -> tuple[int, list[_JobFigures]]:
        """Every job's figures, copied under the runs lock; the caller builds its output after it,
        so a run ending during a scrape waits for a copy, not for 1,000 jobs' series to be built
        (while the scraping thread may be switched out by the GIL with the lock held)."""
        with self._runs_lock:
            return self._runs_total, [
                (name, [(state, figures[0], figures[1]) for state, figures in job.by_state.items()],
                 job.last_state, job.last_seconds, _copy_sketch(job.durations) if with_durations else None)
                for name, job in self._jobs.items()
            ]

    def _throughput_document(self, now: float) -> dict[str, Any]:
        with self._runs_lock:
            runs, covered, rate = self._throughput.rate(now, self._started)
        return {"window_seconds": self.settings.throughput_window, "covered_seconds": covered,
                "runs": runs, "runs_per_second": rate}

    # -- the Prometheus families ---------------------------------------------

    def families(self) -> Iterator[Metric]:
        """Every family of the exposition, built from the figures now."""
        now = self._clock()
        yield from self._operation_families()
        yield from self._run_families(now)
        yield from self._process_families()
        yield from self._gauge_families()
        yield from self._alert_families()

    def _operation_families(self) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            n.OPERATION_DURATION, "Latency of each driver operation, as the core's instrumentation times it "
            "(streams: '<op>.stream', from opening to end).", labels=["concern", "operation"])
        errors = CounterMetricFamily(n.OPERATION_ERRORS, "Failed driver operations by error type.",
                                     labels=["concern", "operation", "error"])
        for (concern, operation), series in sorted(self._ops.items()):
            with series.lock:
                buckets, total = series.latency.cumulative(), series.latency.total.sum
                failures = sorted(series.errors.items())
            duration.add_metric([concern, operation], buckets, total)
            for error, count in failures:
                errors.add_metric([concern, operation, error], count)
        yield duration
        yield errors

    def _run_families(self, now: float) -> Iterator[Metric]:
        runs = CounterMetricFamily(n.JOB_RUNS, "Finished runs by job and state.", labels=["job", "state"])
        seconds = CounterMetricFamily(n.JOB_RUN_SECONDS, "Seconds spent in finished runs, by job and state.",
                                      labels=["job", "state"])
        durations = HistogramMetricFamily(n.JOB_RUN_DURATION, "Duration of finished runs of every job, by state.",
                                          labels=["state"])
        _, snapshot = self._jobs_snapshot(with_durations=False)
        for name, figures, _, _, _ in snapshot:
            for state, count, total in figures:
                runs.add_metric([name, state], count)
                seconds.add_metric([name, state], total)
        with self._runs_lock:
            for state, histogram in sorted(self._run_durations.items()):
                durations.add_metric([state], histogram.cumulative(), histogram.sum)
            _, _, rate = self._throughput.rate(now, self._started)
        yield runs
        yield seconds
        yield durations
        yield GaugeMetricFamily(n.JOB_THROUGHPUT, f"Runs finished per second over the last "
                                f"{_duration_text(self.settings.throughput_window)}.", value=rate)
        _, concurrent, peak = self._gauges_snapshot()
        yield GaugeMetricFamily(n.JOBS_CONCURRENT, "Runs in progress.", value=concurrent)
        yield GaugeMetricFamily(n.JOBS_CONCURRENT_PEAK, "Most runs in progress at once since start.", value=peak)

    def _process_families(self) -> Iterator[Metric]:
        figures: ProcessFigures = self._process.last or self._process.sample()
        yield CounterMetricFamily(n.PROCESS_CPU, "CPU time of the process (user + system).",
                                  value=figures.cpu_seconds)
        yield GaugeMetricFamily(n.PROCESS_CPU_PERCENT, "CPU use since the previous sample (100 = one core).",
                                value=figures.cpu_percent)
        yield GaugeMetricFamily(n.PROCESS_RSS, "Resident memory of the process.", value=figures.rss_bytes)
        yield GaugeMetricFamily(n.PROCESS_RSS_PEAK, "Largest resident memory seen by a sample.",
                                value=figures.rss_peak_bytes)
        yield GaugeMetricFamily(n.PROCESS_THREADS, "Threads of the process.", value=figures.threads)
        yield GaugeMetricFamily(n.PROCESS_FDS, "Open file descriptors of the process.", value=figures.open_fds)
        yield GaugeMetricFamily(n.PROCESS_UPTIME, "Seconds since the process started.", value=figures.uptime_seconds)
        yield GaugeMetricFamily(n.PROCESS_START, "Start time of the process, epoch seconds.",
                                value=figures.start_time)
        with self._eval_lock:
            tokens = self._derived.get("tokens")
        if tokens is not None:
            yield GaugeMetricFamily(n.TOKENS_ESTIMATED_BYTES, "Token manager memory estimate: tokens held x "
                                    "token-bytes.", value=tokens["estimated_bytes"])

    def _gauge_families(self) -> Iterator[Metric]:
        gauges, _, _ = self._gauges_snapshot()
        by_family: dict[str, Metric] = {}
        dropped = 0
        for name, series in sorted(gauges.items()):
            family_name = n.metric_name(name)
            if family_name in n.RESERVED:
                dropped += len(series)
                continue
            family = by_family.get(family_name)
            if family is None:
                family = by_family[family_name] = Metric(
                    family_name, "Set through set_gauge: drivers' stats (fed at each scrape), plugins' samples "
                    "(ofelia_collect_metrics) and other gauges.", "gauge")
            for labels, value in series.items():
                family.add_sample(family_name, {n.label_name(k): v for k, v in labels}, value)
        yield from by_family.values()
        with self._gauges_lock:
            counts = dict(self._dropped)
        counts["reserved_names"] = dropped
        dropped_family = CounterMetricFamily(n.DROPPED, "Measurements not kept: gauge series past max-gauges, "
                                             "jobs past max-jobs (counted as _other), operations past the cap, "
                                             "invalid values, gauges named like a family of this driver.",
                                             labels=["kind"])
        for kind, count in sorted(counts.items()):
            dropped_family.add_metric([kind], count)
        yield dropped_family

    def _alert_families(self) -> Iterator[Metric]:
        alerts = self._alerts.snapshot(self._clock())
        active = GaugeMetricFamily(n.ALERT_ACTIVE, "1 while an alert's threshold is crossed.", labels=["alert"])
        firings = CounterMetricFamily(n.ALERT_FIRINGS, "Times each alert was crossed.", labels=["alert"])
        for alert in alerts:
            active.add_metric([alert["name"]], 1.0 if alert["active"] else 0.0)
            firings.add_metric([alert["name"]], alert["firings"])
        yield active
        yield firings


class _Collector:
    """The recorder's one prometheus_client collector (registered in its own registry)."""

    def __init__(self, recorder: PerformanceRecorder) -> None:
        self._recorder = recorder

    def collect(self) -> Iterable[Metric]:
        return list(self._recorder.families())


#: (job, [(state, count, seconds)], last state, last seconds, a copy of its durations sketch or None)
_JobFigures = tuple[str, list[tuple[str, float, float]], str, float, "LogBuckets | None"]


def _copy_sketch(sketch: LogBuckets) -> LogBuckets:
    copy = LogBuckets(sketch.gamma)
    copy.buckets = dict(sketch.buckets)
    copy.count, copy.sum, copy.min, copy.max = sketch.count, sketch.sum, sketch.min, sketch.max
    return copy


def _quantile_fields(sketch: LogBuckets) -> dict[str, float | None]:
    p50, p95, p99 = quantiles(sketch, (0.5, 0.95, 0.99))
    return {"p50": p50, "p95": p95, "p99": p99, "max": sketch.max if sketch.count else None}


def _drivers_document(gauges: Mapping[str, Mapping[Labels, float]]) -> dict[str, dict[str, Any]]:
    """The drivers' stats as fed, by concern; a word-valued stat shows as its word."""
    out: dict[str, dict[str, Any]] = {}
    for concern, prefix in n.CONCERN_PREFIXES.items():
        figures: dict[str, Any] = {}
        for name, series in sorted(gauges.items()):
            if not name.startswith(prefix + "_"):
                continue
            key = name[len(prefix) + 1:]
            for labels, value in sorted(series.items()):
                if not labels:
                    figures[key] = _finite(value)
                elif len(labels) == 1 and (key == labels[0][0] or key.endswith("_" + labels[0][0])):
                    if value == 1.0:
                        figures[key] = labels[0][1]
                else:
                    figures[key + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"] = _finite(value)
        if figures:
            out[concern] = figures
    return out


def _other_gauges(gauges: Mapping[str, Mapping[Labels, float]]) -> list[dict[str, Any]]:
    """Gauges that are not drivers' stats: plugins' samples and the like."""
    prefixes = tuple(prefix + "_" for prefix in n.CONCERN_PREFIXES.values())
    return [
        {"name": name, "labels": dict(labels), "value": _finite(value)}
        for name, series in sorted(gauges.items()) if not name.startswith(prefixes)
        for labels, value in sorted(series.items())
    ]


def _add_sample(samples: deque[Any], sample: tuple[float, ...], window: float) -> None:
    """Append ``sample``, or let it replace the newest one when that one is closer than
    ``window / WINDOW_SAMPLES`` to the one before, so a window holds a bounded number of samples."""
    if len(samples) >= 2 and sample[0] - samples[-2][0] < window / WINDOW_SAMPLES:
        samples[-1] = sample
    else:
        samples.append(sample)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: those values show as null."""
    return value if math.isfinite(value) else None


def _wall_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _duration_text(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    if seconds >= 1:
        return f"{seconds:.0f}s"
    return f"{seconds * 1000:.0f}ms"


__all__ = ["DRIVER_NAME", "FORMATS", "JSON_SCHEMA", "OTHER_JOB", "SAMPLER_THREAD", "PerformanceRecorder"]
