"""The ``[metrics]`` settings of the performance driver, its environment overrides and its entry point."""

from __future__ import annotations

import time
from importlib.metadata import entry_points

import ofelia_metrics_perf
import pytest
from ofelia_hookspecs.types import DriverContext
from ofelia_metrics_perf import PerformanceRecorder, build_recorder, ofelia_make_metrics_recorder
from ofelia_metrics_perf.settings import (
    DEFAULT_DOCKER_EXCLUDE,
    DEFAULT_HISTOGRAM_BUCKETS,
    DEFAULT_RUN_BUCKETS,
    ENV_OVERRIDES,
    KEYS,
    PerfSettings,
    parse_settings,
)


def test_defaults() -> None:
    settings = parse_settings({})
    assert settings == PerfSettings()
    assert settings.histogram_buckets == DEFAULT_HISTOGRAM_BUCKETS
    assert settings.run_buckets == DEFAULT_RUN_BUCKETS
    assert (settings.quantile_window, settings.throughput_window, settings.sample_interval) == (300.0, 60.0, 15.0)
    assert (settings.max_jobs, settings.max_gauges, settings.token_bytes) == (10_000, 20_000, 350)
    assert settings.alerts is True
    # The thresholds.
    assert settings.alert_docker_p95 == 1.0
    assert settings.alert_breaker_open == 300.0
    assert settings.alert_token_growth == 10_000_000
    assert settings.alert_token_growth_window == 3600.0
    assert settings.alert_buffer_hit_rate == 0.8
    assert settings.alert_docker_exclude == DEFAULT_DOCKER_EXCLUDE


def test_ini_strings() -> None:
    settings = parse_settings({
        "histogram-buckets": "0.001, 10ms,0.1,1", "run-buckets": "1s,1m,1h", "quantile-window": "1m",
        "throughput-window": "30s", "sample-interval": "0", "max-jobs": "5", "max-gauges": "7",
        "token-bytes": "1KiB", "alerts": "off", "alert-docker-p95": "1500ms", "alert-docker-min-calls": "3",
        "alert-docker-exclude": "container_wait, image_pull", "alert-breaker-open": "10m",
        "alert-token-growth": "5MB", "alert-token-growth-window": "2h", "alert-buffer-hit-rate": "75%",
        "alert-buffer-window": "5m", "alert-buffer-min-acquisitions": "9",
    })
    assert settings == PerfSettings(
        histogram_buckets=(0.001, 0.01, 0.1, 1.0), run_buckets=(1.0, 60.0, 3600.0), quantile_window=60.0,
        throughput_window=30.0, sample_interval=0.0, max_jobs=5, max_gauges=7, token_bytes=1024, alerts=False,
        alert_docker_p95=1.5, alert_docker_min_calls=3, alert_docker_exclude=("container_wait", "image_pull"),
        alert_breaker_open=600.0, alert_token_growth=5_000_000, alert_token_growth_window=7200.0,
        alert_buffer_hit_rate=0.75, alert_buffer_window=300.0, alert_buffer_min_acquisitions=9,
    )


def test_yaml_values_and_underscores() -> None:
    settings = parse_settings({
        "histogram_buckets": [0.5, "1", 0.25], "sample_interval": 2, "alerts": False,
        "alert_buffer_hit_rate": 0.9, "alert_docker_exclude": [], "max_jobs": 3,
    })
    assert settings.histogram_buckets == (0.25, 0.5, 1.0)
    assert settings.sample_interval == 2.0
    assert settings.alerts is False
    assert settings.alert_buffer_hit_rate == 0.9
    assert settings.alert_docker_exclude == ()
    assert settings.max_jobs == 3


def test_the_rollback_test_config_is_valid() -> None:
    # The [metrics] section of ofelia's own rollback test: one key this driver reads, one it does not.
    settings = parse_settings({"histogram-buckets": "0.001,0.01,0.1,1", "prometheus": "true"})
    assert settings.histogram_buckets == (0.001, 0.01, 0.1, 1.0)


def test_unknown_keys_are_ignored() -> None:
    assert parse_settings({"some-other-drivers-key": "x", "port": "9090"}) == PerfSettings()


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("alert-docker-p95", "fast", "[metrics] alert-docker-p95"),
    ("alert-docker-p95", "0", "must be a positive duration"),
    ("alert-docker-p95", "5", None),  # a bare number is seconds
    ("sample-interval", "-1s", "[metrics] sample-interval"),
    ("histogram-buckets", "0.1,abc", "[metrics] histogram-buckets"),
    ("histogram-buckets", "", "no bounds given"),
    ("max-jobs", "0", "must be at least 1"),
    ("max-jobs", "many", "expected a whole number"),
    ("token-bytes", "lots", "[metrics] token-bytes"),
    ("alerts", "maybe", "is not a boolean"),
    ("alert-buffer-hit-rate", "120%", "between 0 and 1"),
    ("alert-buffer-hit-rate", "high", "percentage"),
    ("alert-docker-exclude", "container wait", "not an operation name"),
])
def test_bad_values_name_the_key(key: str, value: str, fragment: str | None) -> None:
    if fragment is None:
        parse_settings({key: value})
        return
    with pytest.raises(ValueError, match=None) as caught:
        parse_settings({key: value})
    assert fragment in str(caught.value)
    assert f"[metrics] {key}" in str(caught.value)


def test_every_key_has_an_environment_override() -> None:
    assert set(ENV_OVERRIDES) == set(KEYS)
    assert ENV_OVERRIDES["alert-docker-p95"] == "OFELIA_METRICS_ALERT_DOCKER_P95"
    assert ENV_OVERRIDES["sample-interval"] == "OFELIA_METRICS_SAMPLE_INTERVAL"
    assert all(name.startswith("OFELIA_METRICS_") for name in ENV_OVERRIDES.values())


def test_the_environment_wins_and_empty_counts_as_unset() -> None:
    env = {"OFELIA_METRICS_ALERT_DOCKER_P95": "250ms", "OFELIA_METRICS_MAX_JOBS": " ",
           "OFELIA_METRICS_ALERT_BUFFER_HIT_RATE": "0.5"}
    settings = parse_settings({"alert-docker-p95": "2s", "max-jobs": "9"}, env)
    assert settings.alert_docker_p95 == 0.25
    assert settings.max_jobs == 9
    assert settings.alert_buffer_hit_rate == 0.5


def test_an_environment_error_names_the_variable() -> None:
    with pytest.raises(ValueError) as caught:
        parse_settings({}, {"OFELIA_METRICS_TOKEN_BYTES": "-3"})
    assert "[metrics] token-bytes (from OFELIA_METRICS_TOKEN_BYTES)" in str(caught.value)


def test_the_factory_hook_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFELIA_METRICS_SAMPLE_INTERVAL", "0")
    monkeypatch.setenv("OFELIA_METRICS_MAX_JOBS", "4")
    recorder = ofelia_make_metrics_recorder(settings={}, context=DriverContext(clock=time.monotonic))
    try:
        assert isinstance(recorder, PerformanceRecorder)
        assert recorder.settings.max_jobs == 4
        assert recorder.sampler_thread is None
    finally:
        recorder.close()


def test_build_uses_the_context_clock() -> None:
    now = [5000.0]
    recorder = build_recorder({"sample-interval": "0"}, {}, DriverContext(clock=lambda: now[0]))
    now[0] += 10
    assert recorder.document()["recorder_uptime_seconds"] == pytest.approx(10.0)
    recorder.close()


def test_entry_point() -> None:
    (ep,) = entry_points(group="ofelia.metrics", name="performance")
    assert ep.value == "ofelia_metrics_perf"
    assert ep.load() is ofelia_metrics_perf
    assert ep.dist is not None and ep.dist.name == "ofelia-metrics-perf"
