"""The policy engine and the dispatcher's retry hold, with the test-steered job type."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from run_path.helpers import SteeredRunner, baseline_drivers, make_job, steered_hooks

from ofelia_core.execution.dispatcher import Dispatcher, PreparedFires
from ofelia_core.execution.executor import RunExecutor
from ofelia_core.execution.policies import PolicyEngine, retry_delay
from ofelia_core.runs import Run, RunState, Trigger


@pytest.fixture
def runner() -> Iterator[SteeredRunner]:
    steered = SteeredRunner()
    yield steered
    steered.release.set()


def build(runner: SteeredRunner) -> tuple[Dispatcher, PolicyEngine, object]:
    hooks = steered_hooks(runner)
    executor = RunExecutor(hooks, drivers=baseline_drivers(hooks), history=None)
    dispatcher = Dispatcher(executor)
    return dispatcher, PolicyEngine(dispatcher), hooks


def test_only_jobs_with_a_policy_reach_the_engine(runner: SteeredRunner) -> None:
    dispatcher, engine, hooks = build(runner)
    jobs = {
        "plain": make_job(hooks, "plain"),  # type: ignore[arg-type]
        "retried": make_job(hooks, "retried", max_retries="2"),  # type: ignore[arg-type]
        "first": make_job(hooks, "first", on_success="then"),  # type: ignore[arg-type]
        "then": make_job(hooks, "then", depends_on="dep"),  # type: ignore[arg-type]
        "dep": make_job(hooks, "dep"),  # type: ignore[arg-type]
    }
    engine.set_jobs(jobs)
    assert dispatcher.executor.policy is engine
    assert dispatcher.executor.policy_names == {"retried", "first", "then", "dep"}
    engine.set_jobs({"plain": jobs["plain"]})
    assert dispatcher.executor.policy_names == frozenset()


def test_a_batch_without_depends_on_goes_to_the_dispatcher_untouched(runner: SteeredRunner) -> None:
    dispatcher, engine, hooks = build(runner)
    job = make_job(hooks, "a", max_retries="1")  # type: ignore[arg-type]
    engine.set_jobs({"a": job})
    handed: list[object] = []
    dispatcher.enqueue_many = handed.append  # type: ignore[method-assign]
    prepared = dispatcher.prepare_many([(job, 100.0, Trigger.SCHEDULE)])
    engine.on_due_many(prepared)
    assert handed == [prepared] and handed[0] is prepared  # the prepared items, not rebuilt

    gated = make_job(hooks, "g", depends_on="a")  # type: ignore[arg-type]
    engine.set_jobs({"a": job, "g": gated})
    engine.on_due_many(dispatcher.prepare_many([(job, 200.0, Trigger.SCHEDULE), (gated, 200.0, Trigger.SCHEDULE)]))
    [batch] = handed[1:]
    assert isinstance(batch, PreparedFires) and [fire[0].name for fire in batch] == ["a"]  # g waits for a


def test_a_held_slot_keeps_no_overlap_runs_out_until_the_retry_runs(runner: SteeredRunner) -> None:
    dispatcher, _, hooks = build(runner)
    job = make_job(hooks, "solo", no_overlap="true")  # type: ignore[arg-type]
    assert dispatcher.hold(job)
    refused = dispatcher.submit(job)
    assert (refused.state, refused.error) == (RunState.SKIPPED, "no-overlap: the previous run is still running")
    retry = Run(job.name, job.type, trigger=Trigger.RETRY, attempt=2)
    assert dispatcher.submit_run(job, retry, held=True) is retry
    assert runner.wait_started(1)
    assert dispatcher.submit(job).state == RunState.SKIPPED  # the retry runs: still one slot
    runner.release.set()
    assert dispatcher.wait_idle(10)
    assert retry.state == RunState.SUCCESS
    assert dispatcher.submit(job).state != RunState.SKIPPED  # the slot was given back once
    assert dispatcher.wait_idle(10)


def test_a_released_hold_frees_the_slot(runner: SteeredRunner) -> None:
    dispatcher, _, hooks = build(runner)
    job = make_job(hooks, "solo", no_overlap="true")  # type: ignore[arg-type]
    plain = make_job(hooks, "plain")  # type: ignore[arg-type]
    assert not dispatcher.hold(plain)  # nothing to hold without no-overlap
    assert dispatcher.hold(job)
    dispatcher.release_hold(job)
    runner.release.set()
    assert dispatcher.submit(job).state != RunState.SKIPPED
    assert dispatcher.wait_idle(10)


def test_backoff_doubles_from_retry_delay_up_to_the_cap() -> None:
    assert [retry_delay(10, 300, True, n) for n in (1, 2, 3, 4, 5, 6)] == [10, 20, 40, 80, 160, 300]
    assert [retry_delay(10, 300, False, n) for n in (1, 2, 3)] == [10, 10, 10]
    assert retry_delay(10, 0, True, 8) == 1280  # 0: no cap
