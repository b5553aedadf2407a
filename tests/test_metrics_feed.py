"""What the core feeds the metrics driver at each scrape (``render_metrics``), end to end
through a Runtime with the performance driver, and with the noop driver."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import MetricSample
from prometheus_client.parser import text_string_to_metric_families

from ofelia_core.drivers.selection import installed_drivers
from ofelia_core.drivers.table import BY_KEY
from ofelia_core.metrics_feed import CONTENT_TYPES, feed_drivers, feed_samples, flatten_stats, render_metrics
from ofelia_core.metrics_runs import CONCURRENT_GAUGE, RunMetrics
from ofelia_core.runs import Run, RunState
from ofelia_core.runtime import Runtime, load_and_validate

needs_performance = pytest.mark.skipif(
    "performance" not in installed_drivers(BY_KEY["metrics"]),
    reason="ofelia-metrics-perf is not installed (pip install -e plugins/metrics-perf)",
)

CONFIG = """\
[metrics]
sample-interval = 0

[job-local "tick"]
schedule = @every 1h
command = echo tick
"""


class SamplePlugin:
    """A third party's plugin adding its own metric through the hook."""

    @hookimpl
    def ofelia_collect_metrics(self) -> list[MetricSample]:
        return [MetricSample("example_queue_depth", 42.0, labels={"queue": "mail"}, help="mails waiting")]


class BrokenSamplePlugin:
    @hookimpl
    def ofelia_collect_metrics(self) -> list[MetricSample]:
        raise RuntimeError("plugin bug")


def make_runtime(tmp_path: Path, metrics: str) -> Runtime:
    config = tmp_path / "ofelia.ini"
    config.write_text(CONFIG)
    env = {"OFELIA_METRICS": metrics, "OFELIA_STATE_DIR": str(tmp_path / "state")}
    return Runtime(load_and_validate(str(config), env), env=env)


@pytest.fixture
def performance(tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, "performance")
    yield runtime
    runtime.close()


@pytest.fixture
def noop(tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, "noop")
    yield runtime
    runtime.close()


def run_tick(runtime: Runtime) -> Run:
    job = runtime.jobs["tick"]
    run = runtime.executor.execute(job, Run(job.name, job.type))
    assert run.state == RunState.SUCCESS, run.error
    return run


def sample_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


@needs_performance
def test_a_run_and_the_drivers_stats_reach_the_prometheus_text(performance: Runtime) -> None:
    run_tick(performance)
    content_type, body = render_metrics(performance, "prometheus")
    assert content_type == CONTENT_TYPES["prometheus"]
    assert sample_value(body, "ofelia_job_runs_total", job="tick", state="success") == 1
    assert sample_value(body, "ofelia_job_run_seconds_total", job="tick", state="success") > 0
    # The core's instrumentation timed the buffer pool's get and put for the run.
    assert sample_value(body, "ofelia_operation_duration_seconds_count", concern="buffer-pool", operation="get") == 2
    # Each driver's own stats, fed as gauges at the scrape (the baselines, here).
    assert sample_value(body, "ofelia_buffer_pool_gets") == 2
    assert sample_value(body, "ofelia_buffer_pool_puts") == 2
    assert sample_value(body, "ofelia_buffer_pool_driver", driver="baseline") == 1
    assert sample_value(body, "ofelia_token_manager_active") == 0
    assert sample_value(body, "ofelia_token_manager_max_tokens") > 0
    assert sample_value(body, "ofelia_docker_client_timeout") > 0
    assert sample_value(body, "ofelia_docker_client_driver", driver="baseline") == 1
    # The run was counted in progress while it ran, by the Runtime's run metrics plugin.
    assert sample_value(body, "ofelia_job_runs_concurrent") == 0
    assert sample_value(body, "ofelia_job_runs_concurrent_peak") == 1


@needs_performance
def test_the_json_export_has_the_run_and_the_drivers(performance: Runtime) -> None:
    run_tick(performance)
    content_type, body = render_metrics(performance, "json")
    assert content_type == "application/json"
    document = json.loads(body)
    assert document["runs"]["jobs"]["tick"]["by_state"]["success"]["count"] == 1
    assert document["drivers"]["buffer-pool"]["gets"] == 2
    assert document["drivers"]["buffer-pool"]["driver"] == "baseline"
    assert document["drivers"]["token-manager"]["driver"] == "baseline"
    assert document["concurrency"] == {"current": 0.0, "peak": 1.0}


@needs_performance
def test_a_plugin_sample_appears_in_both_formats(performance: Runtime) -> None:
    performance.hooks.pm.register(SamplePlugin(), name="tests.sample-metrics")
    _, text = render_metrics(performance, "prometheus")
    assert sample_value(text, "ofelia_example_queue_depth", queue="mail") == 42
    _, body = render_metrics(performance, "json")
    assert {"name": "example_queue_depth", "labels": {"queue": "mail"}, "value": 42.0} in json.loads(body)["gauges"]


@needs_performance
def test_a_failing_plugin_does_not_fail_the_scrape(performance: Runtime) -> None:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="WARNING")
    try:
        performance.hooks.pm.register(BrokenSamplePlugin(), name="tests.broken-metrics")
        for _ in range(3):
            _, text = render_metrics(performance, "prometheus")
            assert "ofelia_process_resident_memory_bytes" in text
    finally:
        logger.remove(sink)
    assert len([line for line in lines if "ofelia_collect_metrics failed" in line]) <= 1


def test_with_the_noop_driver_the_body_is_empty_and_nothing_is_fed(noop: Runtime) -> None:
    noop.hooks.pm.register(SamplePlugin(), name="tests.sample-metrics")
    run_tick(noop)
    assert render_metrics(noop, "prometheus") == (CONTENT_TYPES["prometheus"], "")
    assert render_metrics(noop, "json") == (CONTENT_TYPES["json"], "")
    # No run metrics plugin either: runs pay nothing for metrics.
    assert noop.run_metrics is None
    assert noop.hooks.pm.get_plugin(RunMetrics.PLUGIN_NAME) is None


def test_an_unknown_format_is_refused(noop: Runtime) -> None:
    with pytest.raises(ValueError, match="unknown metrics format"):
        render_metrics(noop, "xml")


# --- the feed's pieces ------------------------------------------------------------------


class Recording:
    """Stands for a recorder: keeps what ``set_gauge`` was given."""

    def __init__(self) -> None:
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        self.gauges[(name, tuple(sorted((labels or {}).items())))] = value


class FakeDriver:
    def __init__(self, stats: dict[str, Any]) -> None:
        self.figures = stats

    def stats(self) -> dict[str, Any]:
        return self.figures


POOLED_LIKE = {
    "driver": "pooled",
    "base_url": "unix:///var/run/docker.sock",
    "api_version": "1.45",
    "breaker": {"state": "closed", "consecutive_failures": 0, "opened_since": None, "times_opened": 2,
                "transitions": [{"before": "closed", "after": "open"}]},
    "pools": {"control": {"idle": 3, "open": 4}},
    "tls": False,
}


def test_flatten_a_bare_drivers_stats() -> None:
    flat = {name: (leaf, value) for name, leaf, value in flatten_stats("docker-client", POOLED_LIKE)}
    assert flat == {
        "docker_client_driver": ("driver", "pooled"),
        "docker_client_breaker_state": ("state", "closed"),
        "docker_client_breaker_consecutive_failures": ("consecutive_failures", 0.0),
        "docker_client_breaker_times_opened": ("times_opened", 2.0),
        "docker_client_pools_control_idle": ("idle", 3.0),
        "docker_client_pools_control_open": ("open", 4.0),
        "docker_client_tls": ("tls", 0.0),
    }  # the address, the API version, None and lists are left out


def test_flatten_an_instrumented_drivers_stats_leaves_the_operations_out() -> None:
    stats = {"driver": {"driver": "tiered", "hit_rate": 0.5, "tiers": {"2.5MiB": {"hits": 1}}},
             "operations": {"get": {"calls": 3}}, "observer_errors": 0, "returned_bytes": {"count": 2}}
    flat = {name: value for name, _, value in flatten_stats("buffer-pool", stats)}
    assert flat == {"buffer_pool_driver": "tiered", "buffer_pool_hit_rate": 0.5, "buffer_pool_tiers_2_5MiB_hits": 1.0,
                    "buffer_pool_observer_errors": 0.0, "buffer_pool_returned_bytes_count": 2.0}


def test_a_changed_word_sets_the_old_one_to_zero() -> None:
    recorder, stats = Recording(), {"breaker": {"state": "closed"}}
    driver = FakeDriver(stats)
    feed_drivers(recorder, {"docker-client": driver})
    stats["breaker"]["state"] = "open"
    feed_drivers(recorder, {"docker-client": driver})
    assert recorder.gauges == {
        ("docker_client_breaker_state", (("state", "closed"),)): 0.0,
        ("docker_client_breaker_state", (("state", "open"),)): 1.0,
    }


def test_a_failing_driver_is_skipped() -> None:
    class Broken:
        def stats(self) -> dict[str, Any]:
            raise RuntimeError("stats bug")

    recorder = Recording()
    fed = feed_drivers(recorder, {"token-manager": Broken(), "buffer-pool": FakeDriver({"gets": 1}),
                                  "metrics": FakeDriver({"ignored": 1})})
    assert fed == 1
    assert recorder.gauges == {("buffer_pool_gets", ()): 1.0}


def test_samples_keep_their_labels() -> None:
    class Hooks:
        def collect_metrics(self) -> list[MetricSample]:
            return [MetricSample("a", 1.0), MetricSample("b", 2, kind="counter", labels={"x": "y"})]

    recorder = Recording()
    assert feed_samples(recorder, Hooks()) == 2
    assert recorder.gauges == {("a", ()): 1.0, ("b", (("x", "y"),)): 2.0}


@needs_performance
def test_the_breaker_state_reaches_the_recorder_through_the_feed(performance: Runtime) -> None:
    recorder = performance.drivers.metrics
    feed_drivers(recorder, {"docker-client": FakeDriver(POOLED_LIKE)})
    document = json.loads(recorder.export("json"))
    assert document["docker"]["breaker"]["state"] == "closed"
    assert document["docker"]["breaker"]["times_opened"] == 2
    assert document["drivers"]["docker-client"]["breaker_state"] == "closed"


# --- runs in progress -----------------------------------------------------------------


def test_run_metrics_counts_started_runs_only() -> None:
    recorder = Recording()
    plugin = RunMetrics(recorder)  # type: ignore[arg-type]
    first, second, skipped = Run("a", "job-local"), Run("b", "job-local"), Run("c", "job-local")
    plugin.ofelia_observe_run_start(job=None, run=first)  # type: ignore[arg-type]
    plugin.ofelia_observe_run_start(job=None, run=second)  # type: ignore[arg-type]
    assert recorder.gauges[(CONCURRENT_GAUGE, ())] == 2
    plugin.ofelia_observe_run_end(job=None, run=skipped)  # type: ignore[arg-type]  # never started
    assert plugin.running == 2
    plugin.ofelia_observe_run_end(job=None, run=first)  # type: ignore[arg-type]
    plugin.ofelia_observe_run_end(job=None, run=second)  # type: ignore[arg-type]
    assert recorder.gauges[(CONCURRENT_GAUGE, ())] == 0
    assert plugin.running == 0
