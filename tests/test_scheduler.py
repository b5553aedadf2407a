"""The scheduler's timing core: fire instants, missed runs, clock jumps, reloads, the thread.

Most tests drive ``Scheduler.step()`` with :class:`ManualClock`, a test double
whose time moves only when the test says so; a few run the real thread.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from loguru import logger
from ofelia_hookspecs.types import JobTypeSpec

from ofelia_core.config.schedule import Schedule, next_fire_times, parse_schedule
from ofelia_core.jobs import Job
from ofelia_core.runs import Trigger
from ofelia_core.scheduler import core, timetable
from ofelia_core.scheduler.clock import SystemClock
from ofelia_core.scheduler.core import Scheduler
from ofelia_core.scheduler.timetable import next_fire

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a whole hour
BERLIN = ZoneInfo("Europe/Berlin")
_SPEC = JobTypeSpec("job-local", ())


class ManualClock:
    """Test double for the Clock protocol: time moves only through advance()/jump().

    ``wait`` returns when the event is set or when the test has advanced the
    monotonic time past the timeout; every requested timeout is recorded.
    """

    def __init__(self, start: float = T0) -> None:
        self.wall = start
        self.mono = 5_000.0
        self.waits: list[float | None] = []
        self._changed = threading.Condition()

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        with self._changed:
            self.wall += seconds
            self.mono += seconds
            self._changed.notify_all()

    def jump(self, seconds: float) -> None:
        """Move the wall clock only (an NTP step or a manual change)."""
        with self._changed:
            self.wall += seconds
            self._changed.notify_all()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        self.waits.append(timeout)
        deadline = None if timeout is None else self.mono + timeout
        with self._changed:
            while not event.is_set() and (deadline is None or self.mono < deadline):
                self._changed.wait(0.005)  # event.set() does not notify this condition
        return event.is_set()


def make_job(name: str, spec: str, *, grace: float = 60.0, startup: bool = False) -> Job:
    options = {"schedule": spec, "missed-run-grace": grace, "run-on-startup": startup}
    return Job(name, "job-local", options, parse_schedule(spec)[0], _SPEC)


class Recorder:
    def __init__(self) -> None:
        self.due: list[tuple[str, float, str]] = []
        self.missed: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def on_due(self, job: Job, at: float, trigger: str) -> None:
        with self.lock:
            self.due.append((job.name, at, trigger))

    def on_missed(self, job: Job, at: float) -> None:
        with self.lock:
            self.missed.append((job.name, at))

    def times(self, name: str) -> list[float]:
        with self.lock:
            return [at for job, at, _ in self.due if job == name]


def scheduler(clock: ManualClock, recorder: Recorder, *jobs: Job, **kwargs: Any) -> Scheduler:
    sched = Scheduler(recorder.on_due, recorder.on_missed, clock=clock, **kwargs)
    sched.set_jobs({job.name: job for job in jobs})
    return sched


def run_until(sched: Scheduler, clock: ManualClock, end: float, *, ahead: bool = True) -> None:
    """Play the thread's loop until ``end``: step, prepare the next instant when it is near
    (``ahead``; without it, every pass is an ordinary one), sleep what it asks for."""
    while True:
        sleep = sched.step()
        if ahead:
            sleep = sched.prepare(sleep)
        if clock.wall >= end:
            return
        target = end if sleep is None else min(end, clock.wall + sleep)
        clock.advance(max(target - clock.wall, 0.0))


@pytest.fixture
def log_messages() -> Iterator[list[str]]:
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="DEBUG")
    yield messages
    logger.remove(sink)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


# --- timetable --------------------------------------------------------------------


def test_next_fire_every_is_origin_plus_whole_intervals() -> None:
    every = parse_schedule("@every 10s")[0]
    assert next_fire(every, T0) == T0 + 10
    assert next_fire(every, T0 + 3, origin=T0) == T0 + 10
    assert next_fire(every, T0 + 10, origin=T0) == T0 + 20  # strictly after
    assert next_fire(every, T0 + 12345.5, origin=T0) == T0 + 12350


def test_next_fire_every_sub_second_interval_does_not_accumulate_error() -> None:
    every = parse_schedule("@every 100ms")[0]
    at = T0
    for _ in range(10_000):
        at = next_fire(every, at, origin=T0)  # type: ignore[assignment]
    assert at == T0 + 10_000 * 0.1


@pytest.mark.parametrize("spec", ["@manual", "@none", "@triggered"])
def test_next_fire_none_for_schedules_that_do_not_fire_by_time(spec: str) -> None:
    assert next_fire(parse_schedule(spec)[0], T0) is None


@pytest.mark.parametrize("spec", ["CRON_TZ=Europe/Berlin 30 2 * * *", "CRON_TZ=UTC */7 * * * *", "*/13 * * * * *"])
def test_next_fire_cron_matches_next_fire_times(spec: str) -> None:
    schedule = parse_schedule(spec)[0]
    start = datetime(2026, 3, 27, tzinfo=UTC)
    expected = [t.timestamp() for t in next_fire_times(schedule, start, 40)]
    got, at = [], start.timestamp()
    for _ in range(40):
        at = next_fire(schedule, at)  # type: ignore[assignment]
        got.append(at)
    assert got == expected
    # A query inside an already computed batch, and one before it.
    assert next_fire(schedule, expected[3] - 0.5) == expected[3]
    assert next_fire(schedule, start.timestamp()) == expected[0]


# --- firing -----------------------------------------------------------------------


def test_every_first_fire_is_one_interval_after_start_on_the_whole_second() -> None:
    clock, rec = ManualClock(T0 + 0.25), Recorder()
    sched = scheduler(clock, rec, make_job("a", "@every 1m"))
    assert sched.next_fires() == {"a": T0 + 60}
    run_until(sched, clock, T0 + 180)
    assert rec.due == [("a", T0 + 60, Trigger.SCHEDULE), ("a", T0 + 120, Trigger.SCHEDULE), ("a", T0 + 180, "schedule")]


def test_no_drift_with_a_slow_callback() -> None:
    clock, rec = ManualClock(), Recorder()

    def slow(job: Job, at: float, trigger: str) -> None:
        rec.on_due(job, at, trigger)
        clock.advance(0.3)  # the callback takes 300 ms

    sched = Scheduler(slow, rec.on_missed, clock=clock)
    sched.set_jobs({"a": make_job("a", "@every 1s")})
    run_until(sched, clock, T0 + 1000.5)
    assert rec.times("a") == [T0 + k for k in range(1, 1001)]
    assert rec.missed == []


def test_cron_fires_at_its_instants() -> None:
    clock, rec = ManualClock(T0 + 7 * 60), Recorder()
    sched = scheduler(clock, rec, make_job("q", "CRON_TZ=UTC */15 * * * *"), make_job("s", "*/20 * * * * *"))
    run_until(sched, clock, T0 + 3600)
    assert rec.times("q") == [T0 + 15 * 60, T0 + 30 * 60, T0 + 45 * 60, T0 + 3600]
    assert rec.times("s") == [T0 + 7 * 60 + 20 * k for k in range(1, 3 * 53 + 1)]


def test_all_jobs_due_in_the_same_second_are_dispatched_in_one_pass() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, *(make_job(f"j{i}", "@every 1s") for i in range(1000)))
    clock.advance(1.0)
    sched.step()
    assert len(rec.due) == 1000
    assert {at for _, at, _ in rec.due} == {T0 + 1}


def local(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp()


def test_dst_spring_forward_fires_once_at_three() -> None:
    clock, rec = ManualClock(local(2026, 3, 28, 12, 0)), Recorder()
    sched = scheduler(clock, rec, make_job("d", "CRON_TZ=Europe/Berlin 30 2 * * *"))
    run_until(sched, clock, local(2026, 3, 30, 12, 0))
    fires = [datetime.fromtimestamp(at, BERLIN) for at in rec.times("d")]
    assert [(f.day, f.hour, f.minute) for f in fires] == [(29, 3, 0), (30, 2, 30)]
    assert rec.times("d")[0] == datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()


def test_dst_fall_back_fires_once_in_the_repeated_hour() -> None:
    clock, rec = ManualClock(local(2026, 10, 24, 12, 0)), Recorder()
    sched = scheduler(clock, rec, make_job("d", "CRON_TZ=Europe/Berlin 30 2 * * *"))
    run_until(sched, clock, local(2026, 10, 26, 12, 0))
    assert rec.times("d") == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp(),  # 02:30 CEST, the first pass
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC).timestamp(),  # 02:30 CET the next day
    ]


@pytest.mark.parametrize("spec", ["@manual", "@none", "@triggered"])
def test_manual_and_triggered_never_fire(spec: str) -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("m", spec))
    assert sched.next_fires() == {"m": None}
    run_until(sched, clock, T0 + 2 * 86400)
    assert rec.due == [] and rec.missed == []


# --- late and missed runs -----------------------------------------------------------


def test_late_within_grace_runs_once_and_resumes_on_phase() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("a", "@every 10s", grace=60))
    clock.advance(40)  # due at +10; +20, +30 and +40 have passed too
    sched.step()
    assert rec.due == [("a", T0 + 10, "schedule")]
    assert rec.missed == []
    assert sched.next_fires() == {"a": T0 + 50}


def test_later_than_grace_records_one_missed_run_and_reschedules(log_messages: list[str]) -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("h", "@every 1h", grace=60))
    clock.advance(3 * 3600 + 1800)  # the host slept: +1h, +2h and +3h all passed, long ago
    sched.step()
    assert rec.missed == [("h", T0 + 3600)]
    assert rec.due == []
    assert sched.next_fires() == {"h": T0 + 4 * 3600}
    assert any("3 scheduled run(s) missed" in m for m in log_messages)
    assert sched.stats()["missed"] == 1


def test_missed_runs_then_the_instant_within_grace_runs_once(log_messages: list[str]) -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("m", "@every 1m", grace=60))
    clock.advance(3600 + 30)  # slept an hour: +60 ... +3540 are missed, +3600 is 30 s late
    sched.step()
    assert rec.missed == [("m", T0 + 60)]
    assert rec.due == [("m", T0 + 3600, "schedule")]
    assert sched.next_fires() == {"m": T0 + 3660}
    assert any("59 scheduled run(s) missed" in m for m in log_messages)


def test_missed_cron_run_with_many_instants_is_one_record() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("c", "*/1 * * * * *", grace=5))
    clock.advance(2 * 86400)  # far more instants than the count limit
    sched.step()
    assert rec.missed == [("c", T0 + 1)]
    assert rec.due == [("c", T0 + 2 * 86400 - 5, "schedule")]
    assert sched.next_fires() == {"c": T0 + 2 * 86400 + 1}


def test_tiny_lateness_is_never_missed_even_with_zero_grace() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("z", "@every 10s", grace=0))
    clock.advance(10.2)
    sched.step()
    assert rec.due == [("z", T0 + 10, "schedule")]


# --- wall-clock jumps -----------------------------------------------------------------


def test_forward_jump_is_logged_and_skipped_runs_are_missed(log_messages: list[str]) -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("a", "@every 1m", grace=60))
    sched.step()
    clock.jump(7200 + 90)
    sched.step()
    assert sched.stats()["jumps"] == 1
    assert any("jumped forward by 7290.0s" in m for m in log_messages)
    assert rec.missed == [("a", T0 + 60)]
    assert rec.due == [("a", T0 + 7260, "schedule")]  # the last instant, 30 s late
    assert sched.next_fires()["a"] == T0 + 7320


def test_small_forward_jump_runs_the_late_instant_once() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("a", "@every 1m", grace=60))
    clock.advance(55)
    sched.step()
    clock.jump(20)  # +60 passes by the jump: 15 s late
    sched.step()
    assert sched.stats()["jumps"] == 1
    assert rec.due == [("a", T0 + 60, "schedule")] and rec.missed == []


def test_drift_below_threshold_is_not_a_jump() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("a", "@every 1m"), jump_threshold=5.0)
    sched.step()
    clock.jump(-3)
    clock.advance(10)
    sched.step()
    assert sched.stats()["jumps"] == 0
    assert sched.next_fires() == {"a": T0 + 60}


def test_backward_jump_every_keeps_real_time_spacing(log_messages: list[str]) -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("a", "@every 1m"))
    clock.advance(30)
    sched.step()
    clock.jump(-3600)
    sleep = sched.step()
    assert any("jumped back by 3600.0s" in m for m in log_messages)
    assert sched.next_fires() == {"a": T0 + 60 - 3600}
    assert sleep == 30  # not an hour and a half
    run_until(sched, clock, clock.wall + 90)
    assert rec.times("a") == [T0 + 60 - 3600, T0 + 120 - 3600]
    assert rec.missed == []


def test_backward_jump_cron_never_refires_an_instant() -> None:
    clock, rec = ManualClock(T0 - 30), Recorder()
    sched = scheduler(clock, rec, make_job("c", "CRON_TZ=UTC 0 * * * *"))
    run_until(sched, clock, T0 + 30)
    assert rec.times("c") == [T0]
    clock.jump(-1800)  # back to 07:30:30: 08:00 is ahead again on the wall clock
    sched.step()
    assert sched.next_fires() == {"c": T0 + 3600}
    run_until(sched, clock, T0 + 3600)
    assert rec.times("c") == [T0, T0 + 3600]


def test_backward_jump_cron_takes_its_next_wall_instant() -> None:
    clock, rec = ManualClock(T0 + 600), Recorder()
    sched = scheduler(clock, rec, make_job("c", "CRON_TZ=UTC 0 * * * *"))
    sched.step()
    assert sched.next_fires() == {"c": T0 + 3600}
    clock.jump(-3600)  # 07:10: it has never run, so 08:00 is next
    sched.step()
    assert sched.next_fires() == {"c": T0}


# --- reloads ---------------------------------------------------------------------------


def test_set_jobs_keeps_replaces_adds_and_removes() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(
        clock, rec, make_job("keep", "@every 1m"), make_job("change", "@every 1m"), make_job("drop", "@every 1m")
    )
    clock.advance(45)
    sched.step()
    sched.set_jobs(
        {
            "keep": make_job("keep", "@every 1m"),  # equal identity, a new object
            "change": make_job("change", "@every 2m"),
            "new": make_job("new", "@every 30s"),
        }
    )
    assert sched.next_fires() == {"keep": T0 + 60, "change": T0 + 45 + 120, "new": T0 + 45 + 30}
    run_until(sched, clock, T0 + 200)
    assert rec.times("keep") == [T0 + 60, T0 + 120, T0 + 180]
    assert rec.times("change") == [T0 + 165]
    assert rec.times("new") == [T0 + 75, T0 + 105, T0 + 135, T0 + 165, T0 + 195]
    assert rec.times("drop") == []
    assert sched.stats()["jobs"] == 3


def test_changed_options_other_than_schedule_reschedule_from_now() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("a", "@every 1m", grace=60))
    clock.advance(45)
    sched.step()
    sched.set_jobs({"a": make_job("a", "@every 1m", grace=30)})
    assert sched.next_fires() == {"a": T0 + 105}


def test_many_reloads_keep_the_heap_small() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec)
    for i in range(300):
        sched.set_jobs({f"j{k}": make_job(f"j{k}", f"@every {i + 1}m") for k in range(10)})
    assert len(sched._heap) <= 2 * 10 + 64


# --- failures -----------------------------------------------------------------------------


def test_job_whose_schedule_cannot_be_computed_is_dropped(log_messages: list[str]) -> None:
    clock, rec = ManualClock(), Recorder()
    bogus = Schedule("cron", "x y z", ("x", "y", "z", "w", "v"))
    bad = Job("bad", "job-local", {"schedule": "x y z"}, bogus, _SPEC)
    sched = scheduler(clock, rec, bad, make_job("ok", "@every 1s"))
    assert sched.next_fires() == {"bad": None, "ok": T0 + 1}
    assert any("'bad'" in m and "not scheduled" in m for m in log_messages)
    run_until(sched, clock, T0 + 3)
    assert rec.times("ok") == [T0 + 1, T0 + 2, T0 + 3]


def test_job_whose_next_fire_starts_raising_is_dropped_others_keep_firing(
    monkeypatch: pytest.MonkeyPatch, log_messages: list[str]
) -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("flaky", "@every 1000ms"), make_job("ok", "@every 1s"))
    real = timetable.next_fire

    def failing(schedule: Schedule, after: float, origin: float | None = None) -> float | None:
        if schedule.spec == "@every 1000ms" and after >= T0 + 2:
            raise RuntimeError("boom")
        return real(schedule, after, origin)

    monkeypatch.setattr(core, "next_fire", failing)
    run_until(sched, clock, T0 + 5)
    assert rec.times("flaky") == [T0 + 1, T0 + 2]
    assert rec.times("ok") == [T0 + k for k in range(1, 6)]
    assert sched.next_fires()["flaky"] is None
    assert any("'flaky'" in m and "no longer scheduled" in m for m in log_messages)


def test_callbacks_that_raise_do_not_stop_the_loop(log_messages: list[str]) -> None:
    clock = ManualClock()
    calls: list[float] = []

    def bad_due(job: Job, at: float, trigger: str) -> None:
        calls.append(at)
        raise ValueError("dispatcher down")

    def bad_missed(job: Job, at: float) -> None:
        raise ValueError("history down")

    sched = Scheduler(bad_due, bad_missed, clock=clock)
    sched.set_jobs({"a": make_job("a", "@every 10s", grace=5)})
    run_until(sched, clock, T0 + 30)
    clock.advance(300)
    sched.step()
    run_until(sched, clock, T0 + 350)
    assert calls == [T0 + 10, T0 + 20, T0 + 30, T0 + 330, T0 + 340, T0 + 350]  # +330: within grace
    assert any("on_due failed for job 'a'" in m for m in log_messages)
    assert any("on_missed failed for job 'a'" in m for m in log_messages)


# --- the thread ------------------------------------------------------------------------------


def test_loop_sleeps_until_the_next_due_instant() -> None:
    clock, rec = ManualClock(T0 + 10), Recorder()
    sched = scheduler(clock, rec, *(make_job(f"h{i}", "CRON_TZ=UTC @hourly") for i in range(1000)), max_sleep=None)
    assert sched.step() == 3600 - 10
    capped = scheduler(clock, rec, make_job("h", "CRON_TZ=UTC @hourly"))
    assert capped.step() == 60.0  # max_sleep bounds how long a clock jump goes unnoticed
    assert scheduler(clock, rec, make_job("m", "@manual"), max_sleep=None).step() is None


def test_thread_sleeps_wakes_on_reload_and_stops() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("boot", "@manual", startup=True), make_job("a", "@every 1h"))
    sched.start()
    try:
        wait_for(lambda: bool(clock.waits) and clock.waits[-1] == 60.0)
        sched.set_jobs({"a": make_job("a", "@every 1h"), "b": make_job("b", "@every 5s")})
        # Woken by the reload, now sleeping until b is due (less the time its batch is prepared ahead).
        wait_for(lambda: clock.waits[-1] == pytest.approx(5.0 - core.PREPARE_AHEAD))
        clock.advance(5)
        wait_for(lambda: rec.times("b") == [T0 + 5])
    finally:
        sched.stop()
    assert not any(t.name == "ofelia-scheduler" and t.is_alive() for t in threading.enumerate())
    clock.advance(3600)
    time.sleep(0.05)
    assert rec.times("b") == [T0 + 5] and rec.times("a") == []
    assert rec.times("boot") == []  # run-on-startup is the daemon's, not a scheduled run
    sched.stop()  # idempotent
    with pytest.raises(RuntimeError):
        sched.start()


@pytest.mark.slow
def test_real_time_smoke() -> None:
    rec = Recorder()
    jobs = [make_job(f"e{i}", "@every 1s") for i in range(3)] + [make_job("c", "*/1 * * * * *")]
    sched = Scheduler(rec.on_due, rec.on_missed, clock=SystemClock())
    sched.set_jobs({job.name: job for job in jobs})
    sched.start()
    time.sleep(3.2)
    sched.stop()
    assert rec.missed == []
    for job in jobs:
        times = rec.times(job.name)
        assert len(times) >= 2, job.name
        assert all(at.is_integer() for at in times), times  # whole seconds: @every is anchored there
        # No drift: whole seconds apart (1 s unless a pass under heavy load was over a second late).
        assert all((b - a).is_integer() and b > a for a, b in itertools.pairwise(times)), times


@pytest.mark.slow
def test_idle_thread_does_not_poll() -> None:
    rec = Recorder()
    sched = Scheduler(rec.on_due, rec.on_missed, clock=SystemClock())
    sched.set_jobs({f"h{i}": make_job(f"h{i}", "@hourly") for i in range(100)})
    sched.start()
    time.sleep(1.0)
    sched.stop()
    # One pass at start, one for stop, maybe one if an hour begins meanwhile.
    assert sched.stats()["wakeups"] <= 4


def test_on_due_many_receives_every_fire_of_a_pass_in_one_call() -> None:
    clock = ManualClock()
    rec = Recorder()
    batches: list[list[tuple[Job, float, str]]] = []
    sched = scheduler(clock, rec, *(make_job(f"j{i}", "@every 1s") for i in range(50)),
                      make_job("late", "@every 1s", grace=0.5), on_due_many=batches.append)
    clock.advance(1.0)
    sched.step()
    assert len(batches) == 1
    assert sorted(job.name for job, _, _ in batches[0]) == sorted([f"j{i}" for i in range(50)] + ["late"])
    assert {at for _, at, _ in batches[0]} == {batches[0][0][1]}
    assert rec.due == []  # on_due is not used when on_due_many is given


# --- preparing a pass ahead of its instant ---------------------------------------------------


class Handoffs:
    """on_due_many and prepare_many that record what they get, and when."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.prepared: list[tuple[float, list[tuple[Job, float, str]]]] = []
        self.batches: list[tuple[float, list[tuple[Job, float, str]]]] = []

    def prepare_many(self, fires: list[tuple[Job, float, str]]) -> list[tuple[Job, float, str]]:
        ready = list(fires)
        self.prepared.append((self.clock.wall, ready))
        return ready

    def on_due_many(self, fires: list[tuple[Job, float, str]]) -> None:
        self.batches.append((self.clock.wall, fires))

    def names(self, index: int) -> list[str]:
        return [job.name for job, _, _ in self.batches[index][1]]


def prepared_scheduler(clock: ManualClock, rec: Recorder, *jobs: Job) -> tuple[Scheduler, Handoffs]:
    hand = Handoffs(clock)
    sched = scheduler(clock, rec, *jobs, on_due_many=hand.on_due_many, prepare_many=hand.prepare_many)
    return sched, hand


def prepare_before(sched: Scheduler, clock: ManualClock, at: float) -> None:
    """Bring the clock to just before ``at`` and let the loop prepare it."""
    clock.advance(at - core.PREPARE_AHEAD / 2 - clock.wall)
    assert sched.prepare(sched.step()) == pytest.approx(core.PREPARE_AHEAD / 2, abs=1e-6)


def test_batch_is_prepared_ahead_and_handed_over_at_its_instant_never_before() -> None:
    clock, rec = ManualClock(), Recorder()
    sched, hand = prepared_scheduler(clock, rec, *(make_job(f"j{i}", "@every 1s") for i in range(1000)))
    run_until(sched, clock, T0 + 3.5)
    assert [at for _, batch in hand.batches for at in {at for _, at, _ in batch}] == [T0 + 1, T0 + 2, T0 + 3]
    for (prepared_at, ready), (handed_at, batch) in zip(hand.prepared, hand.batches, strict=True):
        instant = batch[0][1]
        assert instant - core.PREPARE_AHEAD <= prepared_at < instant <= handed_at
        assert batch is ready  # what prepare_many returned is what on_due_many gets
        assert len(batch) == 1000
    assert rec.due == [] and sched.stats()["fired"] == 3000


def test_next_fires_reports_a_prepared_instant_until_it_fires() -> None:
    clock, rec = ManualClock(), Recorder()
    sched, hand = prepared_scheduler(clock, rec, make_job("a", "@every 1s"))
    prepare_before(sched, clock, T0 + 1)
    assert len(hand.prepared) == 1 and hand.batches == []
    assert sched.next_fires() == {"a": T0 + 1}
    clock.advance(core.PREPARE_AHEAD)
    sched.step()
    assert hand.names(0) == ["a"]
    assert sched.next_fires() == {"a": T0 + 2}


def test_reload_between_prepare_and_instant_fires_only_what_is_still_scheduled() -> None:
    clock, rec = ManualClock(), Recorder()
    jobs = [make_job("keep", "@every 1s"), make_job("change", "@every 1s"), make_job("drop", "@every 1s")]
    sched, hand = prepared_scheduler(clock, rec, *jobs)
    prepare_before(sched, clock, T0 + 1)
    keep = make_job("keep", "@every 1s")  # equal identity, a new object
    sched.set_jobs({"keep": keep, "change": make_job("change", "@every 2s")})
    assert sched.next_fires() == {"keep": T0 + 1, "change": T0 + 2}
    run_until(sched, clock, T0 + 2.5)
    assert hand.names(0) == ["keep"] and hand.batches[0][1][0][0] is keep
    assert [(b[0][1], sorted(j.name for j, _, _ in b)) for _, b in hand.batches] == [
        (T0 + 1, ["keep"]), (T0 + 2, ["change", "keep"])]


def test_reload_between_prepare_and_instant_can_add_an_earlier_instant() -> None:
    clock, rec = ManualClock(T0 + 0.5), Recorder()
    sched, hand = prepared_scheduler(clock, rec, make_job("slow", "@every 1s"))
    prepare_before(sched, clock, T0 + 1)  # @every anchors on T0: due at T0 + 1
    sched.set_jobs({"slow": make_job("slow", "@every 1s"), "fast": make_job("fast", "@every 10ms")})
    run_until(sched, clock, T0 + 1.015)
    fires = [(at, job.name) for handed, batch in hand.batches for job, at, _ in batch if at <= handed]
    assert len(fires) == sum(len(batch) for _, batch in hand.batches)  # nothing handed over early
    assert [name for _, name in fires] == ["fast", "fast", "slow", "fast", "fast"]
    assert [at for at, _ in fires] == sorted(at for at, _ in fires)
    assert fires[2][0] == T0 + 1 and fires[0][0] == pytest.approx(T0 + 0.98, abs=1e-6)


def test_forward_jump_after_prepare_goes_through_the_missed_run_rules(log_messages: list[str]) -> None:
    clock, rec = ManualClock(), Recorder()
    sched, hand = prepared_scheduler(clock, rec, make_job("a", "@every 1m", grace=60))
    prepare_before(sched, clock, T0 + 60)
    clock.jump(7200 + 90)  # T0 + 60, T0 + 120, ... passed in the jump; T0 + 7320 is 30 s late
    sched.step()
    assert any("jumped forward" in m for m in log_messages)
    assert rec.missed == [("a", T0 + 60)]
    assert hand.batches == []  # the instant within the grace runs as a caught-up one, through on_due
    assert rec.due == [("a", T0 + 7320, "schedule")]
    assert sched.next_fires() == {"a": T0 + 7380}


def test_backward_jump_after_prepare_moves_the_prepared_instant_back() -> None:
    clock, rec = ManualClock(), Recorder()
    sched, hand = prepared_scheduler(clock, rec, make_job("a", "@every 1m"))
    prepare_before(sched, clock, T0 + 60)
    clock.jump(-3600)
    sched.step()
    assert hand.batches == []
    assert sched.next_fires() == {"a": T0 + 60 - 3600}
    run_until(sched, clock, T0 + 120 - 3600)
    assert [b[0][1] for _, b in hand.batches] == [T0 + 60 - 3600, T0 + 120 - 3600]
    assert rec.missed == []


def test_prepared_instant_released_more_than_a_second_late_follows_the_grace_rules() -> None:
    clock, rec = ManualClock(), Recorder()
    sched, hand = prepared_scheduler(clock, rec, make_job("a", "@every 1s", grace=0))
    prepare_before(sched, clock, T0 + 1)
    clock.advance(2.5)  # the thread was stalled: T0 + 1 and T0 + 2 are more than a second late
    sched.step()
    assert rec.missed == [("a", T0 + 1)]
    assert hand.batches == [] and rec.due == [("a", T0 + 3, "schedule")]
    assert sched.next_fires() == {"a": T0 + 4}


def test_stop_after_prepare_hands_nothing_over() -> None:
    clock, rec = ManualClock(), Recorder()
    sched, hand = prepared_scheduler(clock, rec, make_job("a", "@every 1s"))
    prepare_before(sched, clock, T0 + 1)
    sched.stop()
    clock.advance(1)
    sched.step()
    assert hand.batches == [] and rec.due == []


def test_prepare_many_that_raises_hands_the_fires_over_unprepared(log_messages: list[str]) -> None:
    clock, rec = ManualClock(), Recorder()
    batches: list[list[tuple[Job, float, str]]] = []

    def broken(fires: list[tuple[Job, float, str]]) -> list[tuple[Job, float, str]]:
        raise RuntimeError("boom")

    sched = scheduler(clock, rec, make_job("a", "@every 1s"), make_job("b", "@every 1s"),
                      on_due_many=batches.append, prepare_many=broken)
    run_until(sched, clock, T0 + 1)
    assert [sorted(job.name for job, _, _ in b) for b in batches] == [["a", "b"]]
    assert any("prepare_many failed for 2 jobs" in m for m in log_messages)


def test_prepared_fires_go_through_on_due_without_on_due_many() -> None:
    clock, rec = ManualClock(), Recorder()
    sched = scheduler(clock, rec, make_job("a", "@every 1s"), make_job("b", "@every 2s"))
    run_until(sched, clock, T0 + 4)
    assert rec.times("a") == [T0 + 1, T0 + 2, T0 + 3, T0 + 4]
    assert rec.times("b") == [T0 + 2, T0 + 4]


def test_preparing_ahead_changes_no_fire() -> None:
    """The same jobs, reloads and clock jumps, with and without preparing ahead: the same fires."""

    def play(ahead: bool) -> tuple[list[tuple[str, float, str]], list[tuple[str, float]]]:
        clock, rec = ManualClock(T0 - 3.3), Recorder()
        jobs = [make_job("e1", "@every 1s"), make_job("e7", "@every 7s", grace=2), make_job("c", "*/20 * * * * *"),
                make_job("h", "CRON_TZ=UTC @hourly"), make_job("ms", "@every 250ms")]

        def on_due_many(fires: list[tuple[Job, float, str]]) -> None:
            for fire in fires:
                rec.on_due(*fire)

        sched = scheduler(clock, rec, *jobs, on_due_many=on_due_many)
        # Each change comes 20 ms before an instant: while it is prepared, when preparing ahead.
        run_until(sched, clock, T0 + 29.98, ahead=ahead)
        sched.set_jobs({job.name: job for job in jobs[:3]} | {"n": make_job("n", "@every 3s")})
        run_until(sched, clock, T0 + 60.98, ahead=ahead)
        clock.jump(-30)
        run_until(sched, clock, T0 + 64.98, ahead=ahead)
        clock.jump(45)
        run_until(sched, clock, T0 + 3700, ahead=ahead)
        assert sched.stats()["jumps"] == 2
        return rec.due, rec.missed

    due, missed = play(ahead=True)
    assert len(due) > 3000 and missed
    assert (due, missed) == play(ahead=False)
