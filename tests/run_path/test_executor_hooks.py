"""The run hooks as plugins use them: wrapping a run, observing start and end,
and a failing observer that must not change the run."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import JobTypeSpec, KeySpec

from ofelia_core.execution.executor import RunExecutor
from ofelia_core.runs import Run, RunState

from .helpers import SteeredRunner, baseline_drivers, make_job, steered_hooks


class RecordingPlugin:
    """A plugin that wraps every run and observes its start and end."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl(wrapper=True)
    def ofelia_execute_run(self, job: Any, run: Run) -> Generator[None, int, int]:
        self.events.append(f"before {job.name} {run.state}")
        exit_code = yield
        self.events.append(f"after {job.name} {exit_code}")
        return 0 if exit_code == 7 else exit_code  # a wrapper may change the outcome

    @hookimpl
    def ofelia_observe_run_start(self, job: Any, run: Run) -> None:
        self.events.append(f"start {run.id}")

    @hookimpl
    def ofelia_observe_run_end(self, job: Any, run: Run) -> None:
        self.events.append(f"end {run.id} {run.state} {run.stdout!r}")


class BrokenObserver:
    @hookimpl
    def ofelia_observe_run_end(self, job: Any, run: Run) -> None:
        raise RuntimeError("observer bug")


def test_a_wrapper_sees_the_run_and_may_change_its_exit_code() -> None:
    runner = SteeredRunner(exit_code=7)
    runner.release.set()
    hooks = steered_hooks(runner)
    plugin = RecordingPlugin()
    hooks.pm.register(plugin)
    executor = RunExecutor(hooks, drivers=baseline_drivers(hooks), history=None)
    run = executor.execute(make_job(hooks, "w"), Run("w", "job-steered"))
    assert run.state == RunState.SUCCESS and run.exit_code == 0
    assert plugin.events == [f"start {run.id}", "before w running", "after w 7", f"end {run.id} success b'w\\n'"]


def test_a_failing_observer_neither_fails_the_run_nor_silences_the_others() -> None:
    runner = SteeredRunner()
    runner.release.set()
    hooks = steered_hooks(runner)
    plugin = RecordingPlugin()
    hooks.pm.register(plugin)
    hooks.pm.register(BrokenObserver())  # registered last, so called first
    executor = RunExecutor(hooks, drivers=baseline_drivers(hooks), history=None)
    run = executor.execute(make_job(hooks, "o"), Run("o", "job-steered"))
    assert run.state == RunState.SUCCESS
    assert plugin.events[-1].startswith(f"end {run.id} success")


def test_a_runner_that_raises_fails_the_run_with_the_error_text() -> None:
    def broken(job: Any, run: Run, context: Any) -> int:
        raise KeyError("boom")

    hooks = steered_hooks(broken)
    executor = RunExecutor(hooks, drivers=baseline_drivers(hooks), history=None)
    run = executor.execute(make_job(hooks, "b"), Run("b", "job-steered"))
    assert run.state == RunState.FAILED
    assert run.error == "internal error: KeyError: 'boom'"


class ValidateOnlyJobType:
    """A plugin job type that declares keys but no runner."""

    @hookimpl
    def ofelia_register_job_types(self) -> list[JobTypeSpec]:
        return [JobTypeSpec("job-paper", (KeySpec("command"),), "validated, never run")]


def test_a_job_type_without_a_runner_fails_clearly() -> None:
    hooks = steered_hooks(SteeredRunner())
    hooks.pm.register(ValidateOnlyJobType())
    executor = RunExecutor(hooks, drivers=baseline_drivers(hooks), history=None)
    run = executor.execute(make_job(hooks, "paper", kind="job-paper"), Run("paper", "job-paper"))
    assert run.state == RunState.FAILED
    assert "job type 'job-paper' cannot run jobs in this version" in (run.error or "")
