"""The pooled Docker client (plugins/docker-pooled) on the real engine: connection reuse,
separate pools for streams and control calls, the request limit, timeouts that never
cut a stream, the circuit breaker against a socket that really is gone, TCP and TLS.

The contract suite (tests/contract) already runs every Protocol operation on this driver;
these tests cover what only the pooled driver promises."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import JOB_PREFIX, Containers, JobRunner, make_job
from ofelia_hookspecs.contract.clock import FakeClock
from ofelia_hookspecs.errors import DockerTimeout, EngineUnavailable, NotFound
from polling import wait_for
from tls_relay import Relay, make_certificates

from ofelia_core.drivers.loading import default_context, start_drivers
from ofelia_core.drivers.selection import choose_drivers
from ofelia_core.plugins import build_plugin_manager

pooled = pytest.importorskip("ofelia_docker_pooled.client", reason="plugins/docker-pooled is not installed")
from ofelia_docker_pooled.breaker import CLOSED, OPEN, CircuitOpen  # noqa: E402
from ofelia_docker_pooled.limiter import Overloaded  # noqa: E402
from ofelia_docker_pooled.settings import parse_settings  # noqa: E402

pytestmark = pytest.mark.docker

# A process that ignores SIGTERM: `docker stop` then takes its full timeout.
STUBBORN = ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]


def client(url: str, env: dict[str, str] | None = None, clock: Any = time.monotonic, **settings: Any) -> Any:
    values = {key.replace("_", "-"): value for key, value in settings.items()}
    return pooled.PooledDockerClient(parse_settings({"base-url": url, **values}, env or {}), clock=clock)


def exec_output(docker: Any, container: str, cmd: list[str]) -> tuple[int, bytes]:
    exec_id = docker.exec_create(container, cmd)
    data = b"".join(chunk for _, chunk in docker.exec_start(exec_id))
    return int(docker.exec_inspect(exec_id)["ExitCode"]), data


@pytest.fixture(scope="module")
def sleeper(session_containers: Containers) -> Iterator[str]:
    cid = session_containers.create(["sleep", "3600"], name=f"{JOB_PREFIX}pooled-target")
    yield cid
    session_containers.remove(cid)


def test_control_calls_reuse_one_kept_alive_connection(docker_engine_url: str) -> None:
    docker = client(docker_engine_url)
    for _ in range(20):
        docker.ping()
    docker.version()
    pool = docker.stats()["pools"]["control"]
    assert pool["created"] == 1
    assert pool["reused"] == 21
    assert (pool["in_use"], pool["idle"]) == (0, 1)
    docker.close()
    assert docker.stats()["pools"]["control"]["idle"] == 0


def test_connections_idle_past_the_timeout_are_closed_not_reused(docker_engine_url: str) -> None:
    clock = FakeClock()
    docker = client(docker_engine_url, clock=clock, idle_conn_timeout="90s")
    docker.ping()
    clock.advance(89)
    docker.ping()
    clock.advance(90)
    docker.ping()
    pool = docker.stats()["pools"]["control"]
    assert (pool["created"], pool["reused"], pool["closed_idle"]) == (2, 1, 1)
    docker.close()


def test_streams_never_hold_request_slots_or_starve_control_calls(docker_engine_url: str, sleeper: str) -> None:
    # Two request slots and two control connections, six exec streams open at once.
    docker = client(docker_engine_url, max_concurrent_requests=2, max_conns_per_host=2)
    streams = []
    for _ in range(6):
        exec_id = docker.exec_create(sleeper, ["sh", "-c", "echo started; sleep 3; echo done"])
        stream = docker.exec_start(exec_id)
        assert next(stream) == ("stdout", b"started\n")
        streams.append((exec_id, stream))
    stats = docker.stats()
    assert stats["pools"]["stream"]["in_use"] == 6
    assert stats["requests"]["in_flight"] == 0
    for _ in range(5):
        assert docker.container_inspect(sleeper)["State"]["Running"] is True
    for exec_id, stream in streams:
        assert b"".join(chunk for _, chunk in stream) == b"done\n"
        assert docker.exec_inspect(exec_id)["ExitCode"] == 0
    assert docker.stats()["pools"]["stream"]["in_use"] == 0
    docker.close()


def test_past_the_limit_callers_wait_then_fail_clearly(
    docker_engine_url: str, containers: Containers
) -> None:
    stubborn = containers.create(STUBBORN)
    docker = client(docker_engine_url, max_concurrent_requests=1, request_queue_timeout="300ms",
                    breaker_failure_threshold=1)
    # container_stop holds the only slot for the 2 s the engine waits before SIGKILL.
    stopper = threading.Thread(target=docker.container_stop, args=(stubborn,), kwargs={"timeout": 2})
    stopper.start()
    assert wait_for(lambda: docker.stats()["requests"]["in_flight"] == 1), "the stop never took the slot"
    started = time.monotonic()
    with pytest.raises(Overloaded, match="max-concurrent-requests") as caught:
        docker.ping()
    assert time.monotonic() - started >= 0.3
    assert caught.value.engine_failure is False
    stopper.join(30)
    # Busy is not down: the breaker (threshold 1) stayed closed, and the next call goes through.
    assert docker.breaker.state == CLOSED
    docker.ping()
    requests = docker.stats()["requests"]
    assert (requests["timeouts"], requests["peak"], requests["in_flight"]) == (1, 1, 0)
    docker.close()


def test_a_silent_stream_gives_its_slot_back_when_its_hold_runs_out(docker_engine_url: str, sleeper: str) -> None:
    docker = client(docker_engine_url, max_concurrent_requests=1, stream_slot_hold="300ms",
                    request_queue_timeout="20s")
    exec_id = docker.exec_create(sleeper, ["sh", "-c", "sleep 2; echo late"])
    stream = docker.exec_start(exec_id)
    # Started, silent: the exec holds the only slot until its first bytes or 300 ms.
    assert docker.stats()["requests"]["streams_holding"] == 1
    docker.ping()  # waits for the hold to run out, then goes through
    requests = docker.stats()["requests"]
    assert (requests["expired_stream_holds"], requests["timeouts"], requests["streams_holding"]) == (1, 0, 0)
    assert b"".join(chunk for _, chunk in stream) == b"late\n"
    assert docker.stats()["requests"]["in_flight"] == 0
    docker.close()


def test_request_timeouts_never_cut_a_stream_or_a_long_stop(
    docker_engine_url: str, sleeper: str, containers: Containers
) -> None:
    docker = client(docker_engine_url, timeout="500ms")
    # Silent for 2 s, four times the read timeout of control calls.
    assert exec_output(docker, sleeper, ["sh", "-c", "sleep 2; echo late"]) == (0, b"late\n")
    stubborn = containers.create(STUBBORN)
    docker.container_stop(stubborn, timeout=2)
    assert docker.container_inspect(stubborn)["State"]["ExitCode"] == 137
    docker.close()


def test_what_the_engine_answers_never_counts_as_an_engine_failure(
    docker_engine_url: str, sleeper: str
) -> None:
    docker = client(docker_engine_url, breaker_failure_threshold=1)
    with pytest.raises(NotFound):
        docker.container_inspect(f"{JOB_PREFIX}no-such-container")
    with pytest.raises(DockerTimeout):
        docker.container_wait(sleeper, timeout=0.3)  # the container runs on: a job's wait, not the engine
    assert docker.breaker.state == CLOSED
    docker.ping()
    docker.close()


def test_the_breaker_opens_on_a_vanished_engine_and_closes_when_it_is_back(
    docker_engine_url: str, tmp_path: Path
) -> None:
    # The driver's socket path is a link we remove and restore: the engine is really unreachable.
    engine_socket = docker_engine_url.removeprefix("unix://")
    link = tmp_path / "engine.sock"
    clock = FakeClock()
    docker = client(f"unix://{link}", clock=clock, breaker_failure_threshold=3, breaker_open_timeout="30s")
    for _ in range(3):
        with pytest.raises(EngineUnavailable) as caught:
            docker.ping()
        assert not isinstance(caught.value, CircuitOpen)
    assert docker.breaker.state == OPEN
    created = docker.stats()["pools"]["control"]["created"]
    with pytest.raises(CircuitOpen, match="Docker engine unavailable, circuit open since") as refused:
        docker.exec_create("anything", ["true"])
    assert refused.value.operation == "exec_create"
    assert docker.stats()["pools"]["control"]["created"] == created, "an open circuit must not connect"

    link.symlink_to(engine_socket)
    with pytest.raises(CircuitOpen):
        docker.ping()  # still open: 30 s have not passed
    clock.advance(30)
    docker.ping()  # the trial call reaches the engine
    stats = docker.stats()["breaker"]
    assert stats["state"] == CLOSED
    assert [t["after"] for t in stats["transitions"]] == ["open", "half-open", "closed"]
    docker.close()


def test_tcp_and_tls_from_docker_tls_verify(docker_engine_url: str, sleeper: str, tmp_path: Path) -> None:
    engine_socket = docker_engine_url.removeprefix("unix://")
    make_certificates(tmp_path)
    plain, secure = Relay(engine_socket), Relay(engine_socket, certs=tmp_path)
    try:
        docker = client(f"tcp://127.0.0.1:{plain.port}")
        assert docker.stats()["base_url"] == f"http://127.0.0.1:{plain.port}"
        assert exec_output(docker, sleeper, ["echo", "over tcp"]) == (0, b"over tcp\n")
        docker.close()

        env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path),
               "DOCKER_HOST": f"tcp://127.0.0.1:{secure.port}"}
        docker = pooled.PooledDockerClient(parse_settings({}, env), clock=time.monotonic)
        assert docker.stats()["base_url"] == f"https://127.0.0.1:{secure.port}"
        assert exec_output(docker, sleeper, ["echo", "over tls"]) == (0, b"over tls\n")
        for _ in range(5):
            docker.ping()
        assert docker.stats()["pools"]["control"]["created"] == 1
        docker.close()

        # An engine whose certificate another CA signed is refused, as an unreachable engine.
        other = tmp_path / "other"
        other.mkdir()
        make_certificates(other)
        docker = pooled.PooledDockerClient(parse_settings({}, {**env, "DOCKER_CERT_PATH": str(other)}),
                                           clock=time.monotonic)
        with pytest.raises(EngineUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            docker.ping()
        assert wait_for(lambda: secure.refused_handshakes >= 1), "the relay saw no refused handshake"
        docker.close()
    finally:
        plain.close()
        secure.close()


@pytest.mark.slow
def test_200_concurrent_job_exec_runs_without_pool_warnings(
    docker_engine_url: str, session_containers: Containers
) -> None:
    from loguru import logger

    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    targets = [session_containers.create(["sleep", "3600"]) for _ in range(4)]
    pm = build_plugin_manager(load_entrypoints=False)
    drivers = start_drivers(pm, choose_drivers(env={"OFELIA_USE_OPTIMIZED_DOCKER_CLIENT": "true"}),
                            {"docker-client": {"base-url": docker_engine_url}}, default_context())
    runner = JobRunner(drivers)
    results: list[tuple[int, bytes] | BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(200)

    def one(index: int) -> None:
        job = make_job("job-exec", f"pooled-200-{index}", container=targets[index % 4], command=f"echo run-{index}")
        barrier.wait()
        try:
            outcome = runner(job)
            result: tuple[int, bytes] | BaseException = (outcome.code, outcome.stdout)
        except BaseException as exc:  # recorded, asserted below
            result = exc
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        stats = drivers.docker_client.stats()["driver"]
    finally:
        drivers.close()
        logger.remove(sink)
        for cid in targets:
            session_containers.remove(cid)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert sorted(results) == sorted((0, f"run-{i}\n".encode()) for i in range(200))
    assert stats["driver"] == "pooled"
    assert stats["breaker"]["state"] == CLOSED
    assert stats["requests"]["timeouts"] == 0
    assert not [w for w in warnings if "pool" in w.lower() or "docker" in w.lower()], warnings[:3]
