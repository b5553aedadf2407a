"""The baseline Docker client's own behaviour: settings, laziness and error mapping.
Its behaviour against the engine is the contract suite's (tests/contract)."""

from __future__ import annotations

import re
import time
from typing import Any, cast

import docker.errors
import ofelia_hookspecs.specs
import pluggy
import pytest
import requests
import urllib3.exceptions
from ofelia_hookspecs.errors import (
    Conflict,
    DockerError,
    DockerTimeout,
    EngineUnavailable,
    NotFound,
    PullFailed,
)
from ofelia_hookspecs.protocols import DockerClient

from ofelia_core.baseline.docker_sdk import SdkDockerClient, parse_settings, translate_error
from ofelia_core.drivers.loading import build_driver, default_context, register_drivers
from ofelia_core.drivers.selection import Choice
from ofelia_core.drivers.table import BY_KEY

NOWHERE = "unix:///nonexistent/ofelia/docker.sock"


def build(settings: dict[str, Any]) -> DockerClient:
    pm = pluggy.PluginManager("ofelia")
    pm.add_hookspecs(ofelia_hookspecs.specs)
    register_drivers(pm, {"docker-client": Choice(BY_KEY["docker-client"], "baseline", "test")})
    driver: DockerClient = build_driver(pm, "docker-client", settings, default_context())
    return driver


def test_building_never_contacts_the_engine() -> None:
    started = time.monotonic()
    client = build({"base-url": NOWHERE})
    assert time.monotonic() - started < 1
    assert client.stats() == {
        "driver": "baseline",
        "base_url": NOWHERE,
        "api_version": "auto",
        "timeout": 60.0,
        "connected": False,
        "max_pool_size": 10,
    }
    with pytest.raises(EngineUnavailable):
        client.ping()
    client.close()


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"timeout": "soon"}, "[docker-client] timeout"),
        ({"timeout": 0}, "[docker-client] timeout"),
        ({"timeout": True}, "[docker-client] timeout"),
        ({"api-version": "latest"}, "[docker-client] api-version"),
        ({"api-version": "1.12"}, "[docker-client] api-version"),
        ({"base-url": ""}, "[docker-client] base-url"),
        ({"base-url": "tcp://host:notaport"}, "[docker-client] base-url"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, Any], where: str) -> None:
    with pytest.raises(ValueError, match=re.escape(where)):
        build(settings)


def test_unknown_keys_are_ignored() -> None:
    # They may belong to another driver: a rollback never makes a valid config invalid.
    client = build({"base-url": NOWHERE, "max-connections": "200", "breaker-threshold": 10})
    assert client.stats()["base_url"] == NOWHERE


def test_settings_override_the_environment() -> None:
    env = {"DOCKER_HOST": "unix:///from/env.sock", "DOCKER_API_VERSION": "1.41"}
    from_env = parse_settings({}, env)
    assert (from_env.base_url, from_env.api_version, from_env.timeout) == ("unix:///from/env.sock", "1.41", 60.0)
    chosen = parse_settings({"base-url": NOWHERE, "api-version": "auto", "timeout": "5"}, env)
    assert (chosen.base_url, chosen.api_version, chosen.timeout) == (NOWHERE, "auto", 5.0)
    with pytest.raises(ValueError, match="DOCKER_API_VERSION"):
        parse_settings({}, {"DOCKER_API_VERSION": "new"})
    with pytest.raises(ValueError, match="DOCKER_HOST"):
        parse_settings({}, {"DOCKER_HOST": "tcp://host:port"})
    assert parse_settings({}, {}).base_url is None


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} error", response=response, explanation=explanation)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (api_error(404, "No such container: x"), NotFound),
        (api_error(409, "Container x is paused"), Conflict),
        (api_error(500, 'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io'),
         PullFailed),
        (api_error(500, "unable to find user nobody2: no matching entries in passwd file"), DockerError),
        (api_error(500, "Cannot mkdir: /etc/passwd is not a directory"), DockerError),
        (api_error(503, "This node is not a swarm manager."), DockerError),
        (api_error(500, "network missing-net not found"), DockerError),
        (api_error(500, "connection error: desc = transport: dial unix containerd.sock: connect refused"),
         EngineUnavailable),
        (api_error(400, "invalid mode"), DockerError),
        (requests.exceptions.ReadTimeout("read timed out"), DockerTimeout),
        (requests.exceptions.ConnectionError(urllib3.exceptions.ReadTimeoutError(cast(Any, None), "/", "timed out")),
         DockerTimeout),
        (requests.exceptions.ConnectTimeout("connect timed out"), EngineUnavailable),
        (requests.exceptions.ConnectionError("refused"), EngineUnavailable),
        (ConnectionRefusedError(111, "refused"), EngineUnavailable),
        (docker.errors.DockerException("odd"), DockerError),
    ],
)
def test_error_mapping(exc: BaseException, expected: type[DockerError]) -> None:
    error = translate_error(exc, "some_call")
    assert type(error) is expected
    assert error.operation == "some_call"
    assert error.engine_failure is (expected in (EngineUnavailable, DockerTimeout))


def test_any_pull_error_is_pull_failed() -> None:
    for status in (404, 500):
        error = translate_error(api_error(status, "pull access denied"), "image_pull", pull=True)
        assert type(error) is PullFailed and not error.engine_failure
    assert type(translate_error(requests.exceptions.ConnectionError("x"), "image_pull", pull=True)) is (
        EngineUnavailable
    )


@pytest.mark.docker
def test_api_version_is_negotiated_on_first_use(docker_engine_url: str) -> None:
    client = SdkDockerClient.from_settings({"base-url": docker_engine_url})
    try:
        client.ping()
        stats = client.stats()
        assert stats["connected"] is True
        major, minor = (int(part) for part in stats["api_version"].split("."))
        assert (major, minor) >= (1, 24)
    finally:
        client.close()
    assert client.stats()["connected"] is False


@pytest.mark.docker
def test_docker_host_from_the_environment(docker_engine_url: str) -> None:
    client = SdkDockerClient.from_settings({}, environ={"DOCKER_HOST": docker_engine_url})
    try:
        client.ping()
    finally:
        client.close()


@pytest.mark.docker
def test_a_unix_socket_client_skips_proxy_and_netrc_lookups(docker_engine_url: str) -> None:
    client = SdkDockerClient.from_settings({"base-url": docker_engine_url})
    try:
        client.ping()
        assert client._api().trust_env is False
    finally:
        client.close()


def test_a_tcp_client_keeps_the_environment_for_proxies() -> None:
    client = SdkDockerClient.from_settings({"base-url": "tcp://127.0.0.1:9", "api-version": "1.41"})
    try:
        assert client._api().trust_env is True
    finally:
        client.close()
