"""Small helpers shared by the benchmarks: percentiles and a markdown table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """Median, p95, p99 and max of values given in seconds, in milliseconds."""
    return {
        "median": statistics.median(values) * 1000,
        "p95": percentile(values, 95) * 1000,
        "p99": percentile(values, 99) * 1000,
        "max": max(values) * 1000,
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def mann_whitney_greater(sample: Sequence[float], reference: Sequence[float]) -> float:
    """One-sided p-value that ``sample`` tends to be greater than ``reference`` (Mann-Whitney U,
    normal approximation with tie correction; fine from about 8 values each)."""
    n1, n2 = len(sample), len(reference)
    if not n1 or not n2:
        return float("nan")
    pooled = sorted([(value, 0) for value in sample] + [(value, 1) for value in reference])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        size = j - i + 1
        ties += size**3 - size
        i = j + 1
    rank_sum = sum(rank for rank, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u = rank_sum - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 0.5
    z = (u - n1 * n2 / 2 - 0.5) / variance**0.5  # continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2))
