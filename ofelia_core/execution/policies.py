"""Run policies: retries with backoff, on-success/on-failure chains, depends-on.

The engine sits between the scheduler and the dispatcher, and the executor calls
it when a run of a job that has a policy ends. Jobs without any policy never
reach it: the executor checks one frozenset, the batch hand-off one attribute
(see ``docs/configuration.md``, "Run policies: retries and chains").

Retries
    A started run that ends ``failed`` (or ``timed_out``, see ``retry-on``) with
    attempts left is retried: its record gets ``will_retry = True`` before
    ``ofelia_observe_run_end`` (notifiers skip it), then attempt n + 1 is put on
    a timer ``retry-delay * 2^(n-1)`` seconds (capped by ``retry-max-delay``)
    after the attempt ended; no worker waits meanwhile. Its record has its own
    id, ``attempt = n + 1``, ``retry_of`` = the first attempt's id and trigger
    ``retry``; ``scheduled_at`` is when it was due. Skipped, missed and
    cancelled runs are never retried. A pending retry of a ``no-overlap`` job
    counts as the job still running: its scheduled runs are skipped until the
    last attempt ends. Shutdown records every pending retry as cancelled.

Cycles
    A cycle is every run started for one scheduled instant (all jobs due at that
    instant), or by the daemon's start-up (``run-on-startup`` runs), or by one
    run-now, together with every run those start: retries, chains and dependents
    inherit their cycle.

Chains
    When a run's *last* attempt ends, ``on-success`` jobs are started if it
    succeeded, ``on-failure`` jobs if it failed or timed out (trigger ``chain``,
    same cycle). Skipped, missed and cancelled runs trigger neither.

depends-on
    A job with ``depends-on`` runs in a cycle only once every job it depends on
    has succeeded in that same cycle. It comes into a cycle when it is due in it
    (its own schedule fires at the same instant, a chain starts it, or
    start-up), or, for a ``@triggered``/``@manual`` job, when one of its
    dependencies ends in the cycle (trigger ``dependency``; at most once per
    cycle). It then waits, without a worker, for its dependencies that are
    queued, running or awaiting a retry in the cycle; once each has a final
    outcome it runs, or is recorded ``skipped`` with the reason naming the first
    dependency that did not succeed or did not run in the cycle. A run-now is an
    explicit order: it runs the job at once, without waiting, and starts a cycle.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loguru import logger
from ofelia_hookspecs.settings import format_duration

from ..runs import Run, RunState, Trigger
from .dispatcher import Fire, PreparedFires

if TYPE_CHECKING:
    from ..jobs import Job
    from .dispatcher import Dispatcher

#: Cycles remembered (their results and waiting runs); older ones are forgotten.
CYCLE_LIMIT = 4096
#: Schedule kinds that never fire on their own: their dependencies start them.
PUSHED_KINDS = frozenset({"triggered", "manual"})

_RETRIED = frozenset({RunState.FAILED, RunState.TIMED_OUT})


def retry_delay(job_delay: float, max_delay: float, exponential: bool, attempt: int) -> float:
    """Seconds between the end of attempt ``attempt`` (1, 2, ...) and the next one:
    ``delay * 2^(attempt-1)``, at most ``max_delay`` (0: no cap)."""
    delay = job_delay * (2 ** (attempt - 1)) if exponential else job_delay
    return min(delay, max_delay) if max_delay > 0 else delay


@dataclass(frozen=True, slots=True)
class _Plan:
    """A job's policies, read once per reload."""

    max_retries: int
    delay: float
    max_delay: float
    exponential: bool
    retry_on: frozenset[str]
    on_success: tuple[str, ...]
    on_failure: tuple[str, ...]
    depends_on: tuple[str, ...]
    #: ``@triggered``/``@manual`` jobs that depend on this one: its end starts them.
    pushes: tuple[str, ...]
    #: Jobs that depend on this one: its outcome is kept in the cycle.
    tracked: bool


@dataclass(eq=False)
class _Cycle:
    #: Final state of each job's last run in the cycle.
    results: dict[str, str] = field(default_factory=dict)
    #: Runs of depended-on jobs queued, running or awaiting a retry in the cycle.
    expected: dict[str, int] = field(default_factory=dict)
    #: Runs of depends-on jobs waiting for their dependencies.
    waiting: list[tuple[Job, Run]] = field(default_factory=list)
    #: Pushed jobs already started in the cycle by a dependency.
    joined: set[str] = field(default_factory=set)


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    job: Job = field(compare=False)
    run: Run = field(compare=False)
    #: A no-overlap hold taken in the dispatcher for this retry.
    held: bool = field(compare=False)


class PolicyEngine:
    """Retries, chains and depends-on for one dispatcher; thread-safe."""

    def __init__(self, dispatcher: Dispatcher, *, now: Callable[[], float] | None = None) -> None:
        self.dispatcher = dispatcher
        self.executor = dispatcher.executor
        self.now = now or self.executor.now
        self._lock = threading.Lock()
        self._jobs: Mapping[str, Job] = {}
        self._plans: dict[str, _Plan] = {}
        #: Jobs with depends-on, and jobs others depend on: the batch hand-off looks at these.
        self._gated: frozenset[str] = frozenset()
        self._tracked: frozenset[str] = frozenset()
        self._cycles: OrderedDict[str, _Cycle] = OrderedDict()
        self._timer: list[_Pending] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- configuration -----------------------------------------------------------------

    def set_jobs(self, jobs: Mapping[str, Job]) -> None:
        """Read every job's policies (initially and on reload). Pending retries keep the job
        they were scheduled with; chains and dependents use the jobs given here."""
        plans: dict[str, _Plan] = {}
        dependents: dict[str, list[str]] = {}
        for name, job in jobs.items():
            for dep in job.depends_on:
                dependents.setdefault(dep, []).append(name)
        for name, job in jobs.items():
            pushes = tuple(d for d in dependents.get(name, ()) if jobs[d].schedule.kind in PUSHED_KINDS)
            plan = _Plan(
                max_retries=job.max_retries,
                delay=job.retry_delay,
                max_delay=job.retry_max_delay,
                exponential=job.retry_exponential,
                retry_on=job.retry_on,
                on_success=job.on_success,
                on_failure=job.on_failure,
                depends_on=job.depends_on,
                pushes=pushes,
                tracked=name in dependents,
            )
            if plan.max_retries or plan.on_success or plan.on_failure or plan.depends_on or plan.tracked:
                plans[name] = plan
        with self._lock:
            self._jobs = dict(jobs)
            self._plans = plans
            self._gated = frozenset(n for n, p in plans.items() if p.depends_on)
            self._tracked = frozenset(n for n, p in plans.items() if p.tracked)
        # Last: the executor reaches the engine only for these jobs.
        self.executor.policy = self
        self.executor.policy_names = frozenset(plans)

    def start(self) -> None:
        """Start the retry timer thread (idempotent)."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._timer_loop, name="ofelia-retries", daemon=True)
                self._thread.start()

    # --- runs coming in --------------------------------------------------------------

    def on_due_many(self, fires: list[Fire]) -> None:
        """The scheduler's batch hand-off: jobs with depends-on wait for their cycle."""
        if not self._gated and not self._tracked:
            self.dispatcher.enqueue_many(fires)  # no depends-on anywhere: nothing to look at
            return
        self._admit_fires(fires)

    def on_due(self, job: Job, scheduled_at: float, trigger: str) -> None:
        """The scheduler's one-at-a-time hand-off (no batch callback)."""
        if job.name not in self._gated and job.name not in self._tracked:
            self.dispatcher.enqueue(job, trigger, scheduled_at)
            return
        self._admit_fires([(job, scheduled_at, trigger)])

    def submit(self, job: Job, trigger: str, at: float) -> Run:
        """A run-now: runs at once, without waiting for its dependencies (an explicit
        order), and starts a cycle of its own. Returns the record (final if refused)."""
        run = Run(job.name, job.type, trigger=trigger, scheduled_at=at)
        run.cycle = run.id
        self._mark_expected(run.cycle, job.name)
        return self.dispatcher.submit_run(job, run)

    def submit_startup(self, jobs: list[Job], at: float) -> list[Run]:
        """The ``run-on-startup`` runs: one cycle, so depends-on holds between them."""
        key = f"startup@{at!r}"
        runs = [Run(job.name, job.type, trigger=Trigger.STARTUP, scheduled_at=at, cycle=key) for job in jobs]
        # Every dependency is counted in flight before any dependent is looked at.
        for job in jobs:
            if job.name not in self._gated:
                self._mark_expected(key, job.name)
        for job, run in zip(jobs, runs, strict=True):
            if job.name not in self._gated:
                self.dispatcher.submit_run(job, run)
        for job, run in zip(jobs, runs, strict=True):
            if job.name in self._gated:
                self._wait(job, run, evaluate=False)
        self._evaluate(key)
        return runs

    def _admit_fires(self, fires: list[Fire]) -> None:
        gated, tracked = self._gated, self._tracked
        keep: list[Fire] = []
        items = fires.items if isinstance(fires, PreparedFires) and fires.owner is self.dispatcher else None
        held: list[tuple[Job, Run]] = []
        kept_items = []
        for i, fire in enumerate(fires):
            job, at, trigger = fire
            name = job.name
            if name in tracked and name not in gated:  # a gated one is counted by _wait
                self._mark_expected(_scheduled_cycle(at), name)
            if name in gated:
                run = items[i].run if items is not None else Run(name, job.type, trigger=trigger, scheduled_at=at)
                held.append((job, run))
                continue
            keep.append(fire)
            if items is not None:
                kept_items.append(items[i])
        if keep:
            if items is not None:
                self.dispatcher.enqueue_many(PreparedFires(keep, kept_items, self.dispatcher))
            else:
                self.dispatcher.enqueue_many(keep)
        for job, run in held:
            self._wait(job, run, evaluate=False)
        for key in dict.fromkeys(run.cycle for _, run in held):
            if key is not None:
                self._evaluate(key)

    # --- the executor's calls ----------------------------------------------------------

    def before_end(self, job: Job, run: Run) -> None:
        """Called before a started run is recorded: decide whether another attempt follows."""
        plan = self._plans.get(job.name)
        if (
            plan is not None
            and plan.max_retries
            and run.attempt <= plan.max_retries
            and run.state in plan.retry_on
            and not self._closed
        ):
            run.will_retry = True

    def after_end(self, job: Job, run: Run) -> None:
        """Called once a run (started or not) is recorded and reported: retry, chains, dependents."""
        plan = self._plans.get(job.name)
        if run.will_retry:
            self._schedule_retry(job, run, plan)
            return
        if plan is None:
            return
        key = run.cycle or _cycle_of(run)
        state = run.state
        targets: tuple[str, ...] = ()
        if state == RunState.SUCCESS:
            targets = plan.on_success
        elif state in _RETRIED:
            targets = plan.on_failure
        for target in targets:
            self._trigger(target, key, f"{'on-success' if state == RunState.SUCCESS else 'on-failure'} of {job.name!r}")
        if plan.tracked:
            pushed: list[Job] = []
            with self._lock:
                cycle = self._cycle(key)
                cycle.results[job.name] = state
                left = cycle.expected.get(job.name, 0)
                if left > 1:
                    cycle.expected[job.name] = left - 1
                else:
                    cycle.expected.pop(job.name, None)
                for name in plan.pushes:
                    if name not in cycle.joined and name in self._jobs:
                        cycle.joined.add(name)
                        pushed.append(self._jobs[name])
            for dependent in pushed:  # while closing, _wait records them cancelled
                new = Run(dependent.name, dependent.type, trigger=Trigger.DEPENDENCY,
                          scheduled_at=self.now(), cycle=key)
                self._wait(dependent, new, evaluate=False)
            self._evaluate(key)

    # --- retries -----------------------------------------------------------------------

    def _schedule_retry(self, job: Job, run: Run, plan: _Plan | None) -> None:
        if plan is None:  # reloaded away between before_end and now: keep the job's own policy
            delay = retry_delay(job.retry_delay, job.retry_max_delay, job.retry_exponential, run.attempt)
        else:
            delay = retry_delay(plan.delay, plan.max_delay, plan.exponential, run.attempt)
        ended = run.ended_at if run.ended_at is not None else self.now()
        retry = Run(
            job.name, job.type, trigger=Trigger.RETRY, scheduled_at=ended + delay,
            attempt=run.attempt + 1, retry_of=run.retry_of or run.id, cycle=run.cycle or _cycle_of(run),
        )
        # A pending retry is the job still running, for no-overlap: hold its slot from now on.
        held = self.dispatcher.hold(job)
        total = (plan.max_retries if plan is not None else job.max_retries) + 1
        logger.warning(
            f'[Job "{job.name}" ({run.id})] attempt {run.attempt}/{total} {run.state}; '
            f"attempt {retry.attempt} ({retry.id}) in {format_duration(delay)}"
        )
        with self._lock:
            if not self._closed:
                heapq.heappush(self._timer, _Pending(ended + delay, next(self._seq), job, retry, held))
                self._wake.notify()
                return
        self._cancel_retry(_Pending(ended + delay, 0, job, retry, held))

    def _timer_loop(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._timer:
                    self._wake.wait()
                    continue
                wait = self._timer[0].due - self.now()
                if wait > 0:
                    self._wake.wait(min(wait, 60.0))  # bounded: a wall-clock jump is noticed
                    continue
                pending = heapq.heappop(self._timer)
                self._lock.release()
                try:
                    self.dispatcher.submit_run(pending.job, pending.run, held=pending.held)
                except Exception:
                    logger.exception("job {!r}: retry {} could not be queued", pending.job.name, pending.run.id)
                finally:
                    self._lock.acquire()

    def _cancel_retry(self, pending: _Pending) -> None:
        if pending.held:
            self.dispatcher.release_hold(pending.job)
        self.executor.record_not_run(
            pending.job, pending.run, RunState.CANCELLED,
            f"the scheduler shut down before attempt {pending.run.attempt} was due",
        )

    def pending_retries(self) -> list[Run]:
        """Retries waiting for their time, soonest first."""
        with self._lock:
            return [p.run for p in sorted(self._timer)]

    # --- chains and depends-on ---------------------------------------------------------

    def _trigger(self, name: str, key: str, why: str) -> None:
        job = self._jobs.get(name)
        if job is None:
            logger.warning(f"job {name!r} ({why}) is not defined; nothing started")
            return
        run = Run(job.name, job.type, trigger=Trigger.CHAIN, scheduled_at=self.now(), cycle=key)
        logger.info(f'[Job "{name}" ({run.id})] started by {why}')
        if self._closed:
            self.executor.record_not_run(job, run, RunState.CANCELLED, "the scheduler is shutting down")
            return
        if name in self._gated:
            self._wait(job, run)
            return
        self._mark_expected(key, name)
        self.dispatcher.submit_run(job, run)

    def _mark_expected(self, key: str | None, name: str) -> None:
        if key is None or name not in self._tracked:
            return
        with self._lock:
            cycle = self._cycle(key)
            cycle.expected[name] = cycle.expected.get(name, 0) + 1

    def _wait(self, job: Job, run: Run, *, evaluate: bool = True) -> None:
        """Hold ``run`` of a depends-on job until its dependencies are settled in its cycle."""
        key = run.cycle or _cycle_of(run)
        run.cycle = key
        if self._closed:
            self.executor.record_not_run(job, run, RunState.CANCELLED, "the scheduler is shutting down")
            return
        with self._lock:
            cycle = self._cycle(key)
            cycle.waiting.append((job, run))
            cycle.joined.add(job.name)  # already in this cycle: a dependency's end does not add it again
            if job.name in self._tracked:  # in flight in the cycle until its final outcome
                cycle.expected[job.name] = cycle.expected.get(job.name, 0) + 1
        if evaluate:
            self._evaluate(key)

    def _evaluate(self, key: str) -> None:
        """Start or skip the waiting runs of cycle ``key`` whose dependencies are settled."""
        ready: list[tuple[Job, Run, str | None]] = []
        with self._lock:
            cycle = self._cycles.get(key)
            if cycle is None or not cycle.waiting:
                return
            still: list[tuple[Job, Run]] = []
            for job, run in cycle.waiting:
                wait, reason = self._verdict(job, cycle)
                if wait:
                    still.append((job, run))
                else:
                    ready.append((job, run, reason))
            cycle.waiting = still
        # Outside the lock: admitting or recording a run calls back into the engine.
        for job, run, reason in ready:
            if reason is None:
                self.dispatcher.submit_run(job, run)
            else:
                self.executor.record_not_run(job, run, RunState.SKIPPED, reason)

    def _verdict(self, job: Job, cycle: _Cycle) -> tuple[bool, str | None]:
        """(True, None): a dependency is still in flight; (False, None): run it;
        (False, reason): skip it. Lock held."""
        plan = self._plans.get(job.name)
        depends_on = plan.depends_on if plan is not None else job.depends_on
        for dep in depends_on:
            state = cycle.results.get(dep)
            if state is None:
                if cycle.expected.get(dep):
                    return True, None
                if dep not in self._jobs:
                    return False, f"depends-on: no job named {dep!r}"
                return False, f"depends-on: job {dep!r} did not run in this cycle"
            if state != RunState.SUCCESS:
                return False, f"depends-on: job {dep!r} did not succeed in this cycle ({state})"
        return False, None

    def _cycle(self, key: str) -> _Cycle:
        """The cycle ``key``, created if new; the oldest are forgotten past CYCLE_LIMIT. Lock held."""
        cycle = self._cycles.get(key)
        if cycle is None:
            cycle = self._cycles[key] = _Cycle()
            while len(self._cycles) > CYCLE_LIMIT:
                old_key, old = next(iter(self._cycles.items()))
                if old.waiting or old.expected:
                    break  # still in use; let the dict grow rather than lose a waiting run
                del self._cycles[old_key]
        else:
            self._cycles.move_to_end(key)
        return cycle

    # --- shutdown ----------------------------------------------------------------------

    def close(self) -> list[Run]:
        """Stop: record pending retries and runs waiting for dependencies as cancelled.
        Runs ending later start no retry and no chain (theirs are recorded cancelled)."""
        with self._lock:
            self._closed = True
            pending, self._timer = sorted(self._timer), []
            waiting = [item for cycle in self._cycles.values() for item in cycle.waiting]
            for cycle in self._cycles.values():
                cycle.waiting = []
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        cancelled = []
        for item in pending:
            self._cancel_retry(item)
            cancelled.append(item.run)
        for job, run in waiting:
            self.executor.record_not_run(
                job, run, RunState.CANCELLED, "the scheduler shut down while the run waited for its depends-on jobs"
            )
            cancelled.append(run)
        return cancelled


def _scheduled_cycle(at: float) -> str:
    return f"@{at!r}"


def _cycle_of(run: Run) -> str:
    """A run's cycle when none was set: its scheduled instant, else its own id."""
    if run.trigger == Trigger.SCHEDULE and run.scheduled_at is not None:
        return _scheduled_cycle(run.scheduled_at)
    return run.id
