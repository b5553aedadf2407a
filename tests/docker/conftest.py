"""Shared fixtures of the container job tests (job-exec, job-run, job-service-run).

Jobs are built the way the config builds them (``build_job`` with the core's
key specs), with no Runtime; a run gets a :class:`RunContext` whose drivers
are the real, instrumented baseline drivers pointed at the project's test
engine (``tests/docker_engine_fixtures.py``).

This directory must not get an ``__init__.py``: ``tests/`` is on ``sys.path``,
so a package named ``docker`` there would shadow the Docker SDK. Test module
names must therefore be unique across the suite.

Other suites use the same engine at the same time, so the leak check is
scoped to this session: every job name starts with :data:`JOB_PREFIX` and
every container a test makes itself carries ``ofelia.test=<SESSION_TAG>``.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import docker.errors
import pytest
from docker_engine_fixtures import admin_client, engine_url
from engine_control import own_engine  # noqa: F401 - a fixture for the engine restart tests
from ofelia_hookspecs.types import ConfigKeys, RunContext

from ofelia_core.baseline.buffers import FreshBufferPool
from ofelia_core.config.model import Location, Section
from ofelia_core.drivers.loading import ActiveDrivers, default_context, start_drivers
from ofelia_core.drivers.selection import choose_drivers, installed_drivers
from ofelia_core.drivers.table import BY_KEY
from ofelia_core.jobs import Job, build_job
from ofelia_core.jobtypes import JOB_KEYS, JOB_TYPES
from ofelia_core.plugins import build_plugin_manager
from ofelia_core.runs import Run

#: Unique to this pytest process (xdist workers each get their own).
SESSION_TAG = secrets.token_hex(4)
#: Every job name built here starts with this, so its containers are findable.
JOB_PREFIX = f"t{SESSION_TAG}-"
#: Label on containers a test creates itself (targets of job-exec, existing job-run containers).
TEST_LABEL = "ofelia.test"
#: Seconds to let the engine finish removing containers (swarm tasks go asynchronously).
LEAK_GRACE = 15.0

JOB_TYPE_SPECS = {spec.name: spec for spec in JOB_TYPES}
EXTRA_KEYS = [ConfigKeys("job", JOB_KEYS)]


def make_job(kind: str, name: str, global_values: Mapping[str, Any] | None = None, **values: Any) -> Job:
    """A job of ``kind`` as the config builds it; ``working_dir=`` becomes ``working-dir``,
    a list value repeats the key. The name gets :data:`JOB_PREFIX`."""
    where = Location("test.ini", line=1)
    section = Section(kind, JOB_PREFIX + name, where)
    section.set("schedule", "@manual", where)
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            section.set(key.replace("_", "-"), item, where)
    return build_job(section, JOB_TYPE_SPECS[kind], EXTRA_KEYS, global_values)


@dataclass
class Outcome:
    """What one run returned and wrote."""

    code: int
    context: RunContext
    run: Run

    @property
    def stdout(self) -> bytes:
        return self.context.stdout.getvalue()

    @property
    def stderr(self) -> bytes:
        return self.context.stderr.getvalue()


class JobRunner:
    """Runs jobs through their type's registered runner, as the executor does."""

    def __init__(self, drivers: ActiveDrivers) -> None:
        self.drivers = drivers

    def context(
        self, max_runtime: float | None = None, max_size: int | None = None, cancel: threading.Event | None = None
    ) -> RunContext:
        """A context on the session's drivers; ``max_size`` swaps in a small buffer pool."""
        pool: Any = FreshBufferPool(max_size=max_size) if max_size else self.drivers.buffer_pool
        return RunContext(
            stdout=pool.get("test", "stdout"),
            stderr=pool.get("test", "stderr"),
            max_runtime=max_runtime,
            cancel=cancel or threading.Event(),
            drivers=self.drivers,
        )

    def __call__(self, job: Job, context: RunContext | None = None, run: Run | None = None) -> Outcome:
        context = context or self.context(job.max_runtime)
        run = run or Run(job.name, job.type)
        assert job.spec.runner is not None, f"{job.type} has no runner"
        code = job.spec.runner(job, run, context)
        return Outcome(code, context, run)


class Containers:
    """Containers a test needs (labelled ``ofelia.test``, network ``none``), removed at the end."""

    def __init__(self, api: Any, image: str) -> None:
        self.api = api
        self.image = image
        self.made: list[str] = []

    def create(self, command: list[str] | None = None, *, start: bool = True, **kwargs: Any) -> str:
        kwargs.setdefault("host_config", self.api.create_host_config(network_mode="none"))
        labels = {TEST_LABEL: SESSION_TAG, **kwargs.pop("labels", {})}
        cid: str = self.api.create_container(
            kwargs.pop("image", self.image), command=command or ["sleep", "3600"], labels=labels, **kwargs
        )["Id"]
        self.made.append(cid)
        if start:
            self.api.start(cid)
        return cid

    def remove(self, cid: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(cid, force=True, v=True)

    def remove_all(self) -> None:
        for cid in self.made:
            self.remove(cid)
        self.made.clear()


def leftover_containers(api: Any) -> list[dict[str, Any]]:
    """This session's containers still on the engine: made by its jobs or by its tests."""
    managed = api.containers(all=True, filters={"label": "ofelia.managed=true"})
    ours = [c for c in managed if str((c.get("Labels") or {}).get("ofelia.job", "")).startswith(JOB_PREFIX)]
    ours += api.containers(all=True, filters={"label": f"{TEST_LABEL}={SESSION_TAG}"})
    return ours


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; its last answer."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


@pytest.fixture(scope="session")
def admin_api(docker_engine_url: str) -> Iterator[Any]:
    """A plain SDK client for set-up and for checking what the runners did."""
    api = admin_client(docker_engine_url, timeout=60)
    yield api
    api.close()


@pytest.fixture(scope="session", params=installed_drivers(BY_KEY["docker-client"]))
def docker_drivers(docker_engine_url: str, request: pytest.FixtureRequest) -> Iterator[ActiveDrivers]:
    """The drivers as the daemon builds them (instrumented), on the test engine: every job
    test runs once with each installed Docker client driver (baseline, pooled)."""
    pm = build_plugin_manager(load_entrypoints=False)
    drivers = start_drivers(
        pm, choose_drivers(env={"OFELIA_DOCKER_CLIENT": request.param}),
        {"docker-client": {"base-url": docker_engine_url}}, default_context(),
    )
    yield drivers
    drivers.close()


@pytest.fixture(scope="session")
def run_job(docker_drivers: ActiveDrivers) -> JobRunner:
    return JobRunner(docker_drivers)


@pytest.fixture(scope="session")
def session_containers(admin_api: Any, test_image: str) -> Iterator[Containers]:
    """For containers shared by a module (removed by the module, or at the session's end)."""
    containers = Containers(admin_api, test_image)
    yield containers
    containers.remove_all()


@pytest.fixture
def containers(admin_api: Any, test_image: str) -> Iterator[Containers]:
    """For containers of one test, removed after it."""
    made = Containers(admin_api, test_image)
    yield made
    made.remove_all()


@pytest.fixture(scope="session", autouse=True)
def no_leaked_containers() -> Iterator[None]:
    """Fail the session when a container of this session outlives its tests.

    Needs no engine itself (tests here that need none still run without one):
    with no engine answering there is nothing to check.
    """
    yield
    try:
        api = admin_client(engine_url(), timeout=60)  # asks the engine its API version
    except Exception:
        return
    try:
        if wait_until(lambda: not leftover_containers(api), timeout=LEAK_GRACE, interval=0.2):
            return
        leaked = leftover_containers(api)
        for item in leaked:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(item["Id"], force=True, v=True)
        names = [f"{c['Id'][:12]} {c.get('Labels')}" for c in leaked]
        pytest.fail(f"containers left behind: {names}", pytrace=False)
    finally:
        api.close()
