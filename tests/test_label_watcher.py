"""The label watcher's policies with a scripted Docker client: start-up retry, a clear
error, reconnecting the events stream with ``since=``, reconciling, keeping the
labels while the engine is down, stopping a blocked stream. The real engine is
exercised by tests/docker/test_labels_live.py."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from ofelia_hookspecs.errors import DockerError, EngineUnavailable
from polling import wait_for

from ofelia_core.labels.parse import LabelConfig, engine_filters, parse_containers
from ofelia_core.labels.watch import LabelSourceError, LabelWatcher

_END = object()


class FakeStream:
    """Blocks in ``next`` like the engine's stream; ``close`` from another thread ends it."""

    def __init__(self) -> None:
        self.items: queue.Queue[Any] = queue.Queue()
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        item = self.items.get()
        if item is _END or self.closed:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return dict(item)

    def close(self) -> None:
        self.closed = True
        self.items.put(_END)


class FakeClient:
    """``container_list`` returns ``self.records`` unless ``self.down``; ``events`` hands out FakeStreams."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.down = False
        self.list_calls = 0
        self.list_failures_left = 0
        self.events_calls: list[dict[str, Any]] = []
        self.streams: queue.Queue[FakeStream] = queue.Queue()

    def container_list(
        self, *, filters: Mapping[str, Sequence[str]] | None = None, all: bool = False
    ) -> list[dict[str, Any]]:
        self.list_calls += 1
        if self.down or self.list_failures_left:
            self.list_failures_left = max(0, self.list_failures_left - 1)
            raise EngineUnavailable("connection refused", operation="container_list")
        return [dict(r) for r in self.records]

    def events(
        self, *, since: float | None = None, filters: Mapping[str, Sequence[str]] | None = None
    ) -> Iterator[dict[str, Any]]:
        self.events_calls.append({"since": since, "filters": filters})
        if self.down:
            raise EngineUnavailable("connection refused", operation="events")
        stream = FakeStream()
        self.streams.put(stream)
        return stream


def container(name: str, job: str = "tick") -> dict[str, Any]:
    return {"Id": name * 4, "Names": [f"/{name}"], "Created": 1,
            "Labels": {"ofelia.enabled": "true", f"ofelia.job-exec.{job}.schedule": "@every 1s",
                       f"ofelia.job-exec.{job}.command": "echo hi"}}




class Recorder:
    def __init__(self) -> None:
        self.calls: list[LabelConfig] = []

    def __call__(self, labels: LabelConfig) -> None:
        self.calls.append(labels)

    @property
    def jobs(self) -> list[list[str]]:
        return [sorted(c.jobs) for c in self.calls]


def make(client: FakeClient, recorder: Recorder, **kwargs: Any) -> LabelWatcher:
    options: dict[str, Any] = {"poll_interval": 0, "startup_retries": 2, "startup_interval": 0.01,
                               "backoff": (0.01, 0.05), "debounce": 0.01}
    options.update(kwargs)
    return LabelWatcher(client, lambda records: parse_containers(records), recorder,  # type: ignore[arg-type]
                        filters=engine_filters(["team=ops"]), **options)


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


def test_start_up_retries_until_the_engine_answers(client: FakeClient) -> None:
    client.records = [container("db")]
    client.list_failures_left = 2
    watcher = make(client, Recorder())
    labels = watcher.load_initial()
    assert list(labels.jobs) == ["tick"] and client.list_calls == 3


def test_start_up_gives_a_clear_error_after_the_retries(client: FakeClient) -> None:
    client.down = True
    watcher = make(client, Recorder(), startup_retries=3)
    expected = r"did not answer after 4 attempt\(s\) 0.01s apart: .*connection refused"
    with pytest.raises(LabelSourceError, match=expected):
        watcher.load_initial()
    assert client.list_calls == 4


def test_a_request_error_is_not_retried(client: FakeClient) -> None:
    def refuse(**_: Any) -> list[dict[str, Any]]:
        client.list_calls += 1
        raise DockerError("invalid filter 'bogus'", operation="container_list", status=400)

    client.container_list = refuse  # type: ignore[method-assign]
    with pytest.raises(LabelSourceError, match="invalid filter"):
        make(client, Recorder()).load_initial()
    assert client.list_calls == 1


def test_a_stop_during_the_start_up_wait_ends_it(client: FakeClient) -> None:
    client.down = True
    stop = threading.Event()
    stop.set()
    with pytest.raises(LabelSourceError, match="stopped"):
        make(client, Recorder(), startup_interval=30).load_initial(stop)


def test_events_mark_the_set_dirty_and_changes_are_handed_over_once(client: FakeClient) -> None:
    recorder = Recorder()
    watcher = make(client, recorder)
    watcher.load_initial()
    watcher.start()
    try:
        stream = client.streams.get(timeout=5)
        assert client.events_calls[0]["filters"] == {
            "type": ["container"],
            "event": ["create", "start", "die", "destroy", "rename", "update", "pause", "unpause"],
            "label": ["ofelia.enabled=true", "team=ops"],
        }
        client.records = [container("db")]
        stream.items.put({"Type": "container", "Action": "start", "timeNano": 1_700_000_000_123_456_789})
        assert wait_for(lambda: recorder.jobs == [["tick"]])
        # Events that change nothing are not handed over.
        stream.items.put({"Type": "container", "Action": "pause", "timeNano": 1_700_000_001_000_000_000})
        assert wait_for(lambda: watcher.counts["events"] == 2)
        time.sleep(0.1)
        assert recorder.jobs == [["tick"]]
        client.records = []
        stream.items.put({"Type": "container", "Action": "die", "timeNano": 1_700_000_002_000_000_000})
        assert wait_for(lambda: recorder.jobs == [["tick"], []])
    finally:
        watcher.stop()


def test_the_stream_reconnects_with_since_and_reconciles(client: FakeClient) -> None:
    recorder = Recorder()
    watcher = make(client, recorder)
    watcher.load_initial()
    watcher.start()
    try:
        first = client.streams.get(timeout=5)
        first.items.put({"Type": "container", "Action": "create", "timeNano": 1_700_000_000_500_000_000})
        assert wait_for(lambda: watcher.counts["events"] == 1)
        # The engine restarts: the stream ends, the engine refuses for a while, then comes back.
        client.down = True
        first.items.put(_END)
        assert wait_for(lambda: len(client.events_calls) >= 3)
        client.records = [container("db")]
        client.down = False
        second = client.streams.get(timeout=5)
        assert client.events_calls[-1]["since"] == pytest.approx(1_700_000_000.5)
        # Reconnecting alone reconciles: events lost in the restart are not replayed.
        assert wait_for(lambda: recorder.jobs == [["tick"]])
        assert second is not first
    finally:
        watcher.stop()


def test_labels_stay_while_the_engine_is_down(client: FakeClient) -> None:
    client.records = [container("db")]
    recorder = Recorder()
    watcher = make(client, recorder)
    watcher.load_initial()
    client.down = True
    assert watcher.refresh() is False
    assert recorder.calls == [] and list(watcher.current.jobs) == ["tick"]  # type: ignore[union-attr]
    client.down = False
    client.records = [container("db"), container("web", job="tock")]
    assert watcher.refresh() is True
    assert recorder.jobs == [["tick", "tock"]]


def test_the_periodic_reconcile_catches_what_events_missed(client: FakeClient) -> None:
    recorder = Recorder()
    watcher = make(client, recorder, poll_interval=0.05)
    watcher.load_initial()
    watcher.start()
    try:
        client.streams.get(timeout=5)
        client.records = [container("db")]  # no event at all
        assert wait_for(lambda: recorder.jobs == [["tick"]])
    finally:
        watcher.stop()


def test_a_failing_callback_does_not_end_the_watcher(client: FakeClient) -> None:
    calls: list[int] = []

    def explode(_labels: LabelConfig) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    watcher = make(client, Recorder())
    watcher.on_change = explode
    watcher.load_initial()
    client.records = [container("db")]
    assert watcher.refresh() is True
    client.records = []
    assert watcher.refresh() is True
    assert len(calls) == 2


def test_stop_closes_a_blocked_stream_promptly(client: FakeClient) -> None:
    watcher = make(client, Recorder(), poll_interval=3600)
    watcher.load_initial()
    watcher.start()
    stream = client.streams.get(timeout=5)
    watcher.stop(timeout=30)  # joins both threads: a stream that stayed blocked would keep one alive
    assert stream.closed
    assert not any(thread.is_alive() for thread in watcher._threads)
