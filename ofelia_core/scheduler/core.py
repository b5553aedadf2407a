"""The scheduler: one thread that sleeps until the next fire and calls back.

It runs nothing itself: ``on_due(job, scheduled_at, trigger)`` hands a run to
the dispatcher and ``on_missed(job, scheduled_at)`` records a missed one;
``on_due_many`` (optional) takes every on-time fire of a pass at once, and
``prepare_many`` (optional) readies such a batch ahead of its instant. All
are called from the scheduler thread, with its (re-entrant) lock held so that
no job removed by :meth:`Scheduler.set_jobs` fires after it returns: they must
return quickly and must not wait on a thread that calls the scheduler.

Timing
    Entries ``(name, generation)`` live in buckets, one per instant, and a heap
    holds the distinct instants: the thousand ``@every 1s`` jobs due on the
    same second share one bucket, so moving each to its next instant is a
    dict look-up and an append, and popping them all is one heap pop. A
    reload bumps a job's generation, so its old entries are skipped when
    popped (lazy invalidation). The thread waits on an event until the
    earliest due instant (at most ``max_sleep``), a reload or
    :meth:`~Scheduler.stop`: it never polls. Everything due is popped at once
    and dispatched before any next instant is computed. The next instant comes
    from the previous *scheduled* one, never from "now", so fires do not drift.
    ``@every`` fires at ``origin + k * interval`` with the origin on the whole
    second the job was scheduled (as robfig/cron does): the first fire is one
    interval later.

Preparing ahead
    The thread wakes ``prepare_ahead`` seconds (50 ms) before an instant and
    does the pass's work then: it pops the instant's bucket, builds the batch
    of fires and moves each job to its next instant. At the instant it only
    hands the batch over (and goes back to sleep), so a burst's runs do not
    wait behind that work. A reload in between leaves out of the batch the
    jobs it removed or changed (those are scheduled afresh); a wall-clock jump,
    or a release more than a second late, undoes the preparation and the
    instant goes through the ordinary rules below. Nothing is released before
    its instant.

Late and missed runs
    An instant handled at most ``missed-run-grace`` late (and never less than
    one second, the loop's own slack) runs once. One handled later is missed:
    when several instants of a job were missed in a row (the host slept an
    hour under an ``@every 1m`` job), ONE missed run is recorded, for the
    first of them, and the log line gives their count. If an instant within
    the grace has also passed, it runs once; the job then continues at its
    next future instant. Instants that pass while a job is already being
    caught up are folded into that one run: there is never a burst of
    catch-up runs.

Wall-clock jumps
    Each pass compares the wall time elapsed with the monotonic time elapsed;
    a difference above ``jump_threshold`` is a jump, logged with its size. A
    forward jump needs nothing more: the instants it skipped are late and fall
    under the rules above. A backward jump reschedules every job: ``@every``
    entries move back by the jump (rounded to the second), so the job keeps
    its real-time spacing instead of waiting the size of the jump; cron
    entries take their next instant after the new time, but never one at or
    before the last instant the job already handled. ``max_sleep`` bounds how
    long a jump (or a host suspend, which stops the monotonic clock) goes
    unnoticed. Daylight-saving time needs nothing here: the loop works in
    epoch seconds and :func:`~ofelia_core.config.schedule.next_fire_times`
    applies the DST policy.

A bad job never stops the scheduler: if its next instant cannot be computed
it is logged and no longer scheduled; a callback that raises is logged.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from loguru import logger

from ..config.schedule import Schedule
from ..jobs import Job
from ..runs import Trigger
from .clock import Clock, SystemClock
from .timetable import next_fire

# Return values are ignored (a dispatcher may return the Run it recorded).
OnDue = Callable[[Job, float, str], object]
OnMissed = Callable[[Job, float], object]
OnDueMany = Callable[[list[tuple[Job, float, str]]], object]
PrepareMany = Callable[[list[tuple[Job, float, str]]], list[tuple[Job, float, str]]]

#: Lateness always treated as on time, whatever the job's grace (wake-up slack).
ON_TIME = 1.0
#: Missed instants counted one by one before skipping ahead (the count is then a lower bound).
MISSED_COUNT_LIMIT = 1000

_SYSTEM_CLOCK = SystemClock()

#: What ``prepare_ahead`` defaults to: how long before an instant its batch is prepared.
PREPARE_AHEAD = 0.05

_Entry = tuple[str, int]  # (job name, generation) in the bucket of an instant


@dataclass(slots=True, eq=False)
class _Slot:
    """A job's scheduling state; ``due`` is None when it does not fire by time."""

    job: Job
    identity: str
    generation: int
    #: Seconds late a run may start: the job's missed-run grace, at least ON_TIME.
    grace: float
    due: float | None = None
    #: ``@every`` only: fires are origin + k * interval.
    origin: float | None = None
    #: The latest instant handled (fired or recorded missed).
    last: float | None = None

    @property
    def schedule(self) -> Schedule:
        return self.job.schedule


@dataclass(slots=True, eq=False)
class _Prepared:
    """An instant's fires, prepared ahead; its jobs already sit at their next instant."""

    at: float
    #: The scheduler's ``_version`` when prepared: unchanged, every fire is still valid.
    version: int
    fires: list[tuple[Job, float, str]]
    #: Each slot with its ``last`` from before: undoing restores both.
    slots: list[tuple[_Slot, float | None]]
    #: The earliest next instant of these jobs: releasing at or after it would skip it.
    horizon: float


class Scheduler:
    """Calls ``on_due`` when jobs are due; see the module docstring for the policies."""

    def __init__(
        self,
        on_due: OnDue,
        on_missed: OnMissed,
        *,
        clock: Clock = _SYSTEM_CLOCK,
        jump_threshold: float = 5.0,
        max_sleep: float | None = 60.0,
        on_due_many: OnDueMany | None = None,
        prepare_many: PrepareMany | None = None,
        prepare_ahead: float = PREPARE_AHEAD,
    ) -> None:
        self._on_due = on_due
        # Given, it receives every on-time fire of a pass at once: one hand-off
        # (one lock, one wake-up) for a thousand jobs due on the same second.
        self._on_due_many = on_due_many
        # Given (with on_due_many), it receives a prepared batch ahead of its instant and
        # returns what on_due_many is handed at the instant (the same fires, made ready).
        self._prepare_many = prepare_many
        self._on_missed = on_missed
        self._clock = clock
        self._jump_threshold = jump_threshold
        self._max_sleep = max_sleep
        self._prepare_ahead = prepare_ahead
        self._lock = threading.RLock()
        self._reload_lock = threading.Lock()  # one set_jobs at a time
        self._wake = threading.Event()
        self._slots: dict[str, _Slot] = {}
        self._heap: list[float] = []  # the distinct instants of the buckets
        self._buckets: dict[float, list[_Entry]] = {}
        self._entries = 0  # in all buckets, live or stale
        self._version = 0  # bumped whenever slots are replaced or moved outside a pass
        self._prepared: _Prepared | None = None
        self._generations = itertools.count(1)
        self._reference: tuple[float, float] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._counts = {"wakeups": 0, "fired": 0, "missed": 0, "jumps": 0}

    # --- public API ---------------------------------------------------------

    def set_jobs(self, jobs: Mapping[str, Job]) -> None:
        """Schedule exactly ``jobs`` (initially and on reload).

        A job whose identity is unchanged keeps its next instant; a new or
        changed one is scheduled from now; a removed one never fires again.
        """
        with self._reload_lock:
            now = self._clock.time()
            current = self._slots
            slots: dict[str, _Slot] = {}
            fresh: list[_Slot] = []
            # Digests and first instants (slow for cron) are computed without
            # holding the lock the dispatching thread needs.
            for name, job in jobs.items():
                identity = job.identity
                old = current.get(name)
                if old is not None and old.identity == identity:
                    slots[name] = old
                    continue
                slot = _Slot(job, identity, next(self._generations), max(job.missed_run_grace, ON_TIME))
                if old is not None:
                    slot.last = old.last  # a backward jump must not re-fire what the old version ran
                slot.due = self._first_due(slot, now)
                slots[name] = slot
                fresh.append(slot)
            with self._lock:
                for name, slot in slots.items():
                    slot.job = jobs[name]  # an unchanged identity may still come with a new location
                for slot in fresh:
                    self._set_due(slot, slot.due)
                self._slots = slots
                self._version += 1
                if self._entries > 2 * len(slots) + 64:
                    self._rebuild_heap()
        self._wake.set()

    def start(self) -> None:
        """Start the thread (``run-on-startup`` runs are the caller's: they are not scheduled)."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("a stopped scheduler cannot be started again")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="ofelia-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop firing and return once the thread has ended (idempotent)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def next_fires(self) -> dict[str, float | None]:
        """Each job's next scheduled instant (epoch seconds), None when it has none."""
        with self._lock:
            fires = {name: slot.due for name, slot in self._slots.items()}
            prepared = self._prepared
            if prepared is not None:  # moved on already, but not fired yet
                for slot, _ in prepared.slots:
                    if self._slots.get(slot.job.name) is slot:
                        fires[slot.job.name] = prepared.at
            return fires

    def stats(self) -> dict[str, int]:
        """Counters: ``wakeups`` (passes of the loop), ``fired``, ``missed``, ``jumps``, ``jobs``."""
        return {**self._counts, "jobs": len(self._slots)}

    def step(self) -> float | None:
        """One pass of the loop: detect a clock jump, handle everything due.

        Returns the seconds to sleep before the next pass (None: until woken).
        The thread loops on this and :meth:`prepare`; tests call them directly
        with a manual clock.
        """
        self._counts["wakeups"] += 1
        wall = self._clock.time()
        self._check_jump(wall, self._clock.monotonic())
        self._release(wall)
        self._run_due(wall)
        return self._sleep_time(self._clock.time())

    def prepare(self, sleep: float | None) -> float | None:
        """Called between passes with what :meth:`step` returned: when the next instant is
        less than ``prepare_ahead`` away, prepare its batch (see the module docstring).

        Returns the seconds to sleep now: until the instant (prepared, or not an instant),
        else until ``prepare_ahead`` before it.
        """
        if sleep is None or self._prepare_ahead <= 0:
            return sleep
        with self._lock:
            now = self._clock.time()
            at = self._next_instant()
            if at is None or at - now > sleep:  # capped by max_sleep: nothing to prepare yet
                return sleep
            if at - now > self._prepare_ahead:
                return at - now - self._prepare_ahead
            if self._prepared is None and at > now:
                self._prepare(at)
                now = self._clock.time()
            return max(0.0, at - now)

    # --- the loop -----------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                timeout = self.prepare(self.step())
            except Exception:  # a bug here must not silently end scheduling
                logger.exception("scheduler pass failed; retrying in a second")
                timeout = 1.0
            if self._stopping:
                break
            self._clock.wait(self._wake, timeout)

    def _sleep_time(self, now: float) -> float | None:
        with self._lock:
            at = self._next_instant()
            if at is None:
                return self._max_sleep
            wait = max(0.0, at - now)
        return wait if self._max_sleep is None else min(wait, self._max_sleep)

    def _next_instant(self) -> float | None:
        """The earliest instant something fires at (prepared or in the heap). Lock held."""
        heap, buckets, slots = self._heap, self._buckets, self._slots
        while heap and not any(_is_live(heap[0], entry, slots) for entry in buckets[heap[0]]):
            self._pop_bucket()  # stale tops would cause idle wake-ups
        prepared = self._prepared
        if prepared is not None and (not heap or prepared.at < heap[0]):
            return prepared.at
        return heap[0] if heap else None

    def _pop_bucket(self) -> tuple[float, list[_Entry]]:
        at = heapq.heappop(self._heap)
        entries = self._buckets.pop(at)
        self._entries -= len(entries)
        return at, entries

    def _run_due(self, now: float) -> None:
        heap = self._heap
        if not heap or heap[0] > now:
            return
        with self._lock:
            heap, slots = self._heap, self._slots
            # Dispatch while popping; computing next instants (slow for cron) and
            # catching up come after, so they never delay a dispatch.
            on_time: list[_Slot] = []
            late: list[_Slot] = []
            batch: list[tuple[Job, float, str]] | None = [] if self._on_due_many else None
            while heap and heap[0] <= now:
                at, entries = self._pop_bucket()
                for entry in entries:
                    if not _is_live(at, entry, slots):
                        continue  # removed or rescheduled since
                    slot = slots[entry[0]]
                    if now - at <= slot.grace:
                        if batch is None:
                            self._fire(slot.job, at, Trigger.SCHEDULE)
                        else:
                            batch.append((slot.job, at, Trigger.SCHEDULE))
                        slot.last = at
                        on_time.append(slot)
                    else:
                        late.append(slot)
            if batch:
                self._fire_many(batch)
            for slot in late:
                self._catch_up(slot, now)
            for slot in on_time:
                assert slot.due is not None
                self._reschedule(slot, slot.due, now)

    # --- preparing ahead ----------------------------------------------------

    def _prepare(self, at: float) -> None:
        """Pop the bucket of ``at`` (the next instant, in the future), build its fires and
        move its jobs to their next instant. Lock held."""
        slots = self._slots
        fires: list[tuple[Job, float, str]] = []
        prepared: list[tuple[_Slot, float | None]] = []
        horizon = math.inf
        _, entries = self._pop_bucket()
        for entry in entries:
            if not _is_live(at, entry, slots):
                continue
            slot = slots[entry[0]]
            fires.append((slot.job, at, Trigger.SCHEDULE))
            prepared.append((slot, slot.last))
            slot.last = at
            self._reschedule(slot, at, at)
            if slot.due is not None and slot.due < horizon:
                horizon = slot.due
        if fires and self._prepare_many is not None and self._on_due_many is not None:
            try:
                fires = self._prepare_many(fires)
            except Exception:
                logger.exception("prepare_many failed for {} jobs; they are handed over unprepared", len(fires))
        self._prepared = _Prepared(at, self._version, fires, prepared, horizon)

    def _release(self, now: float) -> None:
        """Hand the prepared batch over once its instant has come."""
        prepared = self._prepared
        if prepared is None or now < prepared.at:
            return
        with self._lock:
            self._prepared = None
            if now - prepared.at > ON_TIME or now >= prepared.horizon:
                self._unprepare(prepared)  # a stall: the ordinary rules decide what is late
                return
            fires = prepared.fires
            if prepared.version != self._version:  # reloaded since: only the jobs still scheduled
                fires = [(slot.job, prepared.at, Trigger.SCHEDULE) for slot, _ in prepared.slots
                         if self._slots.get(slot.job.name) is slot]
            if self._on_due_many is not None:
                if fires:
                    self._fire_many(fires)
            else:
                for job, at, trigger in fires:
                    self._fire(job, at, trigger)

    def _unprepare(self, prepared: _Prepared) -> None:
        """Put the prepared jobs back at the prepared instant, unfired. Lock held."""
        for slot, last in prepared.slots:
            if self._slots.get(slot.job.name) is slot:
                slot.last = last
                self._set_due(slot, prepared.at)  # its entry at the next instant is now stale
        self._version += 1

    def _fire(self, job: Job, at: float, trigger: str) -> None:
        if self._stopping:
            return
        self._counts["fired"] += 1
        try:
            self._on_due(job, at, trigger)
        except Exception:
            logger.exception("on_due failed for job {!r}", job.name)

    def _fire_many(self, batch: list[tuple[Job, float, str]]) -> None:
        if self._stopping or self._on_due_many is None:
            return
        self._counts["fired"] += len(batch)
        try:
            self._on_due_many(batch)
        except Exception:
            logger.exception("on_due_many failed for {} jobs", len(batch))

    def _catch_up(self, slot: _Slot, now: float) -> None:
        """``slot`` is due later than its grace: record one missed run, maybe run one instant."""
        grace = slot.grace
        first = at = slot.due
        assert first is not None
        count = 0
        try:
            while at is not None and now - at > grace:
                count += 1
                slot.last = at
                floor = at if count < MISSED_COUNT_LIMIT else max(at, now - grace - 1.0)
                at = next_fire(slot.schedule, floor, slot.origin)
        except Exception:
            logger.exception("job {!r}: cannot compute its next fire time; it is no longer scheduled", slot.job.name)
            at = None
        more = "at least " if count >= MISSED_COUNT_LIMIT else ""
        logger.warning(
            "job {!r}: {}{} scheduled run(s) missed (more than {:g}s late), the first due at {}",
            slot.job.name,
            more,
            count,
            grace,
            datetime.fromtimestamp(first, UTC).isoformat(),
        )
        if not self._stopping:
            self._counts["missed"] += 1
            try:
                self._on_missed(slot.job, first)
            except Exception:
                logger.exception("on_missed failed for job {!r}", slot.job.name)
        if at is not None and at <= now:  # within the grace: run it once
            self._fire(slot.job, at, Trigger.SCHEDULE)
            slot.last = at
            self._reschedule(slot, at, now)
        else:
            self._set_due(slot, at)

    def _reschedule(self, slot: _Slot, after: float, now: float) -> None:
        """Schedule the instant following ``after``; skip to the future if it has passed too."""
        try:
            at = next_fire(slot.schedule, after, slot.origin)
            if at is not None and at <= now:
                logger.debug("job {!r} is running late: instants up to now are folded into this run", slot.job.name)
                at = next_fire(slot.schedule, now, slot.origin)
        except Exception:
            logger.exception("job {!r}: cannot compute its next fire time; it is no longer scheduled", slot.job.name)
            at = None
        self._set_due(slot, at)

    def _first_due(self, slot: _Slot, now: float) -> float | None:
        """First instant of a new or changed job; @every is anchored on the whole second (robfig)."""
        if slot.schedule.kind == "every":
            slot.origin = float(math.floor(now))
        try:
            return next_fire(slot.schedule, now, slot.origin)
        except Exception:
            logger.exception("job {!r}: cannot compute its next fire time; it is not scheduled", slot.job.name)
            return None

    def _set_due(self, slot: _Slot, at: float | None) -> None:
        slot.due = at
        if at is not None:
            bucket = self._buckets.get(at)
            if bucket is None:
                self._buckets[at] = bucket = []
                heapq.heappush(self._heap, at)
            bucket.append((slot.job.name, slot.generation))
            self._entries += 1

    def _rebuild_heap(self) -> None:
        self._heap, self._buckets, self._entries = [], {}, 0
        for slot in self._slots.values():
            self._set_due(slot, slot.due)

    # --- wall-clock jumps ---------------------------------------------------

    def _check_jump(self, wall: float, mono: float) -> None:
        reference, self._reference = self._reference, (wall, mono)
        if reference is None:
            return
        skew = (wall - reference[0]) - (mono - reference[1])
        if abs(skew) <= self._jump_threshold:
            return
        self._counts["jumps"] += 1
        with self._lock:
            prepared, self._prepared = self._prepared, None
            if prepared is not None:
                self._unprepare(prepared)
        if skew > 0:
            logger.warning("wall clock jumped forward by {:.1f}s; runs it skipped are handled as late", skew)
            return
        logger.warning("wall clock jumped back by {:.1f}s; rescheduling every job from the new time", -skew)
        self._rebase(wall, skew)

    def _rebase(self, wall: float, skew: float) -> None:
        shift = float(round(skew))
        with self._lock:
            for slot in self._slots.values():
                if slot.due is None:
                    continue
                if slot.origin is not None:  # @every: keep the real-time spacing
                    slot.due += shift
                    slot.origin += shift
                    continue
                after = wall if slot.last is None else max(wall, slot.last)
                try:
                    slot.due = next_fire(slot.schedule, after)
                except Exception:
                    logger.exception(
                        "job {!r}: cannot compute its next fire time; it is no longer scheduled", slot.job.name
                    )
                    slot.due = None
            self._rebuild_heap()
            self._version += 1


def _is_live(at: float, entry: _Entry, slots: Mapping[str, _Slot]) -> bool:
    slot = slots.get(entry[0])
    return slot is not None and slot.generation == entry[1] and slot.due == at
