"""Settings of the pooled driver: the seed's defaults, section and environment, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from ofelia_docker_pooled.settings import KEYS, Endpoint, env_name, parse_settings


def test_defaults_are_the_seeds() -> None:
    settings = parse_settings({}, {})
    assert settings.endpoint == Endpoint("unix", path="/var/run/docker.sock")
    assert (settings.max_idle_conns, settings.max_idle_conns_per_host, settings.max_conns_per_host) == (100, 50, 100)
    assert settings.idle_conn_timeout == 90.0
    assert settings.max_concurrent_requests == 200
    assert (settings.breaker_failure_threshold, settings.breaker_open_timeout,
            settings.breaker_half_open_max_calls) == (10, 30.0, 1)
    assert settings.api_version == "auto" and settings.tls is None
    # Ours, not the seed's: long enough for an exec to be spawned under overload (docs/benchmarks.md).
    assert (settings.stream_slot_hold, settings.request_queue_timeout) == (10.0, 60.0)


def test_section_keys_accept_numbers_strings_and_go_durations() -> None:
    settings = parse_settings(
        {"max-concurrent-requests": "50", "idle_conn_timeout": "1m30s", "breaker-open-timeout": 5,
         "timeout": "2.5", "request-queue-timeout": "500ms"},
        {},
    )
    assert settings.max_concurrent_requests == 50
    assert settings.idle_conn_timeout == 90.0
    assert settings.breaker_open_timeout == 5.0
    assert settings.timeout == 2.5
    assert settings.request_queue_timeout == 0.5


def test_the_environment_wins_over_the_file() -> None:
    env = {env_name("max-concurrent-requests"): "7", env_name("breaker-failure-threshold"): "3"}
    settings = parse_settings({"max-concurrent-requests": 50}, env)
    assert env_name("max-concurrent-requests") == "OFELIA_DOCKER_CLIENT_MAX_CONCURRENT_REQUESTS"
    assert settings.max_concurrent_requests == 7
    assert settings.breaker_failure_threshold == 3


def test_every_key_has_an_environment_variable() -> None:
    for key, (field_name, kind) in KEYS.items():
        value = "2s" if kind == "duration" else "2"
        assert getattr(parse_settings({}, {env_name(key): value}), field_name) == 2


@pytest.mark.parametrize(
    ("settings", "env", "names"),
    [
        ({"max-concurrent-requests": 0}, {}, "[docker-client] max-concurrent-requests"),
        ({"max-concurrent-requests": "lots"}, {}, "[docker-client] max-concurrent-requests"),
        ({"breaker-open-timeout": "30"}, {env_name("breaker-open-timeout"): "30 seconds"},
         "OFELIA_DOCKER_CLIENT_BREAKER_OPEN_TIMEOUT"),
        ({"idle-conn-timeout": "-5s"}, {}, "[docker-client] idle-conn-timeout"),
        ({"base-url": "ftp://engine"}, {}, "[docker-client] base-url"),
        ({}, {"DOCKER_HOST": "tcp://"}, "DOCKER_HOST"),
        ({"api-version": "1.12"}, {}, "[docker-client] api-version"),
    ],
)
def test_bad_values_name_their_key(settings: dict[str, object], env: dict[str, str], names: str) -> None:
    with pytest.raises(ValueError, match=r".") as caught:
        parse_settings(settings, env)
    assert names in str(caught.value)


def test_keys_of_other_drivers_are_ignored() -> None:
    # A rollback must never make a valid config invalid, and neither may a roll-forward.
    parse_settings({"some-baseline-only-key": "x", "timeout": 30}, {})


def test_addresses() -> None:
    assert parse_settings({"base-url": "unix:///tmp/d.sock"}, {}).endpoint == Endpoint("unix", path="/tmp/d.sock")
    assert parse_settings({}, {"DOCKER_HOST": "tcp://10.0.0.5"}).endpoint == Endpoint("http", host="10.0.0.5",
                                                                                      port=2375)
    assert parse_settings({"base-url": "https://h:3000"}, {}).endpoint == Endpoint("https", host="h", port=3000)
    # The section wins over DOCKER_HOST, as with the baseline.
    chosen = parse_settings({"base-url": "tcp://a:1"}, {"DOCKER_HOST": "tcp://b:2"}).endpoint
    assert (chosen.host, chosen.port) == ("a", 1)


def test_tls_from_docker_tls_verify_and_cert_path(tmp_path: Path) -> None:
    # A working TLS connection is tested on the real engine (tests/docker/test_pooled_client.py).
    with pytest.raises(ValueError, match=r"DOCKER_TLS_VERIFY/DOCKER_CERT_PATH: missing .*ca\.pem"):
        parse_settings({}, {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    (tmp_path / "ca.pem").write_text("not a certificate")
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(ValueError, match=r"DOCKER_TLS_VERIFY/DOCKER_CERT_PATH: cannot load"):
        parse_settings({}, {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    assert parse_settings({}, {"DOCKER_TLS_VERIFY": "0", "DOCKER_CERT_PATH": str(tmp_path)}).tls is None
