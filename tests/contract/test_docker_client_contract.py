"""The Docker client contract, run against every installed driver, bare and instrumented,
on the project's own engine (scripts/docker-engine.sh)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ofelia_hookspecs.specs
import pluggy
import pytest
from ofelia_hookspecs.contract.docker import DockerClientContract, DockerServiceContract
from ofelia_hookspecs.protocols import DockerClient

from ofelia_core.baseline.metrics_noop import NoopMetricsRecorder
from ofelia_core.drivers.instrumentation import InstrumentedDriver, instrument
from ofelia_core.drivers.loading import build_driver, default_context, register_drivers
from ofelia_core.drivers.selection import Choice, installed_drivers
from ofelia_core.drivers.table import BY_KEY

pytestmark = pytest.mark.docker

KEY = "docker-client"
VARIANTS = [(name, wrapped) for name in installed_drivers(BY_KEY[KEY]) for wrapped in (False, True)]
IDS = [f"{name}-instrumented" if wrapped else name for name, wrapped in VARIANTS]


def build_as_the_daemon_does(variant: tuple[str, bool], base_url: str) -> DockerClient:
    name, wrapped = variant
    pm = pluggy.PluginManager("ofelia")
    pm.add_hookspecs(ofelia_hookspecs.specs)
    register_drivers(pm, {KEY: Choice(BY_KEY[KEY], name, "test")})
    driver: DockerClient = build_driver(pm, KEY, {"base-url": base_url}, default_context())
    return instrument(KEY, driver, NoopMetricsRecorder()) if wrapped else driver


@pytest.fixture(scope="class", params=VARIANTS, ids=IDS)
def driver_variant(request: pytest.FixtureRequest) -> tuple[str, bool]:
    variant: tuple[str, bool] = request.param
    return variant


@pytest.fixture(scope="class")
def docker_client(driver_variant: tuple[str, bool], docker_engine_url: str) -> Iterator[DockerClient]:
    client = build_as_the_daemon_does(driver_variant, docker_engine_url)
    yield client
    client.close()


@pytest.fixture(scope="class")
def unreachable_docker_client(
    driver_variant: tuple[str, bool], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerClient]:
    nothing: Path = tmp_path_factory.mktemp("no-engine") / "docker.sock"
    client = build_as_the_daemon_does(driver_variant, f"unix://{nothing}")
    yield client
    client.close()


@pytest.fixture(scope="class")
def swarm_docker_client(docker_client: DockerClient, docker_swarm: None) -> DockerClient:
    return docker_client


def test_the_baseline_is_installed() -> None:
    assert "baseline" in installed_drivers(BY_KEY[KEY])


class TestDockerClientContract(DockerClientContract):
    def test_stats_name_the_driver(self, docker_client: DockerClient, driver_variant: tuple[str, bool]) -> None:
        docker_client.ping()
        stats = docker_client.stats()
        if isinstance(docker_client, InstrumentedDriver):
            assert stats["operations"]["ping"]["calls"] >= 1
            stats = stats["driver"]
        assert stats["driver"] == driver_variant[0]


class TestDockerServiceContract(DockerServiceContract):
    pass
