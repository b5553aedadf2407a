"""The core's instrumentation layer around drivers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from ofelia_hookspecs.contract.clock import FakeClock
from ofelia_hookspecs.errors import EngineUnavailable, NotFound
from ofelia_hookspecs.protocols import BufferPool, DockerClient, MetricsRecorder, TokenManager

from ofelia_core.baseline.buffers import FreshBufferPool, GrowableBuffer
from ofelia_core.baseline.metrics_noop import NoopMetricsRecorder
from ofelia_core.baseline.tokens import DictTokenManager
from ofelia_core.drivers.instrumentation import (
    RETURNED_BYTES_GAUGE,
    InstrumentedDriver,
    instrument,
    protocol_operations,
)


class RecordingMetrics:
    """Test double for the observer: a MetricsRecorder that keeps every call."""

    def __init__(self) -> None:
        self.operations: list[tuple[str, str, float, str | None]] = []
        self.gauges: list[tuple[str, float, Mapping[str, str] | None]] = []

    def observe_operation(self, concern: str, operation: str, seconds: float, error: str | None) -> None:
        self.operations.append((concern, operation, seconds, error))

    def record_run(self, job_name: str, state: str, seconds: float) -> None:
        pass

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        self.gauges.append((name, value, labels))

    def export(self, fmt: str) -> str:
        return ""

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class FailingMetrics(RecordingMetrics):
    """Test double for a broken observer."""

    def observe_operation(self, concern: str, operation: str, seconds: float, error: str | None) -> None:
        raise RuntimeError("recorder is broken")

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        raise RuntimeError("recorder is broken")


def ticking_clock(step: float = 0.25) -> Callable[[], float]:
    """Each reading is ``step`` later than the one before, so durations are exact."""
    now = [0.0]

    def clock() -> float:
        now[0] += step
        return now[0]

    return clock


class ThirdPartyTokens:
    """A token manager from elsewhere: inherits nothing, has extras of its own."""

    flavour = "third-party"

    def __init__(self) -> None:
        self.fail_with: Exception | None = None

    def issue(self, subject: str, expires_in: float) -> str:
        return f"token-for-{subject}"

    def validate(self, token: str) -> str | None:
        if self.fail_with is not None:
            raise self.fail_with
        return token.removeprefix("token-for-") if token.startswith("token-for-") else None

    def revoke(self, token: str) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        return {"active": 0, "driver": "third-party"}

    def close(self) -> None:
        pass

    def rotate_keys(self) -> str:
        return "rotated"


class StubDockerClient:
    """Driver test double for the DockerClient Protocol: control calls return
    ``None``; each stream operation returns whatever the test put in ``streams``."""

    def __init__(self) -> None:
        self.streams: dict[str, Any] = {}
        self.closed = False
        for name, streams in protocol_operations(DockerClient):
            if not streams:
                setattr(self, name, lambda *args, **kwargs: None)

    def exec_start(self, exec_id: str, *, tty: bool = False) -> Any:
        return self.streams["exec_start"]

    def container_logs(self, container_id: str, *, follow: bool = False) -> Any:
        return self.streams["container_logs"]

    def service_logs(self, service_id: str) -> Any:
        return self.streams["service_logs"]

    def events(self, *, since: float | None = None, filters: Any = None) -> Any:
        if "events" not in self.streams:
            raise EngineUnavailable("engine down", operation="events")
        return self.streams["events"]

    def stats(self) -> dict[str, Any]:
        return {"breaker": "closed"}

    def close(self) -> None:
        self.closed = True


def chunks_then(error: Exception | None, *chunks: tuple[str, bytes]) -> Iterator[tuple[str, bytes]]:
    yield from chunks
    if error is not None:
        raise error


# --- which operations -------------------------------------------------------


def test_operations_come_from_the_protocol() -> None:
    assert protocol_operations(TokenManager) == (("issue", False), ("validate", False), ("revoke", False))
    assert protocol_operations(BufferPool) == (("get", False), ("put", False))
    docker = dict(protocol_operations(DockerClient))
    assert {name for name, streams in docker.items() if streams} == {
        "exec_start",
        "container_logs",
        "service_logs",
        "events",
    }
    assert "ping" in docker and "container_create" in docker
    assert "stats" not in docker and "close" not in docker


# --- reporting ----------------------------------------------------------------


def test_each_call_is_reported_with_its_latency() -> None:
    metrics = RecordingMetrics()
    manager = DictTokenManager(clock=FakeClock())
    proxy = instrument("token-manager", manager, metrics, clock=ticking_clock(0.25))
    token = proxy.issue("alice", 60)
    assert proxy.validate(token) == "alice"
    assert proxy.revoke(token) is True
    assert metrics.operations == [
        ("token-manager", "issue", 0.25, None),
        ("token-manager", "validate", 0.25, None),
        ("token-manager", "revoke", 0.25, None),
    ]


def test_errors_are_counted_by_type_and_reraised_unchanged() -> None:
    metrics = RecordingMetrics()
    driver = ThirdPartyTokens()
    proxy = instrument("token-manager", driver, metrics, clock=ticking_clock())
    original = KeyError("boom")
    driver.fail_with = original
    with pytest.raises(KeyError) as raised:
        proxy.validate("token-for-alice")
    assert raised.value is original
    driver.fail_with = None
    assert proxy.validate("token-for-alice") == "alice"
    assert [(op, error) for _, op, _, error in metrics.operations] == [
        ("validate", "KeyError"),
        ("validate", None),
    ]
    assert proxy.stats()["operations"]["validate"] == {
        "calls": 2,
        "errors": 1,
        "total_seconds": 0.5,
        "max_seconds": 0.25,
    }


def test_stats_shape() -> None:
    manager = DictTokenManager(clock=FakeClock())
    proxy = instrument("token-manager", manager, NoopMetricsRecorder(), clock=ticking_clock(1.0))
    proxy.issue("alice", 60)
    stats = proxy.stats()
    assert stats["driver"] == manager.stats()
    assert stats["observer_errors"] == 0
    assert set(stats["operations"]) == {"issue", "validate", "revoke"}
    assert stats["operations"]["issue"] == {"calls": 1, "errors": 0, "total_seconds": 1.0, "max_seconds": 1.0}
    assert stats["operations"]["validate"]["calls"] == 0


def test_counts_stay_exact_under_threads() -> None:
    manager = DictTokenManager(clock=FakeClock())
    proxy = instrument("token-manager", manager, NoopMetricsRecorder())
    token = proxy.issue("alice", 3600)
    threads, per_thread = 8, 500

    def work() -> None:
        for _ in range(per_thread):
            proxy.validate(token)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert proxy.stats()["operations"]["validate"]["calls"] == threads * per_thread


def test_a_failing_recorder_never_changes_the_outcome() -> None:
    manager = DictTokenManager(clock=FakeClock())
    proxy = instrument("token-manager", manager, FailingMetrics())
    token = proxy.issue("alice", 60)
    assert proxy.validate(token) == "alice"
    assert proxy.stats()["observer_errors"] == 2


def test_a_failing_recorder_does_not_mask_the_drivers_error() -> None:
    driver = ThirdPartyTokens()
    driver.fail_with = NotFound("gone")
    proxy = instrument("token-manager", driver, FailingMetrics())
    with pytest.raises(NotFound):
        proxy.validate("x")


# --- Protocol and pass-through ------------------------------------------------


def test_proxy_satisfies_the_drivers_protocol_only() -> None:
    tokens = instrument("token-manager", DictTokenManager(clock=FakeClock()), NoopMetricsRecorder())
    pool = instrument("buffer-pool", FreshBufferPool(), NoopMetricsRecorder())
    docker = instrument("docker-client", StubDockerClient(), NoopMetricsRecorder())
    assert isinstance(tokens, TokenManager) and not isinstance(tokens, BufferPool)
    assert isinstance(pool, BufferPool) and not isinstance(pool, TokenManager)
    assert isinstance(docker, DockerClient) and not isinstance(docker, TokenManager)


def test_other_attributes_pass_through() -> None:
    driver = ThirdPartyTokens()
    proxy = instrument("token-manager", driver, RecordingMetrics())
    assert isinstance(proxy, InstrumentedDriver)
    assert proxy.__wrapped__ is driver
    assert proxy.flavour == "third-party"
    assert proxy.rotate_keys() == "rotated"  # not a Protocol operation: not measured
    assert "rotate_keys" not in proxy.stats()["operations"]
    with pytest.raises(AttributeError):
        _ = proxy.no_such_attribute


def test_close_reaches_the_driver() -> None:
    driver = StubDockerClient()
    proxy = instrument("docker-client", driver, NoopMetricsRecorder())
    proxy.close()
    assert driver.closed
    assert proxy.stats()["driver"] == {"breaker": "closed"}


def test_a_driver_missing_an_operation_is_refused() -> None:
    class Incomplete:
        def issue(self, subject: str, expires_in: float) -> str:
            return "t"

    with pytest.raises(TypeError, match="validate"):
        instrument("token-manager", Incomplete(), NoopMetricsRecorder())


def test_metrics_and_unknown_concerns_are_not_instrumented() -> None:
    with pytest.raises(ValueError, match="observer"):
        instrument("metrics", NoopMetricsRecorder(), NoopMetricsRecorder())
    with pytest.raises(ValueError, match="unknown concern"):
        instrument("scheduler", object(), NoopMetricsRecorder())


# --- streams ----------------------------------------------------------------


def test_stream_passes_chunks_through_and_reports_its_end() -> None:
    metrics = RecordingMetrics()
    driver = StubDockerClient()
    chunks = [("stdout", b"hello\n"), ("stderr", b"oops\n")]
    driver.streams["exec_start"] = chunks_then(None, *chunks)
    proxy = instrument("docker-client", driver, metrics, clock=ticking_clock(1.0))
    stream = proxy.exec_start("exec-id")
    assert metrics.operations == [("docker-client", "exec_start", 1.0, None)]
    received = list(stream)
    assert received == chunks
    assert all(got is sent for got, sent in zip(received, chunks, strict=True))
    assert metrics.operations[-1][1:] == ("exec_start.stream", 1.0, None)
    operations = proxy.stats()["operations"]
    assert operations["exec_start"]["calls"] == 1
    assert operations["exec_start.stream"] == {
        "calls": 1,
        "errors": 0,
        "total_seconds": 1.0,
        "max_seconds": 1.0,
    }


def test_errors_while_iterating_are_counted() -> None:
    metrics = RecordingMetrics()
    driver = StubDockerClient()
    failure = EngineUnavailable("connection reset", operation="container_logs")
    driver.streams["container_logs"] = chunks_then(failure, ("stdout", b"partial"))
    proxy = instrument("docker-client", driver, metrics)
    stream = proxy.container_logs("c1", follow=True)
    assert next(stream) == ("stdout", b"partial")
    with pytest.raises(EngineUnavailable) as raised:
        next(stream)
    assert raised.value is failure
    operations = proxy.stats()["operations"]
    assert operations["container_logs"]["errors"] == 0
    assert operations["container_logs.stream"]["errors"] == 1
    assert [(op, error) for _, op, _, error in metrics.operations] == [
        ("container_logs", None),
        ("container_logs.stream", "EngineUnavailable"),
    ]


def test_an_error_opening_a_stream_counts_against_the_operation() -> None:
    metrics = RecordingMetrics()
    proxy = instrument("docker-client", StubDockerClient(), metrics)
    with pytest.raises(EngineUnavailable):
        proxy.events()
    assert proxy.stats()["operations"]["events"]["errors"] == 1
    assert [(op, error) for _, op, _, error in metrics.operations] == [("events", "EngineUnavailable")]


class BlockingStream:
    """Driver test double for a long-lived stream: ``next`` blocks until ``close``."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.reading = threading.Event()

    def __iter__(self) -> BlockingStream:
        return self

    def __next__(self) -> dict[str, Any]:
        self.reading.set()
        self.closed.wait()
        raise ConnectionError("socket closed")  # what a closed HTTP stream tends to raise

    def close(self) -> None:
        self.closed.set()


def test_a_stream_can_be_closed_from_another_thread_and_closing_is_not_an_error() -> None:
    metrics = RecordingMetrics()
    driver = StubDockerClient()
    driver.streams["events"] = BlockingStream()
    proxy = instrument("docker-client", driver, metrics)
    stream = proxy.events(filters={"type": ["container"]})
    outcome: list[BaseException] = []

    def consume() -> None:
        try:
            for _ in stream:
                pass
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    assert driver.streams["events"].reading.wait(10)
    stream.close()  # from this thread, while the reader is blocked in next()
    reader.join(10)
    assert not reader.is_alive()
    assert [type(exc) for exc in outcome] == [ConnectionError]
    ended = proxy.stats()["operations"]["events.stream"]
    assert (ended["calls"], ended["errors"]) == (1, 0)
    reported = [(op, error) for _, op, _, error in metrics.operations]
    assert reported == [("events", None), ("events.stream", None)]


def test_stream_attributes_pass_through() -> None:
    driver = StubDockerClient()
    blocking = BlockingStream()
    driver.streams["service_logs"] = blocking
    proxy = instrument("docker-client", driver, NoopMetricsRecorder())
    with proxy.service_logs("svc") as stream:
        assert stream.closed is blocking.closed
    assert blocking.closed.is_set()


# --- buffer pool ----------------------------------------------------------------


def test_buffers_are_the_drivers_own_objects() -> None:
    pool = instrument("buffer-pool", FreshBufferPool(), NoopMetricsRecorder())
    buffer = pool.get("job", "stdout")
    assert type(buffer) is GrowableBuffer


def test_buffer_sizes_are_recorded_at_put() -> None:
    metrics = RecordingMetrics()
    driver = FreshBufferPool()
    pool = instrument("buffer-pool", driver, metrics)
    sizes = (0, 10, 5000)
    for size in sizes:
        buffer = pool.get("job", "stdout")
        buffer.write(b"x" * size)
        pool.put(buffer)
    assert [(name, value) for name, value, _ in metrics.gauges] == [(RETURNED_BYTES_GAUGE, s) for s in sizes]
    stats = pool.stats()
    assert stats["returned_bytes"] == {"count": 3, "total": 5010, "max": 5000}
    assert stats["driver"]["bytes_returned"] == 5010
    assert stats["operations"]["put"]["calls"] == 3


def test_size_is_read_before_the_driver_sees_the_buffer() -> None:
    class ClearingPool(FreshBufferPool):
        """A pool that empties buffers as it takes them back, as a reusing pool does."""

        def put(self, buffer: Any) -> None:
            buffer.__init__(self.max_size)
            super().put(buffer)

    pool = instrument("buffer-pool", ClearingPool(), RecordingMetrics())
    buffer = pool.get("job", "stdout")
    buffer.write(b"abc")
    pool.put(buffer)
    assert pool.stats()["returned_bytes"]["total"] == 3


def test_only_the_buffer_pool_reports_sizes() -> None:
    proxy = instrument("token-manager", DictTokenManager(clock=FakeClock()), NoopMetricsRecorder())
    assert "returned_bytes" not in proxy.stats()


def test_noop_recorder_satisfies_the_protocol() -> None:
    assert isinstance(NoopMetricsRecorder(), MetricsRecorder)
    assert isinstance(RecordingMetrics(), MetricsRecorder)
