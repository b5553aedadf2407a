"""Admission of runs: concurrency limit, queue, overflow skip, no-overlap, shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ofelia_hookspecs import hookimpl
from polling import wait_for

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


# --- bursts: prepared batches, the chain of wake-ups, the worker pool ----------------------


def test_prepared_batch_runs_with_the_records_built_ahead(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=2, queue_size=3)
    jobs = [make_job(hooks, f"p{i}") for i in range(6)]  # type: ignore[arg-type]
    ended: list[tuple[str, str, str]] = []
    hooks.pm.register(type("EndObserver", (), {  # type: ignore[attr-defined]
        "ofelia_observe_run_end": hookimpl(lambda self, job, run: ended.append((job.name, run.id, str(run.state))))})())
    prepared = dispatcher.prepare_many([(job, 100.0 + i, Trigger.SCHEDULE) for i, job in enumerate(jobs)])
    assert [job.name for job, _, _ in prepared] == [f"p{i}" for i in range(6)]
    assert dispatcher.queued() == 0 and ended == []  # nothing admitted before the hand-off
    built = {job.name: run for job, run in zip(jobs, (item.run for item in prepared.items), strict=True)}
    dispatcher.enqueue_many(prepared)
    assert ended == [("p5", built["p5"].id, "skipped")]  # the queue is full: the record built ahead, skipped
    runner.release.set()
    assert dispatcher.wait_idle(10)
    assert sorted(ended) == sorted([("p5", built["p5"].id, "skipped")] +
                                   [(f"p{i}", built[f"p{i}"].id, "success") for i in range(5)])
    assert all(built[f"p{i}"].scheduled_at == 100.0 + i for i in range(6))


def test_prepared_batch_still_applies_no_overlap(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner)
    lone = make_job(hooks, "lone", no_overlap="true")  # type: ignore[arg-type]
    other = make_job(hooks, "other")  # type: ignore[arg-type]
    first = dispatcher.submit(lone)
    assert runner.wait_started(1)
    prepared = dispatcher.prepare_many([(lone, 5.0, Trigger.SCHEDULE), (other, 5.0, Trigger.SCHEDULE)])
    dispatcher.enqueue_many(prepared)
    second = prepared.items[0].run
    assert second.state == RunState.SKIPPED and "no-overlap" in (second.error or "")
    assert runner.wait_started(2)
    runner.release.set()
    assert dispatcher.wait_idle(10)
    assert first.state == prepared.items[1].run.state == RunState.SUCCESS
    third = dispatcher.submit(lone)  # the count went back to zero
    assert dispatcher.wait_idle(10) and third.state == RunState.SUCCESS


def test_prepared_batch_after_shutdown_is_recorded_cancelled(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner)
    prepared = dispatcher.prepare_many([(make_job(hooks, "late"), 5.0, Trigger.SCHEDULE)])  # type: ignore[arg-type]
    dispatcher.shutdown(timeout=1)
    dispatcher.enqueue_many(prepared)
    assert prepared.items[0].run.state == RunState.CANCELLED


def test_burst_of_blocking_runs_fans_out_to_every_worker(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=4)
    jobs = [make_job(hooks, f"f{i}") for i in range(9)]  # type: ignore[arg-type]
    dispatcher.enqueue_many([(job, 1.0, Trigger.SCHEDULE) for job in jobs])
    assert runner.wait_started(4)  # one worker woken by the hand-off, each then wakes the next
    assert len(dispatcher.running()) == 4 and dispatcher.queued() == 5
    assert dispatcher._workers == 4
    runner.release.set()
    assert dispatcher.wait_idle(10)
    assert len(runner.started) == 9


def test_idle_workers_exit_and_new_ones_start_on_demand(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=3, idle_timeout=0.05)
    runner.release.set()
    for name in ("i1", "i2"):
        run = dispatcher.submit(make_job(hooks, name))  # type: ignore[arg-type]
        assert dispatcher.wait_idle(10) and run.state == RunState.SUCCESS
        assert wait_for(lambda: dispatcher._workers == 0)
    assert dispatcher._idle == 0 and dispatcher._coming == 0 and not dispatcher._sleepers


def test_worker_survives_an_executor_that_raises() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.runs: list[str] = []

        def now(self) -> float:
            return 0.0

        def execute(self, job: Any, run: Any, cancel: Any = None) -> Any:
            if job.name == "bad":
                raise RuntimeError("history down")
            self.runs.append(job.name)
            return run

        def record_not_run(self, job: Any, run: Any, state: Any, reason: str) -> Any:
            return run

    executor = Flaky()
    hooks = steered_hooks(SteeredRunner())
    dispatcher = Dispatcher(executor, max_concurrent=1)  # type: ignore[arg-type]
    dispatcher.enqueue_many([(make_job(hooks, name), 1.0, Trigger.SCHEDULE) for name in ("bad", "good")])
    assert dispatcher.wait_idle(10)
    assert executor.runs == ["good"] and dispatcher.running() == []
    dispatcher.submit(make_job(hooks, "again"))
    assert dispatcher.wait_idle(10) and executor.runs == ["good", "again"]


def test_cancel_asks_only_the_named_run(runner: SteeredRunner) -> None:
    dispatcher, hooks = dispatcher_for(runner, max_concurrent=2)
    a = dispatcher.submit(make_job(hooks, "a"))  # type: ignore[arg-type]
    b = dispatcher.submit(make_job(hooks, "b"))  # type: ignore[arg-type]
    assert runner.wait_started(2)
    assert dispatcher.cancel(a.id) and not dispatcher.cancel("000000000000")
    assert wait_for(lambda: a.state == RunState.CANCELLED)
    runner.release.set()
    assert dispatcher.wait_idle(10)
    assert b.state == RunState.SUCCESS
    # A worker's cancel event is reused: cleared for its next run.
    c = dispatcher.submit(make_job(hooks, "c"))  # type: ignore[arg-type]
    assert dispatcher.wait_idle(10) and c.state == RunState.SUCCESS
