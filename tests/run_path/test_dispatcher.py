"""Admission of runs: concurrency limit, queue, overflow skip, no-overlap, shutdown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ofelia_hookspecs import hookimpl

from ofelia_core.execution.dispatcher import Dispatcher
from ofelia_core.execution.executor import RunExecutor
from ofelia_core.runs import RunState, Trigger

from .helpers import SteeredRunner, baseline_drivers, make_job, steered_hooks


@pytest.fixture
def runner() -> Iterator[SteeredRunner]:
    steered = SteeredRunner()
    yield steered
    steered.release.set()


def dispatcher_for(runner: SteeredRunner, **options: object) -> tuple[Dispatcher, object]:
    hooks = steered_hooks(runner)
    executor = RunExecutor(hooks, drivers=baseline_drivers(hooks), history=None)
    return Dispatcher(executor, **options), hooks  # type: ignore[arg-type]


def test_runs_execute_and_capture_output(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner)
    runner.release.set()
    run = dispatcher.submit(make_job(hooks, "a"), Trigger.MANUAL)  # type: ignore[arg-type]
    assert dispatcher.wait_idle(10)
    assert run.state == RunState.SUCCESS
    assert run.stdout == b"a\n"
    assert run.exit_code == 0
    assert len(run.id) == 12 and int(run.id, 16) >= 0


def test_failed_exit_code_is_recorded(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner)
    runner.exit_code = 3
    runner.release.set()
    run = dispatcher.submit(make_job(hooks, "a"))  # type: ignore[arg-type]
    assert dispatcher.wait_idle(10)
    assert (run.state, run.exit_code, run.error) == (RunState.FAILED, 3, "exit code 3")


def test_limit_queues_excess_runs_in_order(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=2, queue_size=5)
    runs = [dispatcher.submit(make_job(hooks, f"j{i}")) for i in range(5)]  # type: ignore[arg-type]
    assert runner.wait_started(2)
    assert len(dispatcher.running()) == 2
    assert dispatcher.queued() == 3
    runner.release.set()
    assert dispatcher.wait_idle(10)
    assert all(r.state == RunState.SUCCESS for r in runs)


def test_full_queue_skips_and_records_why(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=1, queue_size=1)
    first = dispatcher.submit(make_job(hooks, "a"))  # type: ignore[arg-type]
    assert runner.wait_started(1)
    queued = dispatcher.submit(make_job(hooks, "b"))  # type: ignore[arg-type]
    skipped = dispatcher.submit(make_job(hooks, "c"))  # type: ignore[arg-type]
    assert skipped.state == RunState.SKIPPED
    assert "queue is full" in (skipped.error or "")
    runner.release.set()
    assert dispatcher.wait_idle(10)
    assert first.state == queued.state == RunState.SUCCESS


def test_overflow_skip_never_queues(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=1, overflow="skip")
    dispatcher.submit(make_job(hooks, "a"))  # type: ignore[arg-type]
    assert runner.wait_started(1)
    skipped = dispatcher.submit(make_job(hooks, "b"))  # type: ignore[arg-type]
    assert skipped.state == RunState.SKIPPED
    assert "max-concurrent-runs (1) reached" in (skipped.error or "")
    assert dispatcher.queued() == 0


def test_no_overlap_skips_while_the_previous_run_runs(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner)
    job = make_job(hooks, "a", no_overlap="true")  # type: ignore[arg-type]
    first = dispatcher.submit(job)
    assert runner.wait_started(1)
    second = dispatcher.submit(job)
    assert second.state == RunState.SKIPPED
    assert "no-overlap" in (second.error or "")
    runner.release.set()
    assert dispatcher.wait_idle(10)
    third = dispatcher.submit(job)
    assert dispatcher.wait_idle(10)
    assert first.state == third.state == RunState.SUCCESS


def test_overlap_is_allowed_by_default(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner)
    job = make_job(hooks, "a")  # type: ignore[arg-type]
    dispatcher.submit(job)
    dispatcher.submit(job)
    assert runner.wait_started(2)


def test_shutdown_cancels_queued_and_then_running_runs(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=1)
    running = dispatcher.submit(make_job(hooks, "a"))  # type: ignore[arg-type]
    assert runner.wait_started(1)
    queued = dispatcher.submit(make_job(hooks, "b"))  # type: ignore[arg-type]
    cancelled = dispatcher.shutdown(timeout=0.2)
    assert {r.id for r in cancelled} == {running.id, queued.id}
    assert running.state == queued.state == RunState.CANCELLED
    assert "shut down before the run started" in (queued.error or "")
    late = dispatcher.submit(make_job(hooks, "c"))  # type: ignore[arg-type]
    assert late.state == RunState.CANCELLED


def test_shutdown_lets_running_runs_finish_within_the_timeout(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner)
    run = dispatcher.submit(make_job(hooks, "a"))  # type: ignore[arg-type]
    assert runner.wait_started(1)
    runner.release.set()
    assert dispatcher.shutdown(timeout=10) == []
    assert run.state == RunState.SUCCESS


def test_enqueue_many_admits_a_burst_and_records_the_refused(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=2, queue_size=3)
    jobs = [make_job(hooks, f"b{i}") for i in range(6)]  # type: ignore[arg-type]
    skipped: list[str] = []
    hooks.pm.register(type("SkipObserver", (), {  # type: ignore[attr-defined]
        "ofelia_observe_run_end": hookimpl(lambda self, job, run: skipped.append(f"{job.name} {run.state}"))})())
    dispatcher.enqueue_many([(job, 100.0 + i, Trigger.SCHEDULE) for i, job in enumerate(jobs)])
    # Two workers start; three runs wait; the sixth finds the queue full.
    assert skipped == ["b5 skipped"]
    assert runner.wait_started(2)
    runner.release.set()
    assert dispatcher.wait_idle(10)
    assert len(runner.started) == 5
    assert sorted(skipped) == sorted(["b5 skipped"] + [f"b{i} success" for i in range(5)])
