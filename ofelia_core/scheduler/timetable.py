"""Fire instants as epoch seconds, cheap enough to call once per fire per job.

``@every`` is pure arithmetic on an origin: fires are ``origin + k * interval``
(k >= 1), so the first is one interval after the origin (as Ofelia does) and
computing from the previous *scheduled* instant never drifts.

Cron goes through :func:`~ofelia_core.config.schedule.next_fire_times` (which
owns the DST policy). A call costs about a millisecond, mostly fixed cost, so
instants are computed in batches and shared by every job with the same
schedule: a thousand ``@hourly`` jobs cost one computation per batch.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from datetime import UTC, datetime

from ..config.schedule import Schedule, next_fire_times

#: Cron instants computed per call of next_fire_times.
BATCH = 16
#: Distinct cron schedules kept; beyond this the cache starts over.
CACHE_LIMIT = 4096

# schedule -> (start, instants strictly after start, complete up to instants[-1]).
# Entries are replaced whole, so readers on other threads see one or the other.
_batches: dict[Schedule, tuple[float, tuple[float, ...]]] = {}
_lock = threading.Lock()


def next_fire(job_schedule: Schedule, after: float, origin: float | None = None) -> float | None:
    """The first fire instant strictly after ``after`` (epoch seconds), or None.

    None for ``@manual``/``@triggered`` and for a cron spec that never fires
    again. ``origin`` anchors ``@every`` (its fires are ``origin + k * interval``,
    k >= 1); it defaults to ``after``, giving ``after + interval``.
    """
    kind = job_schedule.kind
    if kind == "every":
        interval = job_schedule.interval
        assert interval is not None and interval > 0, "an @every schedule needs a positive interval"
        if origin is None or after < origin:
            base = after if origin is None else origin
            return base + interval
        k = math.floor((after - origin) / interval) + 1
        fire = origin + k * interval
        while fire <= after:  # float rounding at the boundary
            k += 1
            fire = origin + k * interval
        return fire
    if kind != "cron":
        return None
    cached = _batches.get(job_schedule)
    if cached is not None:
        start, instants = cached
        if start <= after < instants[-1]:
            return instants[bisect_right(instants, after)]
    times = next_fire_times(job_schedule, datetime.fromtimestamp(after, UTC), BATCH)
    if not times:
        return None
    instants = tuple(t.timestamp() for t in times)
    with _lock:
        if len(_batches) >= CACHE_LIMIT:
            _batches.clear()
        _batches[job_schedule] = (after, instants)
    return instants[0]


def clear_cache() -> None:
    """Forget computed cron instants (after the local zone changes, in tests)."""
    with _lock:
        _batches.clear()
