"""Running one run end to end: record, hooks, the job type's runner, output, history, log lines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.errors import RunCancelled, RunError, RunTimedOut
from ofelia_hookspecs.settings import format_duration
from ofelia_hookspecs.types import RunContext

from ..runs import Run, RunState

if TYPE_CHECKING:
    from ..history import HistoryStore
    from ..jobs import Job
    from ..plugins import OfeliaHooks
    from .policies import PolicyEngine


class CoreExecution:
    """The innermost ``ofelia_execute_run``: calls the job type's runner.

    Registered as a plugin so that other plugins wrap it (``wrapper=True``)
    exactly as they would wrap each other.
    """

    PLUGIN_NAME = "ofelia_core.execution"

    def __init__(self) -> None:
        self.contexts: dict[str, RunContext] = {}

    @hookimpl(trylast=True)
    def ofelia_execute_run(self, job: Job, run: Run) -> int:
        runner = job.spec.runner
        if runner is None:
            raise RunError(f"job type '{job.type}' cannot run jobs in this version of ofelia")
        exit_code: int = runner(job, run, self.contexts[run.id])
        return exit_code


def job_prefix(run: Run) -> str:
    return f'[Job "{run.job_name}" ({run.id})]'


class RunExecutor:
    """Executes runs on the calling thread; thread-safe, shared by every worker."""

    def __init__(
        self,
        hooks: OfeliaHooks,
        *,
        drivers: Any,
        history: HistoryStore | None,
        now: Callable[[], float] = time.time,
    ) -> None:
        from loguru import logger

        self.hooks = hooks
        self.drivers = drivers
        self.history = history
        self.now = now
        self.log = logger
        #: Set by :class:`~.policies.PolicyEngine`: it is called for runs of these jobs only.
        self.policy: PolicyEngine | None = None
        self.policy_names: frozenset[str] = frozenset()
        registered = hooks.pm.get_plugin(CoreExecution.PLUGIN_NAME)
        if isinstance(registered, CoreExecution):
            self.core = registered
        else:
            self.core = CoreExecution()
            hooks.pm.register(self.core, name=CoreExecution.PLUGIN_NAME)

    def execute(self, job: Job, run: Run, cancel: threading.Event | None = None) -> Run:
        """Run ``job`` now as ``run``; returns the run in its final state. Never raises for a job's failure."""
        run.started_at = self.now()
        run.state = RunState.RUNNING
        if self.history is not None:
            self.history.record_start(run)
        command = job.get("command", "")
        self.log.info(f"{job_prefix(run)} Started - {command}" if command else f"{job_prefix(run)} Started")
        self.hooks.observe_run_start(job, run)
        pool = self.drivers.buffer_pool
        stdout, stderr = pool.get(job.name, "stdout"), pool.get(job.name, "stderr")
        self.core.contexts[run.id] = RunContext(
            stdout=stdout, stderr=stderr, max_runtime=job.max_runtime,
            cancel=cancel or threading.Event(), drivers=self.drivers,
        )
        try:
            exit_code = self.hooks.execute_run(job, run)
            run.exit_code = exit_code
            run.state = RunState.SUCCESS if exit_code == 0 else RunState.FAILED
            if exit_code != 0 and not run.error:
                run.error = f"exit code {exit_code}"
        except RunTimedOut as exc:
            run.state, run.error = RunState.TIMED_OUT, str(exc)
        except RunCancelled as exc:
            run.state, run.error = RunState.CANCELLED, str(exc)
        except RunError as exc:
            run.state, run.error = RunState.FAILED, str(exc)
        except Exception as exc:  # a bug in a runner or plugin fails this run, never the daemon
            run.state, run.error = RunState.FAILED, f"internal error: {type(exc).__name__}: {exc}"
            self.log.opt(exception=exc).error(f"{job_prefix(run)} {run.error}")
        finally:
            self.core.contexts.pop(run.id, None)
            run.stdout, run.stdout_truncated = stdout.getvalue(), stdout.truncated
            run.stderr, run.stderr_truncated = stderr.getvalue(), stderr.truncated
            pool.put(stdout)
            pool.put(stderr)
        run.ended_at = self.now()
        self._finish(job, run, started=True)
        return run

    def record_not_run(self, job: Job, run: Run, state: RunState, reason: str) -> Run:
        """Record a run that never started (skipped, missed, cancelled before it began)."""
        run.state, run.error = state, reason
        run.started_at = run.ended_at = self.now()
        self._finish(job, run, started=False)
        return run

    def _finish(self, job: Job, run: Run, *, started: bool) -> None:
        # Jobs without a policy pay one set look-up (none at all when no job has one).
        names = self.policy_names
        policy = self.policy if names and job.name in names else None
        if policy is not None and started:
            policy.before_end(job, run)  # sets will_retry before anyone sees the record
        # The record is committed before the run is reported finished: a crash
        # after the "Finished" line can lose nothing.
        if self.history is not None:
            if started:
                self.history.record_end(run, history_limit=job.history_limit)
            else:
                self.history.record(run, history_limit=job.history_limit)
        self.drivers.metrics.record_run(job.name, str(run.state), run.duration or 0.0)
        self.log.log("INFO" if run.state == RunState.SUCCESS else "WARNING", finished_line(run))
        self.hooks.observe_run_end(job, run)
        if policy is not None:
            try:
                policy.after_end(job, run)
            except Exception:  # a policy bug must not fail the worker; the run is recorded
                self.log.exception(f"{job_prefix(run)} run policies failed")


def finished_line(run: Run) -> str:
    """Ofelia's line: ``[Job "x" (id)] Finished in "1.5s", failed: false, skipped: false, error: none``."""
    failed = run.state in (RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED)
    skipped = run.state in (RunState.SKIPPED, RunState.MISSED)
    return (
        f'{job_prefix(run)} Finished in "{format_duration(run.duration or 0.0)}", '
        f"state: {run.state}, failed: {str(failed).lower()}, skipped: {str(skipped).lower()}, "
        f"error: {run.error or 'none'}"
    )
