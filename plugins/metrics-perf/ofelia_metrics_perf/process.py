"""The process's own figures, read with psutil: CPU, memory (RSS), threads, open
files, uptime. Read at each scrape and by the background sampler; each read
costs a few reads of ``/proc/self`` (one ``oneshot`` batch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psutil

#: CPU percent needs this much wall time between two reads to be recomputed.
MIN_CPU_INTERVAL = 0.5


@dataclass(frozen=True)
class ProcessFigures:
    """One reading. ``cpu_percent`` is over the time since the previous reading at
    least :data:`MIN_CPU_INTERVAL` seconds old (100 = one core busy)."""

    cpu_seconds: float
    cpu_percent: float
    rss_bytes: int
    rss_peak_bytes: int
    threads: int
    open_fds: int
    start_time: float
    uptime_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProcessSampler:
    """Reads this process's figures; thread-safe. ``wall`` is epoch seconds and
    ``monotonic`` the real monotonic clock (CPU percent is about real time)."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._process = psutil.Process()
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._start_time = float(self._process.create_time())
        self._reference: tuple[float, float] | None = None
        self._cpu_percent = 0.0
        self._rss_peak = 0
        self._last: ProcessFigures | None = None
        self.samples = 0

    def sample(self) -> ProcessFigures:
        process = self._process
        with process.oneshot():
            times = process.cpu_times()
            rss = int(process.memory_info().rss)
            threads = int(process.num_threads())
            try:
                fds = int(process.num_fds())
            except (AttributeError, psutil.Error):  # not on every platform
                fds = 0
        cpu = float(times.user + times.system)
        now = self._monotonic()
        with self._lock:
            if self._reference is None:
                self._reference = (now, cpu)
            else:
                then, cpu_then = self._reference
                if now - then >= MIN_CPU_INTERVAL:
                    self._cpu_percent = max(0.0, (cpu - cpu_then) / (now - then) * 100.0)
                    self._reference = (now, cpu)
            self._rss_peak = max(self._rss_peak, rss)
            self.samples += 1
            figures = ProcessFigures(
                cpu_seconds=cpu,
                cpu_percent=self._cpu_percent,
                rss_bytes=rss,
                rss_peak_bytes=self._rss_peak,
                threads=threads,
                open_fds=fds,
                start_time=self._start_time,
                uptime_seconds=max(0.0, self._wall() - self._start_time),
            )
            self._last = figures
        return figures

    @property
    def last(self) -> ProcessFigures | None:
        with self._lock:
            return self._last


__all__ = ["MIN_CPU_INTERVAL", "ProcessFigures", "ProcessSampler"]
