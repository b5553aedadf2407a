import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ofelia_core.config.schedule import Schedule, ScheduleError, next_fire_times, parse_schedule

BERLIN = ZoneInfo("Europe/Berlin")


def parse(spec: str, timezone: str | None = None) -> Schedule:
    schedule, _ = parse_schedule(spec, timezone=timezone)
    return schedule


def utc_times(spec: str, start: datetime, n: int, timezone: str | None = "Europe/Berlin") -> list[datetime]:
    # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time, ignoring fold.
    return [t.astimezone(UTC) for t in next_fire_times(parse(spec, timezone), start, n)]


# --- parsing ----------------------------------------------------------------------


def test_five_and_six_fields() -> None:
    five = parse("*/5 * * * *")
    assert (five.kind, five.fields, five.seconds) == ("cron", ("*/5", "*", "*", "*", "*"), False)
    six = parse("30 0 3 * * *")
    assert (six.kind, six.seconds, six.fields[0]) == ("cron", True, "30")


def test_six_fields_have_leading_seconds() -> None:
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    times = next_fire_times(parse("30 * * * * *", "UTC"), start, 2)
    assert times == [datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC), datetime(2026, 1, 1, 12, 1, 30, tzinfo=UTC)]


def test_seven_fields_rejected() -> None:
    with pytest.raises(ScheduleError, match="7 fields"):
        parse_schedule("0 0 0 * * * 2026")


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_rejected(spec: str) -> None:
    with pytest.raises(ScheduleError, match="empty"):
        parse_schedule(spec)


def test_wrong_field_count_rejected() -> None:
    with pytest.raises(ScheduleError, match="3 field"):
        parse_schedule("* * *")


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_descriptors_map_to_cron(spec: str, fields: str) -> None:
    schedule = parse(spec)
    assert schedule.kind == "cron"
    assert schedule.expression == fields
    assert schedule.spec == spec


@pytest.mark.parametrize(("spec", "seconds"), [("@every 10s", 10.0), ("@every 500ms", 0.5), ("@every 1h30m", 5400.0)])
def test_every(spec: str, seconds: float) -> None:
    schedule = parse(spec)
    assert (schedule.kind, schedule.interval) == ("every", seconds)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("@every", "needs a duration"),
        ("@every 0s", "greater than zero"),
        ("@every -5s", "greater than zero"),
        ("@every 10", "did you mean '10s'"),
        ("@hourlyy", "did you mean '@hourly'"),
        ("@daily now", "takes nothing"),
    ],
)
def test_bad_descriptors(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(spec)


@pytest.mark.parametrize(("spec", "kind"), [("@manual", "manual"), ("@none", "manual"), ("@triggered", "triggered")])
def test_manual_and_triggered_never_fire_by_time(spec: str, kind: str) -> None:
    schedule = parse(spec)
    assert schedule.kind == kind
    assert not schedule.fires_by_time
    assert next_fire_times(schedule, datetime(2026, 1, 1, tzinfo=UTC), 5) == []


def test_zone_prefixes() -> None:
    assert parse("CRON_TZ=Europe/Berlin 0 3 * * *").timezone == "Europe/Berlin"
    tz = parse("TZ=America/New_York @daily")
    assert (tz.timezone, tz.expression) == ("America/New_York", "0 0 * * *")
    assert parse("TZ=Local @daily").timezone is None


def test_prefix_zone_is_used_for_fire_times() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = next_fire_times(parse("CRON_TZ=America/New_York 0 3 * * *"), start, 1)
    assert times[0].astimezone(UTC) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)  # 03:00 EST


def test_bad_zone_is_an_error_with_suggestion() -> None:
    with pytest.raises(ScheduleError, match="did you mean 'Europe/Berlin'"):
        parse_schedule("CRON_TZ=Europe/Berln 0 3 * * *")
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Base'"):
        parse_schedule("0 3 * * *", timezone="Mars/Base")
    with pytest.raises(ScheduleError, match="must follow the zone"):
        parse_schedule("TZ=Europe/Berlin")


def test_timezone_key_overrides_prefix_with_warning() -> None:
    schedule, warnings = parse_schedule("CRON_TZ=Europe/Berlin 0 3 * * *", timezone="UTC")
    assert schedule.timezone == "UTC"
    assert len(warnings) == 1 and "overrides" in warnings[0]
    schedule, warnings = parse_schedule("0 3 * * *", timezone="Asia/Tokyo")
    assert (schedule.timezone, warnings) == ("Asia/Tokyo", [])


@pytest.mark.parametrize("spec", ["* * * * * *", "*/1 0 * * * *"])
def test_seconds_wildcard_warns(spec: str) -> None:
    _, warnings = parse_schedule(spec)
    assert len(warnings) == 1
    assert "every second" in warnings[0]


@pytest.mark.parametrize("spec", ["0 * * * * *", "*/10 * * * * *", "* * * * *"])
def test_no_seconds_warning_otherwise(spec: str) -> None:
    assert parse_schedule(spec)[1] == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [("61 * * * *", "minute"), ("0 25 * * *", "hour"), ("0 0 * JANX *", "month"), ("*/0 * * * *", "minute")],
)
def test_invalid_field_is_named(spec: str, field: str) -> None:
    with pytest.raises(ScheduleError, match=f"{field} field"):
        parse_schedule(spec)


def test_impossible_date_never_fires() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        parse_schedule("0 0 31 4 *")


# --- fire times ---------------------------------------------------------------------


def test_start_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_fire_times(parse("@daily"), datetime(2026, 1, 1), 1)


def test_every_counts_absolute_time_across_dst() -> None:
    start = datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN)
    times = utc_times("@every 90m", start, 3)
    base = start.astimezone(UTC)
    assert times == [base + timedelta(minutes=90 * k) for k in (1, 2, 3)]


def test_spring_forward_fixed_time_fires_once_after_the_gap() -> None:
    # 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    times = next_fire_times(parse("30 2 * * *", "Europe/Berlin"), datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3)
    on_the_day = [t for t in times if t.date() == datetime(2026, 3, 29).date()]
    assert len(on_the_day) == 1
    assert (on_the_day[0].hour, on_the_day[0].minute) == (3, 0)
    assert on_the_day[0].astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert (times[1].month, times[1].day, times[1].hour, times[1].minute) == (3, 30, 2, 30)


def test_fall_back_fixed_time_fires_once() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    times = utc_times("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3)
    assert times == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST, the first occurrence
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),  # 02:30 CET the next day
        datetime(2026, 10, 27, 1, 30, tzinfo=UTC),
    ]


def test_hourly_stays_hourly_across_fall_back() -> None:
    start = datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN)
    times = utc_times("0 * * * *", start, 6)
    assert times[0] == datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(hours=1)] * 5
    local = next_fire_times(parse("0 * * * *", "Europe/Berlin"), start, 4)
    assert [(t.hour, t.fold) for t in local] == [(1, 0), (2, 0), (2, 1), (3, 0)]


def test_hourly_stays_hourly_across_spring_forward() -> None:
    times = utc_times("30 * * * *", datetime(2026, 3, 29, 0, 45, tzinfo=BERLIN), 4)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(hours=1)] * 3


def test_fixed_hour_with_minute_steps_in_gap_fires_once() -> None:
    times = utc_times("*/15 2 * * *", datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN), 2)
    assert times == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 30, 0, 0, tzinfo=UTC)]


def test_start_inside_the_repeated_hour() -> None:
    first_pass = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN)  # 00:10 UTC
    assert utc_times("*/20 * * * *", first_pass, 4) == [
        datetime(2026, 10, 25, 0, 20, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 40, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 20, tzinfo=UTC),
    ]
    second_pass = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)  # 01:10 UTC
    assert utc_times("*/20 * * * *", second_pass, 1) == [datetime(2026, 10, 25, 1, 20, tzinfo=UTC)]
    # a fixed-time job already ran in the first pass: next is tomorrow
    assert utc_times("30 2 * * *", second_pass, 1) == [datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_results_are_in_the_schedule_zone_and_strictly_after_start() -> None:
    start = datetime(2026, 6, 1, 3, 0, tzinfo=BERLIN)
    times = next_fire_times(parse("0 3 * * *", "Europe/Berlin"), start, 2)
    assert times[0] == datetime(2026, 6, 2, 3, 0, tzinfo=BERLIN)
    assert times[0].tzinfo == BERLIN


def test_local_zone_from_tz_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    times = next_fire_times(parse("0 9 * * *"), datetime(2026, 1, 1, tzinfo=UTC), 1)
    assert times[0].astimezone(UTC) == datetime(2026, 1, 1, 0, 0, tzinfo=UTC) + timedelta(days=1)


@pytest.mark.parametrize("spec", ["0 * * * *", "30 2 * * *", "*/20 * * * *", "@every 45m"])
def test_chaining_one_at_a_time_matches_a_batch(spec: str) -> None:
    # The scheduler computes each next fire from the previous scheduled one.
    schedule = parse(spec, "Europe/Berlin")
    start = datetime(2026, 10, 24, 22, 0, tzinfo=BERLIN)
    batch = next_fire_times(schedule, start, 12)
    chained, current = [], start
    for _ in range(12):
        current = next_fire_times(schedule, current, 1)[0]
        chained.append(current)
    assert [t.astimezone(UTC) for t in chained] == [t.astimezone(UTC) for t in batch]
