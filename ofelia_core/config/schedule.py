"""Schedules: parsing, checking and computing fire times.

Accepted forms (Ofelia's, plus the fork's):

- cron with 5 fields (minute hour day-of-month month day-of-week), or 6 with
  a LEADING seconds field. Seven fields (a year) and an empty schedule are
  rejected. A 6-field spec whose seconds field is ``*`` or ``*/1`` fires
  every second, which is rarely meant: it is accepted with a warning.
- descriptors: ``@yearly``/``@annually``, ``@monthly``, ``@weekly``,
  ``@daily``/``@midnight``, ``@hourly`` (mapped to cron);
  ``@every <Go duration>`` (``10s``, ``1h30m``, ``500ms``; must be > 0);
  ``@manual``/``@none`` (never fires on its own: run on demand);
  ``@triggered`` (runs only when another job triggers it).
- ``CRON_TZ=Zone/City `` or ``TZ=Zone/City `` before a spec sets its zone;
  a job's ``timezone`` key overrides that prefix. Without either, the
  process's local zone is used. ``Local`` means the local zone.

Fire times and daylight-saving time
-----------------------------------
Cron specs are matched against wall-clock time in the schedule's zone.
``@every`` counts absolute time from the start, so it ignores DST.

When clocks go forward, wall times in the gap do not exist. A spec with a
fixed hour (``30 2 * * *``, ``0 1-3 * * *``) whose time falls in the gap
fires once, at the first valid instant after the gap (03:00 in Europe/Berlin
on the spring-forward day): a daily job is never lost. A spec that runs every
hour (hour field ``*``: ``0 * * * *``, ``*/5 * * * *``, ``@hourly``) simply
has no runs in the missing hour and carries on at the next one.

When clocks go back, wall times in the repeated hour occur twice. A spec with
a fixed hour fires once, at the first occurrence (a daily job is never run
twice). A spec that runs every hour fires in both occurrences, so its runs
stay evenly spaced in absolute time (consecutive hourly instants).

This is the rule Vixie cron applies (fixed-time versus wildcard jobs).
croniter is imported only when a cron spec is checked or computed.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ofelia_hookspecs.settings import DurationError, parse_duration

from .suggest import nearest

ScheduleKind = Literal["cron", "every", "manual", "triggered"]

DESCRIPTORS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SPECIAL = ("@every", "@manual", "@none", "@triggered")
_TZ_PREFIX = re.compile(r"(?:CRON_TZ|TZ)=(\S*)(.*)", re.DOTALL)
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_RANGES = ("0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-6 or SUN-SAT")
_EVERY_SECOND = ("*", "*/1")


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message says why and how to fix it."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule.

    ``spec`` is the text as written (prefix included). ``fields`` are the
    cron fields (seconds first when ``seconds``), descriptors expanded.
    ``timezone`` is a zone name, or None for the process's local zone.
    ``interval`` is the ``@every`` period in seconds.
    """

    kind: ScheduleKind
    spec: str
    fields: tuple[str, ...] = ()
    seconds: bool = False
    timezone: str | None = None
    interval: float | None = None

    @property
    def expression(self) -> str:
        """The cron expression (empty for non-cron kinds)."""
        return " ".join(self.fields)

    @property
    def fires_by_time(self) -> bool:
        """False for ``@manual``/``@none`` and ``@triggered``."""
        return self.kind in ("cron", "every")

    @property
    def every_hour(self) -> bool:
        """A cron spec whose hour field is ``*`` (see the DST rules above)."""
        return self.kind == "cron" and self.fields[2 if self.seconds else 1] == "*"


def parse_schedule(text: str, *, timezone: str | None = None) -> tuple[Schedule, list[str]]:
    """Parse and check a schedule; returns it with warnings, raises :class:`ScheduleError`.

    ``timezone`` is the job's ``timezone`` key; it overrides a ``CRON_TZ=``/``TZ=`` prefix.
    """
    spec = text.strip()
    if not spec:
        raise ScheduleError(
            "the schedule is empty; use a cron spec such as '0 * * * *' or a descriptor such as '@hourly'"
        )
    warnings: list[str] = []
    body, prefix_zone = _split_zone_prefix(spec)
    zone = prefix_zone
    if timezone is not None and timezone.strip():
        zone = timezone.strip()
        if prefix_zone is not None and prefix_zone != zone:
            warnings.append(f"the timezone key '{zone}' overrides the schedule's prefix zone '{prefix_zone}'")
    zone = check_zone(zone)

    if body.startswith("@"):
        return _parse_descriptor(spec, body, zone), warnings
    fields = tuple(body.split())
    if len(fields) == 7:
        raise ScheduleError(
            f"'{body}' has 7 fields; use 5 (minute hour day-of-month month day-of-week) "
            "or 6 with seconds first. A year field is not supported"
        )
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"'{body}' has {len(fields)} field(s); use 5 (minute hour day-of-month month day-of-week), "
            "6 with seconds first, or a descriptor such as '@hourly' or '@every 10m'"
        )
    seconds = len(fields) == 6
    if seconds and fields[0] in _EVERY_SECOND:
        warnings.append(
            f"'{body}' has 6 fields, so the first is seconds: '{fields[0]}' fires every second. "
            f"For once a minute write '0 {' '.join(fields[1:])}' or drop the seconds field"
        )
    _check_cron(fields, seconds)
    return Schedule("cron", spec, fields, seconds, zone), warnings


def check_zone(name: str | None) -> str | None:
    """Validate a zone name; ``None``, ``""`` and ``Local`` mean the local zone (None)."""
    if name is None or name == "" or name == "Local":
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        import zoneinfo

        hint = nearest(name, zoneinfo.available_timezones(), cutoff=0.7)
        raise ScheduleError(
            f"unknown time zone '{name}'"
            + (f" (did you mean '{hint}'?)" if hint else "; use an IANA name such as Europe/Berlin")
        ) from None
    return name


def zone_of(schedule: Schedule) -> tzinfo:
    """The schedule's zone, or the process's local zone."""
    return ZoneInfo(schedule.timezone) if schedule.timezone else local_zone()


def local_zone() -> tzinfo:
    """The process's zone: ``$TZ``, else ``/etc/localtime``, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return UTC


def next_fire_times(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times strictly after ``start`` (an aware datetime), in the schedule's zone.

    Empty for ``@manual``/``@none``/``@triggered``. Follows the DST rules in
    the module docstring.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    if n <= 0 or not schedule.fires_by_time:
        return []
    zone = zone_of(schedule)
    if schedule.kind == "every":
        assert schedule.interval is not None
        step = timedelta(seconds=schedule.interval)
        origin = start.astimezone(UTC)  # aware arithmetic in a zone would follow the wall clock
        return [(origin + step * k).astimezone(zone) for k in range(1, n + 1)]
    times: list[datetime] = []
    for instant in _cron_instants(schedule, zone, start.astimezone(UTC)):
        times.append(instant.astimezone(zone))
        if len(times) == n:
            break
    return times


# --- parsing helpers -----------------------------------------------------------


def _split_zone_prefix(spec: str) -> tuple[str, str | None]:
    match = _TZ_PREFIX.fullmatch(spec)
    if not match:
        return spec, None
    zone, body = match.group(1), match.group(2).strip()
    if not zone:
        raise ScheduleError(f"'{spec}': the zone after '=' is missing, e.g. CRON_TZ=Europe/Berlin 0 3 * * *")
    if not body:
        raise ScheduleError(f"'{spec}': a schedule must follow the zone, e.g. CRON_TZ={zone} 0 3 * * *")
    return body, zone


def _parse_descriptor(spec: str, body: str, zone: str | None) -> Schedule:
    word, _, rest = body.partition(" ")
    word, rest = word.lower(), rest.strip()
    if word in DESCRIPTORS and not rest:
        return Schedule("cron", spec, tuple(DESCRIPTORS[word].split()), False, zone)
    if word == "@every":
        if not rest:
            raise ScheduleError("'@every' needs a duration, e.g. '@every 10s' or '@every 1h30m'")
        try:
            interval = parse_duration(rest)
        except DurationError as exc:
            raise ScheduleError(f"'{body}': {exc}") from None
        if interval <= 0:
            raise ScheduleError(f"'{body}': the interval must be greater than zero")
        return Schedule("every", spec, timezone=zone, interval=interval)
    if word in ("@manual", "@none") and not rest:
        return Schedule("manual", spec, timezone=zone)
    if word == "@triggered" and not rest:
        return Schedule("triggered", spec, timezone=zone)
    known = (*DESCRIPTORS, *_SPECIAL)
    if word in known:
        raise ScheduleError(f"'{body}': {word} takes nothing after it")
    hint = nearest(word, known)
    raise ScheduleError(
        f"unknown descriptor '{word}'" + (f" (did you mean '{hint}'?)" if hint else "") + f"; known: {', '.join(known)}"
    )


def _check_cron(fields: tuple[str, ...], seconds: bool) -> None:
    from croniter import CroniterBadDateError, croniter

    expression = " ".join(fields)
    try:
        iterator = croniter(expression, datetime(2000, 1, 1), second_at_beginning=seconds)
    except (ValueError, TypeError, KeyError) as exc:
        raise ScheduleError(_blame(fields, seconds, exc)) from None
    try:
        iterator.get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(f"'{expression}' never fires (no date matches its day and month)") from None


def _blame(fields: tuple[str, ...], seconds: bool, exc: Exception) -> str:
    """Say which field is wrong, by checking each one alone."""
    from croniter import croniter

    names = ("second", *_FIELD_NAMES) if seconds else _FIELD_NAMES
    ranges = ("0-59", *_FIELD_RANGES) if seconds else _FIELD_RANGES
    spec = " ".join(fields)
    for index, value in enumerate(fields):
        probe = ["*"] * len(fields)
        probe[index] = value
        try:
            croniter(" ".join(probe), datetime(2000, 1, 1), second_at_beginning=seconds)
        except (ValueError, TypeError, KeyError):
            return f"invalid cron spec '{spec}': {names[index]} field '{value}' is invalid ({ranges[index]})"
    return f"invalid cron spec '{spec}': {exc}"


# --- fire times ----------------------------------------------------------------


def _cron_instants(schedule: Schedule, zone: tzinfo, start: datetime) -> Iterator[datetime]:
    """UTC instants after ``start`` (UTC), in order, under the DST rules."""
    from croniter import CroniterBadDateError, croniter

    both_folds = schedule.every_hour
    local = start.astimezone(zone)
    begin = local.replace(tzinfo=None, fold=0)
    offsets = _offsets(begin, zone)
    if both_folds and local.fold == 0 and offsets[0] > offsets[1]:
        # ``start`` is in the first pass of a repeated hour: the second pass of
        # earlier wall times still lies ahead.
        begin -= offsets[0] - offsets[1]
    iterator = croniter(schedule.expression, begin, second_at_beginning=schedule.seconds)
    pending: list[datetime] = []
    last = start
    while True:
        try:
            wall: datetime = iterator.get_next(datetime)
        except CroniterBadDateError:
            break
        floor = _resolve(wall, zone, both_folds, pending)
        while pending and pending[0] <= floor:
            instant = heapq.heappop(pending)
            if instant > last:
                last = instant
                yield instant


def _offsets(wall: datetime, zone: tzinfo) -> tuple[timedelta, timedelta]:
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None
    return first, second


def _resolve(wall: datetime, zone: tzinfo, both_folds: bool, pending: list[datetime]) -> datetime:
    """Push the UTC instants for one wall time; return a bound no later instant can precede."""
    first, second = _offsets(wall, zone)
    earliest = (wall - first).replace(tzinfo=UTC)
    if first == second:
        heapq.heappush(pending, earliest)
    elif first > second:  # repeated hour: fold=0 is the first occurrence
        heapq.heappush(pending, earliest)
        if both_folds:
            heapq.heappush(pending, (wall - second).replace(tzinfo=UTC))
    else:  # gap: the wall time does not exist
        earliest = _gap_end(wall, zone, first, second)
        if not both_folds:
            heapq.heappush(pending, earliest)
    return earliest


def _gap_end(wall: datetime, zone: tzinfo, before: timedelta, after: timedelta) -> datetime:
    """The transition instant that ends the gap containing ``wall`` (found to the second)."""
    low = int((wall - after).replace(tzinfo=UTC).timestamp())  # still on the old offset
    high = int((wall - before).replace(tzinfo=UTC).timestamp())  # already on the new offset
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
