"""The cyclic garbage collector and a long-running daemon.

After start-up the process holds a large, long-lived heap (every job, its parsed schedule,
the plugin manager, FastAPI's app and models). Each full (generation 2) collection walks all
of it: with 1,000 jobs that was a 50 to 150 ms pause of every thread, jobs and web requests
alike, several times a minute under web load (bench/bench_web.py). ``gc.freeze()`` moves
what exists now into a permanent generation the collector skips; objects made later are
collected as before, and garbage without cycles is freed by reference counting whatever
the generation. A reload builds new jobs: the old ones are released by reference counting,
except any in cycles, which wait for the next unfreeze, so the heap is collected in full and
frozen again after a reload, at most once per :data:`REFREEZE_INTERVAL`.

Freezing alone made full collections more frequent (CPython runs one once the objects that
survived since the last are a quarter of the long-lived ones, and few are long-lived once the
rest is frozen): 2 a second under web load, 20 to 60 ms each, walking what the runs and the
metrics built since start-up. :data:`THRESHOLDS` start a young collection after 10,000
allocations instead of 700; with both, a web request's p99 fell from 64 to 17 ms
(``/api/jobs``) and from 68 to 32 ms (``/metrics``) with 1,000 jobs, and the windows measured
had no full collection at all (bench/bench_web.py, docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import threading
import time

from loguru import logger

#: Allocations before a young collection, then young collections per older one (CPython: 700, 10, 10).
THRESHOLDS = (10_000, 20, 20)

#: Seconds between two full collect-and-freeze passes after reloads (label changes can reload often).
REFREEZE_INTERVAL = 300.0

_lock = threading.Lock()
_last = 0.0


def freeze_long_lived(*, reason: str, force: bool = True) -> bool:
    """Collect everything once, then freeze what is left. Without ``force``, does nothing when the
    previous pass was less than :data:`REFREEZE_INTERVAL` ago. Returns whether it ran."""
    global _last
    with _lock:
        now = time.monotonic()
        if not force and _last and now - _last < REFREEZE_INTERVAL:
            return False
        started = time.perf_counter()
        gc.unfreeze()  # what was frozen before is collectable again, so this pass sees all of it
        gc.collect()
        gc.freeze()
        gc.set_threshold(*THRESHOLDS)
        _last = time.monotonic()
    logger.debug(f"gc: {gc.get_freeze_count()} long-lived objects frozen after {reason} "
                 f"({(time.perf_counter() - started) * 1000:.0f} ms)")
    return True
