"""Admitting runs: no-overlap, the global concurrency limit, the wait queue, worker threads.

Workers are plain threads started on demand up to ``max_concurrent`` (0: no
limit) and kept while busy; an idle worker exits after ``idle_timeout``. A
run that finds every worker busy waits in a FIFO queue of at most
``queue_size`` runs, or is skipped when ``overflow`` is ``skip`` or the
queue is full. Every run that is not executed is still recorded (skipped,
or cancelled at shutdown).

The scheduler's hand-off (:meth:`Dispatcher.enqueue`) is the hot path: a
thousand jobs due on the same second pass through it in one burst, and each
waits behind the ones before it for the GIL. So it only checks counters and
appends to the queue; the worker builds the run record. Each worker owns
one cancel event, reused from run to run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ..runs import Run, RunState, Trigger

if TYPE_CHECKING:
    from ..jobs import Job
    from .executor import RunExecutor


class _Queued(NamedTuple):
    job: Job
    trigger: str
    scheduled_at: float | None
    run: Run | None  # built by the caller of submit(); by the worker otherwise


class Dispatcher:
    def __init__(
        self,
        executor: RunExecutor,
        *,
        max_concurrent: int = 32,
        overflow: str = "queue",
        queue_size: int = 1000,
        idle_timeout: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.executor = executor
        self.max_concurrent = max_concurrent
        self.overflow = overflow
        self.queue_size = queue_size
        self.idle_timeout = idle_timeout
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # workers wait here for runs
        self._drained = threading.Condition(self._lock)  # wait_idle() waits here
        self._queue: deque[_Queued] = deque()
        self._running: dict[str, tuple[Run, threading.Event]] = {}  # by run id
        self._per_job: dict[str, int] = {}  # queued + running, for no-overlap
        self._workers = 0
        self._idle = 0
        self._closed = False

    # --- admission ---------------------------------------------------------------

    def enqueue(self, job: Job, trigger: str = Trigger.SCHEDULE, scheduled_at: float | None = None) -> None:
        """Queue a run of ``job`` (the scheduler's hand-off); a refused run is recorded as skipped."""
        self._admit(_Queued(job, trigger, scheduled_at, None))

    def enqueue_many(self, fires: list[tuple[Job, float, str]]) -> None:
        """Queue runs for ``(job, scheduled_at, trigger)`` fires under one lock, waking
        as many workers as there is work for; refused runs are recorded as skipped."""
        refused: list[tuple[_Queued, str]] = []
        with self._lock:
            for job, scheduled_at, trigger in fires:
                item = _Queued(job, trigger, scheduled_at, None)
                reason = self._refusal(job)
                if reason is None:
                    self._per_job[job.name] = self._per_job.get(job.name, 0) + 1
                    self._queue.append(item)
                else:
                    refused.append((item, reason))
            self._wake_workers(len(self._queue))
            closed = self._closed
        for item, reason in refused:
            run = Run(item.job.name, item.job.type, trigger=item.trigger, scheduled_at=item.scheduled_at)
            self.executor.record_not_run(item.job, run, RunState.CANCELLED if closed else RunState.SKIPPED, reason)

    def _wake_workers(self, work: int) -> None:
        """Wake idle workers, then start new ones, for ``work`` queued runs. Lock held."""
        woken = min(work, self._idle)
        if woken:
            self._work.notify(woken)
        for _ in range(work - woken):
            if self._limit_reached():
                break
            self._start_worker()

    def submit(self, job: Job, trigger: str = Trigger.SCHEDULE, scheduled_at: float | None = None) -> Run:
        """Queue a run of ``job`` and return its record (already final when it was skipped)."""
        run = Run(job.name, job.type, trigger=trigger, scheduled_at=scheduled_at)
        return self._admit(_Queued(job, trigger, scheduled_at, run)) or run

    def _admit(self, item: _Queued) -> Run | None:
        job = item.job
        with self._lock:
            reason = self._refusal(job)
            if reason is None:
                self._per_job[job.name] = self._per_job.get(job.name, 0) + 1
                self._queue.append(item)
                self._wake_workers(1)
                return None
            closed = self._closed
        run = item.run or Run(job.name, job.type, trigger=item.trigger, scheduled_at=item.scheduled_at)
        return self.executor.record_not_run(job, run, RunState.CANCELLED if closed else RunState.SKIPPED, reason)

    def _refusal(self, job: Job) -> str | None:
        """Why a run of ``job`` cannot be queued now, or None. Called with the lock held."""
        if self._closed:
            return "the scheduler is shutting down"
        if job.no_overlap and self._per_job.get(job.name):
            return "no-overlap: the previous run is still running"
        if self.max_concurrent:
            # Queued runs beyond what idle and not-yet-started workers will take must wait.
            free = self._idle + self.max_concurrent - self._workers
            waiting = len(self._queue) - free
            if waiting >= 0 and self.overflow == "skip":
                return f"max-concurrent-runs ({self.max_concurrent}) reached"
            if waiting >= self.queue_size:
                return f"max-concurrent-runs ({self.max_concurrent}) reached and the queue is full"
        return None

    def record_missed(self, job: Job, scheduled_at: float) -> Run:
        late = self.executor.now() - scheduled_at
        run = Run(job.name, job.type, trigger=Trigger.SCHEDULE, scheduled_at=scheduled_at)
        return self.executor.record_not_run(
            job, run, RunState.MISSED, f"missed: due {late:.1f}s ago, more than missed-run-grace"
        )

    def _limit_reached(self) -> bool:
        return bool(self.max_concurrent) and self._workers >= self.max_concurrent

    # --- workers -----------------------------------------------------------------

    def _start_worker(self) -> None:
        self._workers += 1
        threading.Thread(target=self._work_loop, name=f"ofelia-run-{self._workers}", daemon=True).start()

    def _work_loop(self) -> None:
        cancel = threading.Event()
        while True:
            with self._lock:
                while not self._queue:
                    if self._closed:
                        self._workers -= 1
                        return
                    self._idle += 1
                    woke = self._work.wait(self.idle_timeout)
                    self._idle -= 1
                    if not woke and not self._queue:
                        self._workers -= 1
                        return
                item = self._queue.popleft()
                run = item.run or Run(item.job.name, item.job.type, trigger=item.trigger,
                                      scheduled_at=item.scheduled_at)
                cancel.clear()
                self._running[run.id] = (run, cancel)
            try:
                self.executor.execute(item.job, run, cancel)
            finally:
                with self._lock:
                    del self._running[run.id]
                    self._release(item.job.name)
                    if not self._running and not self._queue:
                        self._drained.notify_all()

    def _release(self, job_name: str) -> None:
        left = self._per_job.get(job_name, 1) - 1
        if left:
            self._per_job[job_name] = left
        else:
            self._per_job.pop(job_name, None)

    # --- status and shutdown -------------------------------------------------------

    def cancel(self, run_id: str) -> bool:
        """Ask a running run to stop (its runner kills it and records it as cancelled)."""
        with self._lock:
            entry = self._running.get(run_id)
        if entry is not None:
            entry[1].set()
        return entry is not None

    def running(self) -> list[Run]:
        with self._lock:
            return [run for run, _ in self._running.values()]

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running; True if that happened in time."""
        deadline = None if timeout is None else self.monotonic() + timeout
        with self._lock:
            while self._queue or self._running:
                remaining = None if deadline is None else deadline - self.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._drained.wait(remaining)
            return True

    def shutdown(self, timeout: float, cancel_grace: float = 15.0) -> list[Run]:
        """Stop admitting; cancel queued runs; wait ``timeout`` for running ones, then cancel
        them and wait up to ``cancel_grace`` for their records. Returns the runs cancelled."""
        with self._lock:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            for item in waiting:
                self._release(item.job.name)
            self._work.notify_all()
            self._drained.notify_all()
        cancelled = [
            self.executor.record_not_run(
                item.job,
                item.run or Run(item.job.name, item.job.type, trigger=item.trigger, scheduled_at=item.scheduled_at),
                RunState.CANCELLED,
                "the scheduler shut down before the run started",
            )
            for item in waiting
        ]
        if not self.wait_idle(timeout):
            with self._lock:
                still = list(self._running.values())
            for _, cancel in still:
                cancel.set()
            self.wait_idle(cancel_grace)
            cancelled += [run for run, _ in still if run.state == RunState.CANCELLED]
        return cancelled
