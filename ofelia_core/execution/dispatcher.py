"""Admitting runs: no-overlap, the global concurrency limit, the wait queue, worker threads.

Workers are plain threads started on demand up to ``max_concurrent`` (0: no
limit) and kept while busy; an idle worker exits after ``idle_timeout``. A
run that finds every worker busy waits in a FIFO queue of at most
``queue_size`` runs, or is skipped when ``overflow`` is ``skip`` or the
queue is full. Every run that is not executed is still recorded (skipped,
or cancelled at shutdown).

The scheduler's hand-off is the hot path: a thousand jobs due on the same
second pass through it in one burst, and each run waits behind the ones
before it for the GIL. So:

- The scheduler prepares a pass ahead of its instant (:meth:`Dispatcher.prepare_many`:
  queue items and run records are built then), and at the instant
  :meth:`Dispatcher.enqueue_many` admits the whole batch under one lock, in
  one ``deque.extend`` when no job in it has no-overlap and the queue has room.
- Workers wake each other in a chain instead of all at once: whoever takes a
  run while more are queued wakes (or starts) one more worker, unless one is
  already on its way. A burst of short runs is then drained by the worker or
  two holding the GIL instead of thirty-two threads fighting for it, while
  runs that block (containers, processes) still fan out to every worker, one
  wake-up after the other. Idle workers wait on a stack: the most recently
  used one is woken first and the others age out after ``idle_timeout``.
- A worker finishes a run and takes the next one under one lock, and owns one
  cancel event, reused from run to run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from loguru import logger

from ..runs import Run, RunState, Trigger

if TYPE_CHECKING:
    from ..jobs import Job
    from .executor import RunExecutor

Fire = tuple["Job", float, str]  # (job, scheduled_at, trigger), as the scheduler hands them over


class _Queued(NamedTuple):
    job: Job
    trigger: str
    scheduled_at: float | None
    run: Run
    #: The job's no-overlap, read once: the run is counted in ``_per_job`` if and only if it is set.
    no_overlap: bool


def _queued(job: Job, trigger: str, scheduled_at: float | None, run: Run | None = None) -> _Queued:
    if run is None:
        run = Run(job.name, job.type, trigger=trigger, scheduled_at=scheduled_at)
    return _Queued(job, trigger, scheduled_at, run, job.no_overlap)


class PreparedFires(list[Fire]):
    """Fires whose queue items and run records were built ahead (:meth:`Dispatcher.prepare_many`)."""

    def __init__(self, fires: list[Fire], items: list[_Queued], owner: Dispatcher) -> None:
        super().__init__(fires)
        self.items = items
        self.owner = owner
        self.no_overlap = any(item.no_overlap for item in items)


class _Sleeper:
    """An idle worker's wake-up: a lock it blocks on until another thread releases it."""

    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()


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
        self._drained = threading.Condition(self._lock)  # wait_idle() waits here
        self._queue: deque[_Queued] = deque()
        self._running: dict[str, tuple[Run, threading.Event]] = {}  # by run id
        self._per_job: dict[str, int] = {}  # queued + running runs of no-overlap jobs
        self._workers = 0
        #: Workers not running a run: asleep on the stack, or woken and not yet back.
        self._idle = 0
        self._sleepers: list[_Sleeper] = []  # asleep; the last is woken first
        #: Workers woken or started that have not taken the lock yet.
        self._coming = 0
        self._closed = False

    # --- admission ---------------------------------------------------------------

    def enqueue(self, job: Job, trigger: str = Trigger.SCHEDULE, scheduled_at: float | None = None) -> None:
        """Queue a run of ``job`` (the scheduler's hand-off); a refused run is recorded as skipped."""
        self._admit(_queued(job, trigger, scheduled_at))

    def prepare_many(self, fires: list[Fire]) -> PreparedFires:
        """Build, ahead of their instant, the queue items and run records of ``fires``; hand
        what this returns to :meth:`enqueue_many` at the instant. Nothing is admitted yet."""
        items = [_queued(job, trigger, scheduled_at) for job, scheduled_at, trigger in fires]
        return PreparedFires(fires, items, self)

    def enqueue_many(self, fires: list[Fire]) -> None:
        """Queue runs for ``(job, scheduled_at, trigger)`` fires under one lock, in order, waking
        a worker when there is work; refused runs are recorded as skipped."""
        if isinstance(fires, PreparedFires) and fires.owner is self:
            items, no_overlap = fires.items, fires.no_overlap
        else:
            items = [_queued(job, trigger, scheduled_at) for job, scheduled_at, trigger in fires]
            no_overlap = any(item.no_overlap for item in items)
        refused: list[tuple[_Queued, str]] = []
        with self._lock:
            closed = self._closed
            if not closed and not no_overlap and self._room() >= len(items):
                self._queue.extend(items)  # the usual case: nothing to refuse
            else:
                for item in items:
                    reason = self._refusal(item)
                    if reason is None:
                        self._push(item)
                    else:
                        refused.append((item, reason))
            if self._queue:
                self._wake_one()
        for item, reason in refused:
            self.executor.record_not_run(item.job, item.run, RunState.CANCELLED if closed else RunState.SKIPPED, reason)

    def submit(self, job: Job, trigger: str = Trigger.SCHEDULE, scheduled_at: float | None = None) -> Run:
        """Queue a run of ``job`` and return its record (already final when it was skipped)."""
        item = _queued(job, trigger, scheduled_at)
        return self._admit(item) or item.run

    def submit_run(self, job: Job, run: Run, *, held: bool = False) -> Run:
        """Queue ``run`` (built by the caller: a retry, a chain) and return it, already final
        when refused. ``held``: a :meth:`hold` taken for it passes to the queued run."""
        return self._admit(_Queued(job, run.trigger, run.scheduled_at, run, job.no_overlap), held=held) or run

    def hold(self, job: Job) -> bool:
        """For a no-overlap job, count a run as in progress (a pending retry) until
        :meth:`submit_run` with ``held`` or :meth:`release_hold`; False for other jobs."""
        if not job.no_overlap:
            return False
        with self._lock:
            self._per_job[job.name] = self._per_job.get(job.name, 0) + 1
        return True

    def release_hold(self, job: Job) -> None:
        with self._lock:
            self._release(job.name)

    def _admit(self, item: _Queued, *, held: bool = False) -> Run | None:
        with self._lock:
            reason = self._refusal(item, held=held)
            if reason is None:
                self._push(item, counted=held)
                self._wake_one()
                return None
            if held and item.no_overlap:
                self._release(item.job.name)
            closed = self._closed
        state = RunState.CANCELLED if closed else RunState.SKIPPED
        return self.executor.record_not_run(item.job, item.run, state, reason)

    def _push(self, item: _Queued, *, counted: bool = False) -> None:
        if item.no_overlap and not counted:
            name = item.job.name
            self._per_job[name] = self._per_job.get(name, 0) + 1
        self._queue.append(item)

    def _room(self) -> float:
        """How many more runs can be queued now without refusing any. Lock held."""
        if not self.max_concurrent:
            return float("inf")
        # Queued runs beyond what idle and not-yet-started workers will take must wait.
        free = self._idle + self.max_concurrent - self._workers
        waiting_allowed = 0 if self.overflow == "skip" else self.queue_size
        return max(0, free + waiting_allowed - len(self._queue))

    def _refusal(self, item: _Queued, *, held: bool = False) -> str | None:
        """Why ``item`` cannot be queued now, or None. Called with the lock held.
        ``held``: the item's no-overlap slot is already counted (a retry's hold)."""
        if self._closed:
            return "the scheduler is shutting down"
        if item.no_overlap and not held and self._per_job.get(item.job.name):
            return "no-overlap: the previous run is still running"
        if self.max_concurrent:
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

    # --- workers -----------------------------------------------------------------

    def _wake_one(self) -> None:
        """There is queued work: make sure a worker is on its way to it. Lock held.

        One at a time: the worker that takes a run wakes the next if more are queued.
        """
        if self._coming:
            return
        if self._sleepers:
            self._coming += 1
            self._sleepers.pop().lock.release()
        elif not (self.max_concurrent and self._workers >= self.max_concurrent):
            self._coming += 1
            self._workers += 1
            self._idle += 1  # counted idle until it takes its first run, as a woken worker is
            try:
                threading.Thread(target=self._work_loop, name=f"ofelia-run-{self._workers}", daemon=True).start()
            except BaseException:  # no thread: no worker on its way either
                self._coming -= 1
                self._workers -= 1
                self._idle -= 1
                raise

    def _work_loop(self) -> None:
        cancel = threading.Event()
        sleeper = _Sleeper()
        item: _Queued | None = None
        lock = self._lock
        lock.acquire()
        self._coming -= 1  # started, as if woken
        try:
            while True:
                if item is not None:  # the run just finished
                    del self._running[item.run.id]
                    if item.no_overlap:
                        self._release(item.job.name)
                    if not self._running and not self._queue:
                        self._drained.notify_all()
                    item = None
                    self._idle += 1
                if not self._queue:
                    if self._closed or not self._sleep(sleeper):
                        self._idle -= 1
                        self._workers -= 1
                        return
                    if not self._queue:
                        continue  # woken for a run another worker took first
                self._idle -= 1
                item = self._queue.popleft()
                if self._queue:
                    self._wake_one()
                if cancel.is_set():
                    cancel.clear()
                run = item.run
                self._running[run.id] = (run, cancel)
                lock.release()
                try:
                    self.executor.execute(item.job, run, cancel)
                except Exception:  # the executor records a job's failure; this is a bug in it
                    logger.exception("job {!r}: run {} failed in the executor", item.job.name, run.id)
                finally:
                    lock.acquire()
        finally:
            lock.release()

    def _sleep(self, sleeper: _Sleeper) -> bool:
        """Wait, idle, until woken (True) or ``idle_timeout`` passes with no work (False). Lock held."""
        self._sleepers.append(sleeper)
        self._lock.release()
        try:
            woken = sleeper.lock.acquire(timeout=self.idle_timeout)
        finally:
            self._lock.acquire()
        if woken:
            self._coming -= 1
            return True
        try:
            self._sleepers.remove(sleeper)
        except ValueError:  # woken just as the wait timed out: take the wake-up
            sleeper.lock.acquire()
            self._coming -= 1
            return True
        return bool(self._queue) and not self._closed

    def _release(self, job_name: str) -> None:
        left = self._per_job.get(job_name, 1) - 1
        if left:
            self._per_job[job_name] = left
        else:
            self._per_job.pop(job_name, None)

    # --- status and shutdown -------------------------------------------------------

    def cancel(self, run_id: str) -> bool:
        """Ask a running run to stop (its runner kills it and records it as cancelled)."""
        with self._lock:  # set under the lock: the worker cannot have moved on to another run
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
                if item.no_overlap:
                    self._release(item.job.name)
            while self._sleepers:  # idle workers wake up and exit
                self._coming += 1
                self._sleepers.pop().lock.release()
            self._drained.notify_all()
        cancelled = [
            self.executor.record_not_run(
                item.job, item.run, RunState.CANCELLED, "the scheduler shut down before the run started"
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
