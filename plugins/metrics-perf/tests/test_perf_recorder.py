"""The performance recorder's own behaviour: quantiles, the Prometheus text, the JSON
document, alerts, throughput and concurrency, caps, and the sampler thread."""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loguru import logger
from ofelia_hookspecs.contract.clock import FakeClock
from ofelia_metrics_perf import PerformanceRecorder, parse_settings
from ofelia_metrics_perf.recorder import OTHER_JOB, SAMPLER_THREAD
from ofelia_metrics_perf.sketch import LatencySeries, LogBuckets, PromBuckets, quantiles
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

Build = Callable[..., PerformanceRecorder]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def build(clock: FakeClock) -> Iterator[Build]:
    built: list[PerformanceRecorder] = []

    def make(**settings: Any) -> PerformanceRecorder:
        values = {"sample-interval": "0", **{k.replace("_", "-"): v for k, v in settings.items()}}
        recorder = PerformanceRecorder(parse_settings(values), clock=clock)
        built.append(recorder)
        return recorder

    yield make
    for recorder in built:
        recorder.close()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["level"].name + " " + message.record["message"]),
                      level="INFO")
    yield lines
    logger.remove(sink)


def samples(text: str) -> dict[str, list[Sample]]:
    """Parsed exposition: family name -> its samples."""
    return {family.name: list(family.samples) for family in text_string_to_metric_families(text)}


def value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels} in the exposition")


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


# --- the sketch ------------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["uniform", "lognormal", "bimodal"])
def test_sketch_quantiles_are_within_two_percent(distribution: str) -> None:
    rng = random.Random(7)
    if distribution == "uniform":
        values = [rng.uniform(0.001, 0.2) for _ in range(20_000)]
    elif distribution == "lognormal":
        values = [rng.lognormvariate(-4, 1.5) for _ in range(20_000)]
    else:
        values = [rng.gauss(0.005, 0.0005) if i % 10 else rng.gauss(2.0, 0.1) for i in range(20_000)]
    sketch = LogBuckets()
    for v in values:
        sketch.add(v)
    for q, estimate in zip((0.5, 0.95, 0.99), sketch.quantiles((0.5, 0.95, 0.99)), strict=True):
        assert estimate is not None
        exact = exact_quantile(values, q)
        assert abs(estimate - exact) / exact <= 0.021, (q, estimate, exact)
    assert len(sketch.buckets) < 600  # bounded by the spread of the values, not their number


def test_sketch_edges() -> None:
    empty = LogBuckets()
    assert empty.quantiles((0.5, 0.99)) == [None, None]
    one = LogBuckets()
    one.add(0.123)
    assert one.quantile(0.5) == one.quantile(0.99) == 0.123  # clamped to what was seen
    zeros = LogBuckets()
    for _ in range(9):
        zeros.add(0.0)
    zeros.add(1.0)
    assert zeros.quantile(0.5) == 0.0
    assert zeros.quantile(1.0) == 1.0
    assert quantiles(zeros, (1.0, 0.5, 0.99)) == [1.0, 0.0, 0.0]  # answers keep the order asked


def test_latency_series_forgets_old_slices() -> None:
    sketch = LatencySeries((0.1, 1.0), window=60.0, slices=6)
    for _ in range(100):
        sketch.add(5.0, now=0.0)
    for _ in range(100):
        sketch.add(0.01, now=65.0)
    recent = sketch.recent(65.0)
    assert recent.count == 100
    assert recent.quantile(0.99) == pytest.approx(0.01, rel=0.021)
    assert sketch.total.count == 200
    assert sketch.recent(200.0).count == 0
    assert sketch.cumulative() == [("0.1", 100.0), ("1.0", 100.0), ("+Inf", 200.0)]


def test_prometheus_buckets_are_cumulative_and_inclusive() -> None:
    buckets = PromBuckets((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 3.0):
        buckets.add(v)
    assert buckets.cumulative() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert buckets.count == 5
    assert buckets.sum == pytest.approx(4.65)


# --- the Prometheus text ----------------------------------------------------------------


def feed(recorder: PerformanceRecorder) -> None:
    for i in range(1, 101):
        recorder.observe_operation("docker-client", "container_inspect", i / 1000, None)
    recorder.observe_operation("docker-client", "container_inspect", 0.2, "EngineUnavailable")
    recorder.observe_operation("docker-client", "exec_start.stream", 30.0, None)
    recorder.observe_operation("token-manager", "validate", 2e-6, None)
    recorder.record_run("backup", "success", 1.5)
    recorder.record_run("backup", "failed", 0.5)
    recorder.record_run("backup", "skipped", 0.0)
    recorder.record_run('quote " and \\ job', "success", 2.0)
    recorder.set_gauge("concurrent_jobs", 4)
    recorder.set_gauge("concurrent_jobs", 1)
    recorder.set_gauge("docker_client_breaker_state", 1, {"state": "closed"})
    recorder.set_gauge("buffer_pool_hit_rate", 0.9)
    recorder.set_gauge("plugin_queue_depth", 7, {"queue": "mail"})


def test_prometheus_text_parses_with_every_family(build: Build) -> None:
    recorder = build()
    feed(recorder)
    text = recorder.export("prometheus")
    families = samples(text)
    for name in ("ofelia_operation_duration_seconds", "ofelia_operation_errors", "ofelia_job_runs",
                 "ofelia_job_run_seconds", "ofelia_job_run_duration_seconds",
                 "ofelia_job_throughput_runs_per_second", "ofelia_job_runs_concurrent",
                 "ofelia_job_runs_concurrent_peak", "ofelia_process_cpu_seconds", "ofelia_process_cpu_percent",
                 "ofelia_process_resident_memory_bytes", "ofelia_process_threads", "ofelia_process_uptime_seconds",
                 "ofelia_docker_client_breaker_state", "ofelia_buffer_pool_hit_rate", "ofelia_plugin_queue_depth",
                 "ofelia_alert_active", "ofelia_alert_firings", "ofelia_metrics_dropped"):
        assert name in families, name
    assert value(text, "ofelia_operation_duration_seconds_count", operation="container_inspect") == 101
    assert value(text, "ofelia_operation_duration_seconds_bucket", operation="container_inspect", le="0.01") == 10
    assert value(text, "ofelia_operation_duration_seconds_bucket", operation="container_inspect", le="+Inf") == 101
    assert value(text, "ofelia_operation_errors_total", operation="container_inspect",
                 error="EngineUnavailable") == 1
    assert value(text, "ofelia_job_runs_total", job="backup", state="failed") == 1
    assert value(text, "ofelia_job_runs_total", job='quote " and \\ job', state="success") == 1
    assert value(text, "ofelia_job_run_seconds_total", job="backup", state="success") == 1.5
    assert value(text, "ofelia_job_run_duration_seconds_count", state="success") == 2
    assert value(text, "ofelia_job_runs_concurrent") == 1
    assert value(text, "ofelia_job_runs_concurrent_peak") == 4
    assert value(text, "ofelia_docker_client_breaker_state", state="closed") == 1
    assert value(text, "ofelia_plugin_queue_depth", queue="mail") == 7
    assert value(text, "ofelia_process_resident_memory_bytes") > 0
    assert value(text, "ofelia_process_threads") >= 1
    assert value(text, "ofelia_alert_active", alert="docker_api_p95") == 0


def test_two_recorders_do_not_clash(build: Build) -> None:
    first, second = build(), build()
    first.record_run("only-in-first", "success", 1.0)
    second.record_run("only-in-second", "success", 1.0)
    text_first, text_second = first.export("prometheus"), second.export("prometheus")
    assert "only-in-first" in text_first and "only-in-second" not in text_first
    assert "only-in-second" in text_second and "only-in-first" not in text_second


def test_gauge_names_and_labels_are_made_valid_and_cannot_shadow_a_family(build: Build) -> None:
    recorder = build()
    recorder.set_gauge("my plugin.depth-now", 1, {"the queue": "a", "__reserved": "b"})
    recorder.set_gauge("job_runs_total", 99)  # would be ofelia_job_runs_total: refused in the exposition
    text = recorder.export("prometheus")
    assert value(text, "ofelia_my_plugin_depth_now", the_queue="a", x__reserved="b") == 1
    assert all(s.value != 99 for s in samples(text).get("ofelia_job_runs", []))
    assert value(text, "ofelia_metrics_dropped_total", kind="reserved_names") == 1


def test_a_nan_gauge_is_exported_and_shown_as_null_in_json(build: Build) -> None:
    recorder = build()
    recorder.set_gauge("odd", math.nan)
    recorder.set_gauge("huge", math.inf)
    assert math.isnan(value(recorder.export("prometheus"), "ofelia_odd"))
    gauges = {g["name"]: g["value"] for g in json.loads(recorder.export("json"))["gauges"]}
    assert gauges == {"odd": None, "huge": None}
    recorder.set_gauge("token_manager_held", math.inf)  # reaches a derived figure too
    assert json.loads(recorder.export("json"))["token_manager"]["estimated_bytes"] is None


# --- the JSON document --------------------------------------------------------------


def test_json_shape(build: Build, clock: FakeClock) -> None:
    recorder = build()
    feed(recorder)
    clock.advance(2)
    document = json.loads(recorder.export("json"))
    assert document["schema"] == 1
    assert document["driver"] == "performance"
    assert set(document) >= {"generated_at", "docker", "operations", "runs", "throughput", "concurrency",
                             "process", "token_manager", "buffer_pool", "drivers", "gauges", "alerts", "recorder"}
    docker = document["docker"]
    # Streams are not API calls: 101 container_inspect calls, one of them failed.
    assert (docker["calls"], docker["errors"]) == (101, 1)
    assert docker["p50"] == pytest.approx(0.051, rel=0.03)
    assert docker["p95"] == pytest.approx(0.096, rel=0.03)
    assert docker["p99"] == pytest.approx(0.1, rel=0.03)
    assert docker["window"]["calls"] == 101
    assert docker["breaker"]["state"] == "closed"
    inspect = document["operations"]["docker-client"]["container_inspect"]
    assert set(inspect) >= {"count", "errors", "error_rate", "errors_by_type", "p50", "p95", "p99", "max", "window"}
    assert inspect["errors_by_type"] == {"EngineUnavailable": 1}
    assert document["operations"]["docker-client"]["exec_start.stream"]["p50"] == 30.0
    assert document["operations"]["token-manager"]["validate"]["count"] == 1
    runs = document["runs"]
    assert runs["total"] == 4
    assert runs["by_state"] == {"success": 2, "failed": 1, "skipped": 1}
    backup = runs["jobs"]["backup"]
    assert backup["runs"] == 3
    assert backup["by_state"]["success"] == {"count": 1, "seconds": 1.5}
    assert backup["last"] == {"state": "skipped", "seconds": 0.0}
    assert backup["duration"]["p50"] == pytest.approx(0.5, rel=0.03)  # a skipped run has no duration
    assert document["throughput"]["runs"] == 4
    assert document["throughput"]["runs_per_second"] == pytest.approx(2.0)
    assert document["concurrency"] == {"current": 1.0, "peak": 4.0}
    assert set(document["process"]) >= {"cpu_seconds", "cpu_percent", "rss_bytes", "threads", "uptime_seconds"}
    assert document["drivers"]["docker-client"] == {"breaker_state": "closed"}
    assert document["drivers"]["buffer-pool"] == {"hit_rate": 0.9}
    assert document["gauges"] == [{"name": "plugin_queue_depth", "labels": {"queue": "mail"}, "value": 7.0}]
    assert [alert["name"] for alert in document["alerts"]] == [
        "docker_api_p95", "circuit_breaker_open", "token_memory_growth", "buffer_pool_hit_rate"]
    assert all(set(alert) >= {"active", "value", "threshold", "message"} for alert in document["alerts"])


def test_an_empty_recorder_exports_both_formats(build: Build) -> None:
    recorder = build()
    assert "ofelia_process_resident_memory_bytes" in recorder.export("prometheus")
    document = json.loads(recorder.export("json"))
    assert document["runs"] == {"total": 0, "by_state": {}, "jobs": {}}
    assert document["docker"]["calls"] == 0
    with pytest.raises(ValueError, match="unknown metrics format"):
        recorder.export("xml")


# --- throughput, concurrency, caps ------------------------------------------------------


def test_throughput_counts_the_recent_window_only(build: Build, clock: FakeClock) -> None:
    recorder = build(throughput_window="10s")
    clock.advance(100)
    for _ in range(50):
        recorder.record_run("a", "success", 0.1)
    clock.advance(5)
    for _ in range(30):
        recorder.record_run("a", "success", 0.1)
    throughput = json.loads(recorder.export("json"))["throughput"]
    assert throughput["runs"] == 80
    assert throughput["runs_per_second"] == pytest.approx(80 / throughput["covered_seconds"])
    clock.advance(7)  # the first 50 left the window
    assert json.loads(recorder.export("json"))["throughput"]["runs"] == 30
    clock.advance(60)
    assert json.loads(recorder.export("json"))["throughput"]["runs_per_second"] == 0


def test_jobs_past_the_cap_are_counted_as_other(build: Build) -> None:
    recorder = build(max_jobs="2")
    for name in ("a", "b", "c", "d"):
        recorder.record_run(name, "success", 1.0)
    jobs = json.loads(recorder.export("json"))["runs"]["jobs"]
    assert set(jobs) == {"a", "b", OTHER_JOB}
    assert jobs[OTHER_JOB]["runs"] == 2
    assert recorder.stats()["dropped"]["jobs"] == 2


def test_gauges_past_the_cap_are_dropped(build: Build) -> None:
    recorder = build(max_gauges="2")
    recorder.set_gauge("a", 1)
    recorder.set_gauge("b", 1, {"x": "1"})
    recorder.set_gauge("b", 2, {"x": "2"})
    recorder.set_gauge("a", 5)  # an existing series is still updated
    assert recorder.stats()["gauges"] == 2
    assert recorder.stats()["dropped"]["gauges"] == 1
    assert json.loads(recorder.export("json"))["gauges"][0] == {"name": "a", "labels": {}, "value": 5.0}


def test_bad_values_are_counted_not_raised(build: Build) -> None:
    recorder = build()
    recorder.observe_operation("docker-client", "ping", -1.0, None)
    recorder.observe_operation("docker-client", "ping", math.nan, None)
    recorder.observe_operation("docker-client", "ping", math.inf, None)
    recorder.set_gauge("x", "not a number")  # type: ignore[arg-type]
    recorder.record_run("a", "success", math.nan)  # counted, as zero seconds
    assert recorder.stats()["dropped"]["values"] == 4
    assert json.loads(recorder.export("json"))["runs"]["jobs"]["a"]["by_state"]["success"]["seconds"] == 0.0


# --- alerts -----------------------------------------------------------------------------


def alert(recorder: PerformanceRecorder, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in json.loads(recorder.export("json"))["alerts"] if a["name"] == name)
    return found


def test_docker_p95_alert_fires_once_and_clears(build: Build, clock: FakeClock, log_lines: list[str]) -> None:
    recorder = build(quantile_window="1m", alert_docker_min_calls="10")
    for _ in range(30):
        recorder.observe_operation("docker-client", "container_create", 1.5, None)
        recorder.observe_operation("docker-client", "container_wait", 60.0, None)  # excluded by default
        recorder.observe_operation("docker-client", "container_logs.stream", 60.0, None)  # streams never count
    first = alert(recorder, "docker_api_p95")
    assert first["active"] is True
    assert first["value"] == pytest.approx(1.5, rel=0.03)
    assert "slowest operation container_create" in first["message"]
    alert(recorder, "docker_api_p95")  # still crossed: no second warning
    warnings = [line for line in log_lines if line.startswith("WARNING") and "docker_api_p95" in line]
    assert len(warnings) == 1
    # A minute later the slow calls left the window; fast ones came.
    clock.advance(61)
    for _ in range(30):
        recorder.observe_operation("docker-client", "container_create", 0.02, None)
    cleared = alert(recorder, "docker_api_p95")
    assert cleared["active"] is False
    assert cleared["firings"] == 1
    assert [line for line in log_lines if line.startswith("INFO") and "docker_api_p95 back to normal" in line]


def test_docker_p95_needs_enough_calls(build: Build) -> None:
    recorder = build(alert_docker_min_calls="20")
    for _ in range(19):
        recorder.observe_operation("docker-client", "container_create", 5.0, None)
    reading = alert(recorder, "docker_api_p95")
    assert (reading["active"], reading["value"]) == (False, None)
    recorder.observe_operation("docker-client", "container_create", 5.0, None)
    assert alert(recorder, "docker_api_p95")["active"] is True


def test_breaker_alert_measures_time_not_closed(build: Build, clock: FakeClock, log_lines: list[str]) -> None:
    recorder = build(alert_breaker_open="5m")

    def breaker(state: str) -> None:
        for word in ("closed", "open", "half-open"):
            recorder.set_gauge("docker_client_breaker_state", 1.0 if word == state else 0.0, {"state": word})

    breaker("closed")
    assert alert(recorder, "circuit_breaker_open")["value"] == 0.0
    breaker("open")
    alert(recorder, "circuit_breaker_open")
    clock.advance(200)
    breaker("half-open")  # a trial call: still not closed
    assert alert(recorder, "circuit_breaker_open")["active"] is False
    clock.advance(101)
    breaker("open")
    fired = alert(recorder, "circuit_breaker_open")
    assert fired["active"] is True
    assert fired["value"] == pytest.approx(301)
    breaker("closed")
    assert alert(recorder, "circuit_breaker_open")["active"] is False
    document = json.loads(recorder.export("json"))["docker"]["breaker"]
    assert document["state"] == "closed"
    assert [(c["from"], c["to"]) for c in document["recent_changes"]] == [
        ("closed", "open"), ("open", "half-open"), ("half-open", "open"), ("open", "closed")]
    assert sum("WARNING" in line and "circuit_breaker_open" in line for line in log_lines) == 1
    assert sum("INFO" in line and "circuit_breaker_open back to normal" in line for line in log_lines) == 1


def test_no_breaker_means_no_breaker_alert(build: Build) -> None:
    recorder = build()
    reading = alert(recorder, "circuit_breaker_open")
    assert (reading["active"], reading["value"]) == (False, None)
    assert json.loads(recorder.export("json"))["docker"]["breaker"] is None


def test_token_growth_alert(build: Build, clock: FakeClock, log_lines: list[str]) -> None:
    # 100 bytes a token: 10 MB of growth is 100,000 more tokens held within the hour.
    recorder = build(token_bytes="100", alert_token_growth="10MB", alert_token_growth_window="1h")
    recorder.set_gauge("token_manager_held", 1_000)
    assert alert(recorder, "token_memory_growth")["value"] == 0
    clock.advance(1800)
    recorder.set_gauge("token_manager_held", 90_000)
    assert alert(recorder, "token_memory_growth")["active"] is False
    clock.advance(1200)
    recorder.set_gauge("token_manager_held", 102_000)
    fired = alert(recorder, "token_memory_growth")
    assert fired["active"] is True
    assert fired["value"] == pytest.approx(101_000 * 100)
    tokens = json.loads(recorder.export("json"))["token_manager"]
    assert tokens["estimated_bytes"] == 102_000 * 100
    # Steady for over an hour: the low point left the window, so no more growth within it.
    clock.advance(3700)
    assert alert(recorder, "token_memory_growth")["active"] is False
    assert sum("WARNING" in line and "token_memory_growth" in line for line in log_lines) == 1
    assert "ofelia_token_manager_estimated_bytes" in recorder.export("prometheus")


def test_buffer_hit_rate_alert(build: Build, clock: FakeClock, log_lines: list[str]) -> None:
    recorder = build(alert_buffer_hit_rate="80%", alert_buffer_window="10m", alert_buffer_min_acquisitions="100")

    def pool(hits: int, misses: int) -> None:
        recorder.set_gauge("buffer_pool_hits", hits)
        recorder.set_gauge("buffer_pool_misses", misses)

    pool(10, 40)  # 50 acquisitions: too few to judge
    assert alert(recorder, "buffer_pool_hit_rate")["value"] is None
    pool(50, 60)  # 110 acquisitions since the start, 45% hits
    fired = alert(recorder, "buffer_pool_hit_rate")
    assert fired["active"] is True
    assert fired["value"] == pytest.approx(50 / 110)
    clock.advance(660)
    pool(1050, 110)  # the last 10 minutes: 1000 hits, 50 misses
    cleared = alert(recorder, "buffer_pool_hit_rate")
    assert cleared["active"] is False
    assert cleared["value"] == pytest.approx(1000 / 1050)
    assert sum("WARNING" in line and "buffer_pool_hit_rate" in line for line in log_lines) == 1
    assert sum("INFO" in line and "buffer_pool_hit_rate back to normal" in line for line in log_lines) == 1


def test_alerts_off_evaluates_and_logs_nothing(build: Build, log_lines: list[str]) -> None:
    recorder = build(alerts="false", alert_docker_min_calls="1")
    recorder.observe_operation("docker-client", "ping", 30.0, None)
    assert json.loads(recorder.export("json"))["alerts"] == []
    assert not [line for line in log_lines if "metrics alert" in line]


# --- the sampler ------------------------------------------------------------------------


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SAMPLER_THREAD]


def test_the_sampler_samples_and_close_stops_it(clock: FakeClock) -> None:
    before = len(sampler_threads())
    recorder = PerformanceRecorder(parse_settings({"sample-interval": "10ms"}), clock=clock)
    thread = recorder.sampler_thread
    assert thread is not None and thread.is_alive()
    assert len(sampler_threads()) == before + 1
    deadline = threading.Event()
    for _ in range(500):  # wait (bounded) for a few samples; no timing is asserted
        if recorder.stats()["sampler"]["samples"] >= 3:
            break
        deadline.wait(0.01)
    assert recorder.stats()["sampler"]["samples"] >= 3
    recorder.close()
    assert not thread.is_alive()
    assert recorder.stats()["sampler"]["alive"] is False
    assert len(sampler_threads()) == before
    recorder.close()  # twice is fine
    assert recorder.export("json")  # figures stay readable after close


def test_the_sampler_judges_the_docker_alert_without_a_scrape(clock: FakeClock, log_lines: list[str]) -> None:
    recorder = PerformanceRecorder(
        parse_settings({"sample-interval": "5ms", "alert-docker-min-calls": "1", "alert-docker-p95": "100ms"}),
        clock=clock,
    )
    try:
        recorder.observe_operation("docker-client", "ping", 2.0, None)
        for _ in range(500):
            if recorder.stats()["alerts_active"]:
                break
            threading.Event().wait(0.01)
        assert recorder.stats()["alerts_active"] == ["docker_api_p95"]
    finally:
        recorder.close()
    assert any("WARNING" in line and "docker_api_p95" in line for line in log_lines)


def test_no_sampler_with_interval_zero(build: Build) -> None:
    before = len(sampler_threads())
    recorder = build(sample_interval="0")
    assert recorder.sampler_thread is None
    assert len(sampler_threads()) == before


def test_the_exposition_is_byte_for_byte_prometheus_clients(build: Build) -> None:
    # The driver writes the text format itself for speed; prometheus_client's generate_latest is the
    # reference, over the recorder's own families and families with every odd case.
    from ofelia_metrics_perf.exposition import text_exposition
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeHistogramMetricFamily,
        GaugeMetricFamily,
        InfoMetricFamily,
        Metric,
    )

    recorder = build()
    feed(recorder)
    recorder.record_run("line\nbreak", "failed", float("inf"))
    recorder.set_gauge("not_a_number", float("nan"), {"b": "2", "a": 'x"y\\z'})
    odd_counter = CounterMetricFamily("odd", "Help with \\ and\nnewline.", labels=["job"], created=12.5)
    odd_counter.add_metric(["ä ünïcode"], 3, created=1.0, timestamp=1700000000.123)
    info = InfoMetricFamily("build", "Build info.", value={"version": "1.0"})
    gauge_histogram = GaugeHistogramMetricFamily("queue", "Queue.", buckets=[("1", 2), ("+Inf", 3)], gsum_value=4)
    untyped = Metric("plain", "Untyped.", "unknown")
    untyped.add_sample("plain", {}, -0.0)
    numbers = GaugeMetricFamily("numbers", "Numbers around the formatting switch.", labels=["n"])
    for number in (0, -0.0, 1, 2.5, 999999.9, 1e6, 1234567, -1e6, -1234567.5, 1e-7, 3e15, float("-inf"), True):
        numbers.add_metric([repr(number)], number)
    extra = [odd_counter, info, gauge_histogram, untyped, numbers, GaugeMetricFamily("big", "Big.", value=1e22)]

    class Families:
        def __init__(self, families: list[Metric]) -> None:
            self.families = families

        def collect(self) -> list[Metric]:
            return self.families

    families = [*recorder._registry.collect(), *extra]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(families))  # type: ignore[arg-type]
    expected = generate_latest(registry).decode("utf-8")
    assert text_exposition(families) == expected
    assert "ofelia_job_runs_total" in expected and "odd_created" in expected and "queue_gsum" in expected
