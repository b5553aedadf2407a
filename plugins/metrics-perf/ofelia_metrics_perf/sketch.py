"""Latency figures kept in process: Prometheus buckets for the exposition, and a
log-bucket sketch for quantile estimates in the JSON.

The sketch is the DDSketch idea: a value ``x`` goes to bucket
``ceil(log(x) / log(gamma))``, so every bucket spans values within a fixed
ratio ``gamma`` of each other, and the estimate returned for a bucket (its
geometric middle, ``2 * gamma**i / (gamma + 1)``) is within a relative error
of ``(gamma - 1) / (gamma + 1)`` of every value in it: 2% with the default
``gamma = 1.04``. Buckets are a sparse dict, so memory grows with the spread of
the values (about 60 buckets per factor of 10), never with their number, and
sketches merge by adding counts. Values at or below :data:`MIN_VALUE`
(a nanosecond) are counted in the zero bucket, :data:`ZERO_KEY`, which sorts first.

A :class:`LatencySeries` keeps, for one series, the sketch since the start, the
same buckets in time slices (so quantiles over the last ``window`` seconds are
read by merging the slices recent enough; slices are reused in place as time
moves on) and the Prometheus bucket counts, all updated by one call.

These objects are not locked: their owner holds a lock around every write.
The recorder inlines :meth:`LatencySeries.place` and :meth:`LatencySeries.add_placed`
on its hot path (every driver call), with the same arithmetic.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

#: Relative spacing of the buckets: a 2% relative error on every estimate.
DEFAULT_GAMMA = 1.04
#: Values at or below this (seconds) are counted as zero.
MIN_VALUE = 1e-9
#: The bucket of zero (and of values at or below ``MIN_VALUE``); below every other key.
ZERO_KEY = -(1 << 40)

_log = math.log
_ceil = math.ceil


class LogBuckets:
    """Counts by log-spaced bucket, plus count, sum, min and max."""

    __slots__ = ("buckets", "count", "gamma", "inv_log_gamma", "max", "min", "sum")

    def __init__(self, gamma: float = DEFAULT_GAMMA) -> None:
        if gamma <= 1.0:
            raise ValueError(f"gamma must be above 1, got {gamma!r}")
        self.gamma = gamma
        self.inv_log_gamma = 1.0 / math.log(gamma)
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def key(self, value: float) -> int:
        """The bucket of ``value``."""
        return _ceil(_log(value) * self.inv_log_gamma) if value > MIN_VALUE else ZERO_KEY

    def add(self, value: float) -> None:
        key = _ceil(_log(value) * self.inv_log_gamma) if value > MIN_VALUE else ZERO_KEY
        buckets = self.buckets
        buckets[key] = buckets.get(key, 0) + 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: LogBuckets) -> None:
        self.merge_counts(other.buckets)
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def merge_counts(self, counts: Mapping[int, int]) -> None:
        """Add bucket counts (a time slice's); count follows, sum/min/max do not."""
        buckets = self.buckets
        for key, count in counts.items():
            buckets[key] = buckets.get(key, 0) + count
            self.count += count

    def quantile(self, q: float) -> float | None:
        """The estimate of the ``q`` quantile (0..1); ``None`` when empty."""
        return quantiles(self, (q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        return quantiles(self, qs)


def quantiles(sketch: LogBuckets, qs: Sequence[float]) -> list[float | None]:
    """Several quantiles of ``sketch`` in one pass over its sorted buckets.

    The rank of ``q`` is ``q * (count - 1)`` (DDSketch's convention); each
    answer is clamped to the smallest and largest values seen (when known),
    so the estimate of a single value is that value, and ``q = 0`` and
    ``q = 1`` are exact.
    """
    if sketch.count == 0:
        return [None for _ in qs]
    low = sketch.min if sketch.min != math.inf else 0.0
    high = sketch.max if sketch.max != -math.inf else math.inf
    answers: list[float | None] = [None] * len(qs)
    ranks = sorted((q * (sketch.count - 1), index) for index, q in enumerate(qs))
    gamma = sketch.gamma
    cumulative = 0
    position = 0
    for key in sorted(sketch.buckets):
        cumulative += sketch.buckets[key]
        while position < len(ranks) and ranks[position][0] < cumulative:
            index = ranks[position][1]
            q = qs[index]
            if q >= 1.0 and high != math.inf:
                answers[index] = high
            elif q <= 0.0 and sketch.min != math.inf:
                answers[index] = low
            else:
                estimate = 0.0 if key == ZERO_KEY else 2.0 * gamma**key / (gamma + 1.0)
                answers[index] = min(max(estimate, low), high)
            position += 1
        if position == len(ranks):
            return answers
    # Rounding left a rank at the very top: the largest value.
    for _, index in ranks[position:]:
        answers[index] = high if high != math.inf else None
    return answers


class LatencySeries:
    """One series' latency: a sketch since the start, the same over a recent window, and
    Prometheus bucket counts.

    The window is ``slices`` slices of ``window / slices`` seconds; a quantile over
    the window merges the slices that started within it, so it covers between
    ``window - window / slices`` and ``window`` seconds.
    """

    __slots__ = ("bounds", "prom", "slice_counts", "slice_ids", "slice_seconds", "total", "window")

    def __init__(self, bounds: Sequence[float], window: float, slices: int = 10,
                 gamma: float = DEFAULT_GAMMA) -> None:
        if window <= 0 or slices < 1:
            raise ValueError("a window needs a positive length and at least one slice")
        self.bounds = tuple(bounds)
        self.prom = [0] * (len(self.bounds) + 1)  # one per bound, then +Inf
        self.window = window
        self.slice_seconds = window / slices
        self.total = LogBuckets(gamma)
        self.slice_counts: list[dict[int, int]] = [{} for _ in range(slices)]
        self.slice_ids = [-1] * slices

    def add(self, value: float, now: float) -> None:
        key, index, slice_id = self.place(value, now)
        self.add_placed(value, key, index, slice_id)

    def place(self, value: float, now: float) -> tuple[int, int, int]:
        """Where ``value`` goes: (sketch bucket, Prometheus bucket, time slice). Reads only
        what never changes, so the owner computes it before taking its lock."""
        key = _ceil(_log(value) * self.total.inv_log_gamma) if value > MIN_VALUE else ZERO_KEY
        return key, bisect_left(self.bounds, value), int(now // self.slice_seconds)

    def add_placed(self, value: float, key: int, index: int, slice_id: int) -> None:
        """Count ``value`` where :meth:`place` put it (under the owner's lock)."""
        total = self.total
        buckets = total.buckets
        buckets[key] = buckets.get(key, 0) + 1
        total.count += 1
        total.sum += value
        if value < total.min:
            total.min = value
        if value > total.max:
            total.max = value
        self.prom[index] += 1
        position = slice_id % len(self.slice_ids)
        if self.slice_ids[position] != slice_id:
            self.slice_ids[position] = slice_id
            self.slice_counts[position] = {key: 1}
        else:
            counts = self.slice_counts[position]
            counts[key] = counts.get(key, 0) + 1

    def recent(self, now: float) -> LogBuckets:
        """The values of the window ending at ``now``, merged into a new sketch (its min and
        max are the series' own since the start, which only clamp the estimates)."""
        merged = LogBuckets(self.total.gamma)
        newest = int(now // self.slice_seconds)
        oldest = newest - len(self.slice_ids) + 1
        for slice_id, counts in zip(self.slice_ids, self.slice_counts, strict=True):
            if oldest <= slice_id <= newest:
                merged.merge_counts(counts)
        if merged.count:
            merged.min, merged.max = self.total.min, self.total.max
        return merged

    def cumulative(self) -> list[tuple[str, float]]:
        """``[(le, cumulative count), ..., ("+Inf", count)]`` as the exposition wants them."""
        return cumulative_buckets(self.bounds, self.prom)


class PromBuckets:
    """Counts by Prometheus bucket (``le`` upper bounds, inclusive) and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        return cumulative_buckets(self.bounds, self.counts)

    @property
    def count(self) -> int:
        return sum(self.counts)


def cumulative_buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    running = 0
    out: list[tuple[str, float]] = []
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        running += count
        out.append((format_bound(bound), float(running)))
    return out


def format_bound(bound: float) -> str:
    """An ``le`` label as prometheus_client writes its own: ``0.005``, ``1.0``, ``+Inf``."""
    if bound == math.inf:
        return "+Inf"
    return repr(float(bound))


def merged(sketches: Iterable[LogBuckets], gamma: float = DEFAULT_GAMMA) -> LogBuckets:
    out = LogBuckets(gamma)
    for sketch in sketches:
        out.merge(sketch)
    return out


__all__ = [
    "DEFAULT_GAMMA",
    "MIN_VALUE",
    "ZERO_KEY",
    "LatencySeries",
    "LogBuckets",
    "PromBuckets",
    "cumulative_buckets",
    "format_bound",
    "merged",
    "quantiles",
]
