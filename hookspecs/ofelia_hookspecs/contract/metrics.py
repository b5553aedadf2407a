"""Contract tests for a :class:`~ofelia_hookspecs.protocols.MetricsRecorder` driver.

Subclass :class:`MetricsRecorderContract` in a test module and provide the
fixture ``make_metrics_recorder``: a callable ``(settings: dict) ->
MetricsRecorder`` that builds the driver the way its factory hook does.
Pass settings that keep the driver from starting anything the test
environment lacks (an HTTP port, for example) through
:attr:`MetricsRecorderContract.base_settings`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

try:
    import pytest
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the ofelia contract test kit needs pytest: pip install 'ofelia-hookspecs[contract]'"
    ) from exc

from ..protocols import MetricsRecorder

MakeMetricsRecorder = Callable[[dict[str, Any]], MetricsRecorder]
Build = Callable[..., MetricsRecorder]

RUN_STATES = ("running", "success", "failed", "skipped", "missed", "timed_out", "cancelled")


class MetricsRecorderContract:
    """What the core relies on from every metrics recorder: it never raises on
    the documented calls and always exports text."""

    #: Settings every recorder of the kit is built with.
    base_settings: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def build_metrics_recorder(self, make_metrics_recorder: MakeMetricsRecorder) -> Iterator[Build]:
        """``build(settings=None)``: a recorder, closed after the test."""
        built: list[MetricsRecorder] = []

        def build(settings: dict[str, Any] | None = None) -> MetricsRecorder:
            recorder = make_metrics_recorder({**self.base_settings, **(settings or {})})
            built.append(recorder)
            return recorder

        yield build
        for recorder in built:
            recorder.close()

    def _feed(self, recorder: MetricsRecorder) -> None:
        recorder.observe_operation("docker-client", "exec_create", 0.0123, None)
        recorder.observe_operation("docker-client", "exec_start", 0.5, "EngineUnavailable")
        recorder.observe_operation("docker-client", "exec_start.stream", 12.0, None)
        recorder.observe_operation("token-manager", "validate", 1e-6, None)
        recorder.observe_operation("buffer-pool", "get", 0.0, None)
        for state in RUN_STATES:
            recorder.record_run("backup", state, 1.5)
        recorder.record_run("job with spaces & \"quotes\"", "success", 0.0)
        recorder.set_gauge("concurrent_jobs", 3)
        recorder.set_gauge("concurrent_jobs", 2.5, None)
        recorder.set_gauge("buffer_pool_returned_bytes", 1024)
        recorder.set_gauge("queued_runs", 1, {"job": "backup", "stream": "stdout"})
        recorder.set_gauge("queued_runs", 0, {"job": "report", "stream": "stderr"})

    def test_satisfies_protocol(self, build_metrics_recorder: Build) -> None:
        assert isinstance(build_metrics_recorder(), MetricsRecorder)

    def test_documented_calls_do_not_raise(self, build_metrics_recorder: Build) -> None:
        self._feed(build_metrics_recorder())

    @pytest.mark.parametrize("fed", [False, True], ids=["empty", "fed"])
    def test_export_returns_text(self, build_metrics_recorder: Build, fed: bool) -> None:
        recorder = build_metrics_recorder()
        if fed:
            self._feed(recorder)
        prometheus = recorder.export("prometheus")
        assert isinstance(prometheus, str)
        exported = recorder.export("json")
        assert isinstance(exported, str)
        if exported:
            json.loads(exported)

    def test_stats(self, build_metrics_recorder: Build) -> None:
        recorder = build_metrics_recorder()
        assert isinstance(recorder.stats(), dict)
        self._feed(recorder)
        assert isinstance(recorder.stats(), dict)

    def test_unknown_settings_are_ignored(self, build_metrics_recorder: Build) -> None:
        # Another driver's keys stay in the section after a rollback.
        recorder = build_metrics_recorder({"some-other-drivers-key": "value"})
        self._feed(recorder)

    def test_concurrent_use(self, build_metrics_recorder: Build) -> None:
        recorder = build_metrics_recorder()
        threads, per_thread = 8, 200
        errors: list[BaseException] = []
        start = threading.Barrier(threads)

        def work(worker: int) -> None:
            try:
                start.wait()
                for index in range(per_thread):
                    recorder.observe_operation("token-manager", "validate", index * 1e-6, None)
                    recorder.record_run(f"job{worker}", "success", 0.1)
                    recorder.set_gauge("concurrent_jobs", worker)
                    if index % 50 == 0:
                        recorder.export("prometheus")
                        recorder.export("json")
                        recorder.stats()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(worker,)) for worker in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert not errors, errors[0]

    def test_close_twice(self, build_metrics_recorder: Build) -> None:
        recorder = build_metrics_recorder()
        recorder.close()
        recorder.close()


__all__ = ["MetricsRecorderContract"]
