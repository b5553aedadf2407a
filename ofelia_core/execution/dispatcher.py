"""Admitting runs: no-overlap, the global concurrency limit, the wait queue, worker threads.

Workers are plain threads started on demand up to ``max_concurrent`` (0: no
limit) and kept while busy; an idle worker exits after ``idle_timeout``. A
run that finds every worker busy waits in a FIFO queue of at most
``queue_size`` runs, or is skipped when ``overflow`` is ``skip`` or the
queue is full. Every run that is not executed is still recorded (skipped,
or cancelled at shutdown).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..runs import Run, RunState, Trigger

if TYPE_CHECKING:
    from ..jobs import Job
    from .executor import RunExecutor


@dataclass
class _Ticket:
    job: Job
    run: Run
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


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
        self._cond = threading.Condition()
        self._queue: deque[_Ticket] = deque()
        self._running: dict[str, _Ticket] = {}  # by run id
        self._per_job: dict[str, int] = {}  # queued + running, for no-overlap
        self._workers = 0
        self._idle = 0
        self._closed = False

    # --- admission ---------------------------------------------------------------

    def submit(self, job: Job, trigger: str = Trigger.SCHEDULE, scheduled_at: float | None = None) -> Run:
        """Queue a run of ``job``; returns its record (already final when it was skipped)."""
        run = Run(job.name, job.type, trigger=trigger, scheduled_at=scheduled_at)
        reason = None
        with self._cond:
            if self._closed:
                reason = "the scheduler is shutting down"
            elif job.no_overlap and self._per_job.get(job.name):
                reason = "no-overlap: the previous run is still running"
            elif self._limit_reached() and self._idle == 0:
                if self.overflow == "skip":
                    reason = f"max-concurrent-runs ({self.max_concurrent}) reached"
                elif len(self._queue) >= self.queue_size:
                    reason = f"max-concurrent-runs ({self.max_concurrent}) reached and the queue is full"
            if reason is None:
                self._per_job[job.name] = self._per_job.get(job.name, 0) + 1
                self._queue.append(_Ticket(job, run))
                if self._idle:
                    self._cond.notify()
                elif not self._limit_reached():
                    self._start_worker()
                return run
        state = RunState.CANCELLED if self._closed else RunState.SKIPPED
        return self.executor.record_not_run(job, run, state, reason)

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
        threading.Thread(target=self._work, name=f"ofelia-run-{self._workers}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._closed:
                        self._workers -= 1
                        self._cond.notify_all()
                        return
                    self._idle += 1
                    woke = self._cond.wait(self.idle_timeout)
                    self._idle -= 1
                    if not woke and not self._queue:
                        self._workers -= 1
                        return
                ticket = self._queue.popleft()
                self._running[ticket.run.id] = ticket
            try:
                self.executor.execute(ticket.job, ticket.run, ticket.cancel)
            finally:
                with self._cond:
                    del self._running[ticket.run.id]
                    self._release(ticket.job.name)
                    ticket.done.set()
                    self._cond.notify_all()

    def _release(self, job_name: str) -> None:
        left = self._per_job.get(job_name, 1) - 1
        if left:
            self._per_job[job_name] = left
        else:
            self._per_job.pop(job_name, None)

    # --- status and shutdown -------------------------------------------------------

    def cancel(self, run_id: str) -> bool:
        """Ask a running run to stop (its runner kills it and records it as cancelled)."""
        with self._cond:
            ticket = self._running.get(run_id)
        if ticket is not None:
            ticket.cancel.set()
        return ticket is not None

    def running(self) -> list[Run]:
        with self._cond:
            return [ticket.run for ticket in self._running.values()]

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running; True if that happened in time."""
        deadline = None if timeout is None else self.monotonic() + timeout
        with self._cond:
            while self._queue or self._running:
                remaining = None if deadline is None else deadline - self.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def shutdown(self, timeout: float, cancel_grace: float = 15.0) -> list[Run]:
        """Stop admitting; cancel queued runs; wait ``timeout`` for running ones, then cancel
        them and wait up to ``cancel_grace`` for their records. Returns the runs cancelled."""
        with self._cond:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            for ticket in waiting:
                self._release(ticket.job.name)
            self._cond.notify_all()
        cancelled = [
            self.executor.record_not_run(
                t.job, t.run, RunState.CANCELLED, "the scheduler shut down before the run started"
            )
            for t in waiting
        ]
        if not self.wait_idle(timeout):
            with self._cond:
                still = list(self._running.values())
            for ticket in still:
                ticket.cancel.set()
            self.wait_idle(cancel_grace)
            cancelled += [t.run for t in still if t.run.state == RunState.CANCELLED]
        return cancelled
