"""The Docker client contract, run against every installed driver, bare and instrumented,
on the project's own engine (scripts/docker-engine.sh)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ofelia_hookspecs.contract.docker import DockerClientContract, DockerServiceContract
from ofelia_hookspecs.protocols import DockerClient

from ofelia_core.drivers.instrumentation import InstrumentedDriver
from ofelia_core.drivers.selection import installed_drivers
from ofelia_core.drivers.table import BY_KEY

from .drivers_under_test import build_as_the_daemon_does, variants

pytestmark = pytest.mark.docker

KEY = "docker-client"
VARIANTS, IDS = variants(KEY)


def build_for_engine(variant: tuple[str, bool], base_url: str) -> DockerClient:
    name, wrapped = variant
    client: DockerClient = build_as_the_daemon_does(KEY, name, {"base-url": base_url}, wrapped=wrapped)
    return client


@pytest.fixture(scope="class", params=VARIANTS, ids=IDS)
def driver_variant(request: pytest.FixtureRequest) -> tuple[str, bool]:
    variant: tuple[str, bool] = request.param
    return variant


@pytest.fixture(scope="class")
def docker_client(driver_variant: tuple[str, bool], docker_engine_url: str) -> Iterator[DockerClient]:
    client = build_for_engine(driver_variant, docker_engine_url)
    yield client
    client.close()


@pytest.fixture(scope="class")
def unreachable_docker_client(
    driver_variant: tuple[str, bool], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerClient]:
    nothing: Path = tmp_path_factory.mktemp("no-engine") / "docker.sock"
    client = build_for_engine(driver_variant, f"unix://{nothing}")
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
