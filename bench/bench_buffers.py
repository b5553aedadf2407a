"""Output buffers: the baseline pool, the tiered pool, and Ofelia's original design.

10 rounds of 100 concurrent runs (one thread each, kept for all rounds). Each
run gets a stdout and a stderr buffer from the pool, as the core's executor
does, writes its job's output into stdout in chunks of 4 to 64 KiB (yielding
the GIL after each chunk, as a thread reading a Docker stream would), reads
both buffers with ``getvalue`` and returns them. Jobs print about 1 KiB,
100 KiB, 1 MiB or 8 MiB (a quarter each, within 10 %, the same every run);
one run in ten also writes a line to stderr.

Contenders, each in a fresh process so its peak RSS is its own:

* ``baseline``: the core's driver, built through its entry point and factory hook;
* ``tiered``: ``ofelia-buffers-tiered``, likewise, with default settings (pre-warming off);
* ``original``: a reference implementation of Ofelia's original design (not a
  driver): a 10 MiB ring buffer allocated per stream per run and dropped after.

Measured per contender: peak RSS (VmHWM), RSS at the end, calls into the C
allocator per run (``malloc``, ``calloc``, ``realloc``, ``memalign`` and
anonymous ``mmap``, counted by a small ``LD_PRELOAD`` library compiled at start;
``tracemalloc`` cannot count calls and does not see memory maps), MiB requested
per run, GC collections, and the pool's hit rate after the first round.

    .venv/bin/python bench/bench_buffers.py            # --rounds 10 --runs 100
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KiB, MiB = 1024, 1024 * 1024
CAP = 10 * MiB
SIZES = (1 * KiB, 100 * KiB, 1 * MiB, 8 * MiB)
CHUNK_MIN, CHUNK_MAX = 4 * KiB, 64 * KiB
STDERR_LINE = b"warning: something the job wanted to say on stderr\n" * 4

COUNTER_C = r"""
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static unsigned long long calls, bytes, maps, map_bytes;

static void count(size_t n) {
    __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&bytes, n, __ATOMIC_RELAXED);
}

void *malloc(size_t n) { count(n); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(a * b); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count(n); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { count(n); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { count(n); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    count(n);
    void *p = __libc_memalign(a, n);
    if (!p) return 12;
    *out = p;
    return 0;
}
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (flags & MAP_ANONYMOUS) {
        __atomic_fetch_add(&maps, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&map_bytes, len, __ATOMIC_RELAXED);
    }
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}
void ofelia_bench_alloc_counts(unsigned long long out[4]) {
    out[0] = __atomic_load_n(&calls, __ATOMIC_RELAXED);
    out[1] = __atomic_load_n(&bytes, __ATOMIC_RELAXED);
    out[2] = __atomic_load_n(&maps, __ATOMIC_RELAXED);
    out[3] = __atomic_load_n(&map_bytes, __ATOMIC_RELAXED);
}
"""


# --- the original design, as a reference (not a driver) ---------------------------------


class PreallocatedRing:
    """Ofelia's original output buffer: a ring of ``cap`` bytes allocated up front
    (Go's ``circbuf.NewBuffer(maxStreamSize)``), keeping the newest bytes."""

    __slots__ = ("_data", "_length", "_start", "_truncated")

    def __init__(self, cap: int) -> None:
        # Written through a memoryview: assigning bytes to a bytearray slice copies them first.
        self._data = memoryview(bytearray(cap))
        self._length = 0
        self._start = 0
        self._truncated = False

    def write(self, data: bytes) -> int:
        size, cap = len(data), len(self._data)
        if not self._start and self._length + size <= cap:
            self._data[self._length : self._length + size] = data
            self._length += size
            return size
        self._truncated = True
        view = memoryview(data)
        if size >= cap:
            self._data[:cap] = view[size - cap :]
            self._start, self._length = 0, cap
            return size
        position = (self._start + self._length) % cap
        first = min(size, cap - position)
        self._data[position : position + first] = view[:first]
        self._data[: size - first] = view[first:]
        kept = self._length + size
        if kept > cap:
            self._start = (self._start + kept - cap) % cap
            kept = cap
        self._length = kept
        return size

    def getvalue(self) -> bytes:
        view = self._data
        if not self._start:
            return view[: self._length].tobytes()
        return b"".join((view[self._start :], view[: self._start]))

    def __len__(self) -> int:
        return self._length

    @property
    def truncated(self) -> bool:
        return self._truncated


class OriginalDesignPool:
    """A new preallocated ring per stream per run; nothing is reused."""

    def __init__(self, cap: int = CAP) -> None:
        self.cap = cap

    def get(self, job_name: str, stream: str) -> PreallocatedRing:
        return PreallocatedRing(self.cap)

    def put(self, buffer: Any) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"driver": "original"}

    def close(self) -> None:
        pass


# --- one contender, in its own process ----------------------------------------------------


def build_pool(spec: str) -> Any:
    """A driver through its entry point and factory hook, as the daemon builds it (unwrapped).

    ``spec`` is a driver name, optionally with ``[buffer-pool]`` settings:
    ``tiered:max-held=512MiB+prewarm=2``.
    """
    name, _, extra = spec.partition(":")
    settings = dict(pair.split("=", 1) for pair in extra.split("+") if pair)
    if name == "original":
        return OriginalDesignPool()
    import ofelia_hookspecs.specs
    import pluggy

    from ofelia_core.drivers.loading import build_driver, default_context, register_drivers
    from ofelia_core.drivers.selection import Choice
    from ofelia_core.drivers.table import BY_KEY

    pm = pluggy.PluginManager("ofelia")
    pm.add_hookspecs(ofelia_hookspecs.specs)
    register_drivers(pm, {"buffer-pool": Choice(BY_KEY["buffer-pool"], name, "bench")})
    return build_driver(pm, "buffer-pool", settings, default_context())


def job_plans(runs: int, seed: int) -> list[tuple[str, int, list[memoryview]]]:
    """(job name, total bytes, chunks) per job: chunks are views of one random source,
    made before measuring so the writer allocates nothing per chunk."""
    rng = random.Random(seed)
    source = memoryview(rng.randbytes(max(SIZES) * 11 // 10 + CHUNK_MAX))
    plans = []
    for index in range(runs):
        total = int(SIZES[index % len(SIZES)] * rng.uniform(0.9, 1.1))
        chunks, offset = [], 0
        while offset < total:
            size = min(rng.randint(CHUNK_MIN, CHUNK_MAX), total - offset)
            chunks.append(source[offset : offset + size])
            offset += size
        plans.append((f"job-{index:03d}", total, chunks))
    return plans


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def alloc_counter() -> Callable[[], tuple[int, int]] | None:
    """(calls, bytes) so far from the preloaded counter, or None when it is not loaded."""
    try:
        function = ctypes.CDLL(None).ofelia_bench_alloc_counts
    except (OSError, AttributeError):
        return None
    out = (ctypes.c_ulonglong * 4)()

    def read() -> tuple[int, int]:
        function(out)
        return out[0] + out[2], out[1] + out[3]

    return read


def gc_collections() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


def run_contender(name: str, rounds: int, runs: int, seed: int) -> dict[str, Any]:
    pool = build_pool(name)
    plans = job_plans(runs, seed)
    counts = alloc_counter()
    failures: list[str] = []
    # One pair of locks per worker instead of a Barrier: Condition.wait allocates a
    # lock per wait, which the allocation counter would charge to every run.
    go = [threading.Lock() for _ in plans]
    done = [threading.Lock() for _ in plans]
    for lock in (*go, *done):
        lock.acquire()

    def worker(index: int, job: str, total: int, chunks: list[memoryview], with_stderr: bool) -> None:
        for _ in range(rounds):
            go[index].acquire()
            try:
                out, err = pool.get(job, "stdout"), pool.get(job, "stderr")
                for chunk in chunks:
                    out.write(chunk)
                    time.sleep(0)  # let the other runs in, as a thread waiting on a stream would
                if with_stderr:
                    err.write(STDERR_LINE)
                value, error_value = out.getvalue(), err.getvalue()
                if len(value) != total or value[-16:] != bytes(chunks[-1][-16:]):
                    failures.append(f"{job}: {len(value)} bytes, expected {total}")
                del value, error_value
                pool.put(out)
                pool.put(err)
            except BaseException as exc:  # reported by the main thread
                failures.append(f"{job}: {type(exc).__name__}: {exc}")
            done[index].release()

    threads = [
        threading.Thread(target=worker, args=(index, job, total, chunks, index % 10 == 0), name=f"run-{index}")
        for index, (job, total, chunks) in enumerate(plans)
    ]
    for thread in threads:
        thread.start()
    gc.collect()
    setup_rss = status_kib("VmRSS")
    per_round: list[dict[str, Any]] = []
    gc0, cpu0, wall0 = gc_collections(), time.process_time(), time.perf_counter()
    for _ in range(rounds):
        stats_before = pool.stats()
        before = counts() if counts else (0, 0)
        for lock in go:
            lock.release()
        for lock in done:
            lock.acquire()
        after = counts() if counts else (0, 0)
        stats_after = pool.stats()
        hits = stats_after.get("hits", 0) - stats_before.get("hits", 0)
        misses = stats_after.get("misses", 0) - stats_before.get("misses", 0)
        per_round.append({"calls": after[0] - before[0], "bytes": after[1] - before[1], "hits": hits, "misses": misses})
    cpu, wall, collections = time.process_time() - cpu0, time.perf_counter() - wall0, gc_collections() - gc0
    for thread in threads:
        thread.join()
    end_rss = status_kib("VmRSS")  # before close: what the pool holds between runs counts
    final = pool.stats()
    pool.close()
    later = per_round[1:] or per_round
    acquisitions = sum(r["hits"] + r["misses"] for r in later)
    return {
        "failures": failures[:5],
        "peak_rss_mib": status_kib("VmHWM") / 1024,
        "end_rss_mib": end_rss / 1024,
        "setup_rss_mib": setup_rss / 1024,
        "counted": counts is not None,
        "calls_first": per_round[0]["calls"] / runs,
        "calls_later": sum(r["calls"] for r in later) / (len(later) * runs),
        "mib_later": sum(r["bytes"] for r in later) / (len(later) * runs) / MiB,
        "gc": collections,
        "hit_rate": (sum(r["hits"] for r in later) / acquisitions) if acquisitions else None,
        "cpu": cpu,
        "wall": wall,
        "pool": {k: final[k] for k in ("hits", "misses", "grows", "dropped", "evicted", "held_bytes") if k in final},
    }


# --- the parent: one process per contender, then the table ---------------------------------


def build_counter(directory: Path) -> Path | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source, library = directory / "alloccount.c", directory / "alloccount.so"
    source.write_text(COUNTER_C)
    result = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        print(f"bench: could not build the allocation counter: {result.stderr.strip()}", file=sys.stderr)
        return None
    return library


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs per round")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--contenders", default="baseline,tiered,original",
                        help="driver names, optionally with settings: tiered:max-held=512MiB+prewarm=2")
    parser.add_argument("--no-every-object", action="store_true",
                        help="skip the second pass that counts every object allocation (PYTHONMALLOC=malloc)")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(run_contender(args.contender, args.rounds, args.runs, args.seed)))
        return

    sys.path.insert(0, str(HERE))
    from common import run_contenders
    from stats import markdown_table

    names = [name.strip() for name in args.contenders.split(",") if name.strip()]
    with tempfile.TemporaryDirectory(prefix="ofelia-bench-buffers-") as directory:
        library = build_counter(Path(directory))
        if library is not None:
            os.environ["LD_PRELOAD"] = str(library)  # the contenders inherit it
        else:
            print("bench: no C compiler: allocation columns read n/a", file=sys.stderr)
        common = ["--rounds", str(args.rounds), "--runs", str(args.runs), "--seed", str(args.seed)]
        cases = [(name, ["--contender", name, *common]) for name in names]
        results = run_contenders(__file__, cases)
        every: dict[str, dict[str, Any]] = {}
        if library is not None and not args.no_every_object:
            # Second pass: with PYTHONMALLOC=malloc, small objects (ints, handles, views) that
            # pymalloc serves from its own pools go through malloc too, so every allocation counts.
            os.environ["PYTHONMALLOC"] = "malloc"
            every = {r["label"]: r for r in run_contenders(__file__, [(f"{n} (every object)", a) for n, a in cases])}
            every = {label.removesuffix(" (every object)"): r for label, r in every.items()}
            os.environ.pop("PYTHONMALLOC", None)
        os.environ.pop("LD_PRELOAD", None)

    by_name = {r["label"]: r for r in results}
    base, original = by_name.get("baseline"), by_name.get("original")
    headers = ["contender", "peak RSS MiB", "RSS at end MiB", "allocator calls/run, round 1",
               "allocator calls/run, rounds 2+", "MiB requested/run, rounds 2+",
               "every object: allocations/run, rounds 2+", "GC collections", "hit rate, rounds 2+", "CPU s",
               "peak RSS / baseline", "allocator calls / baseline", "every object / baseline",
               "peak RSS / original"]
    every_base = every.get("baseline")
    rows = []
    for r in results:
        counted = r["counted"]
        rows.append([
            r["label"], fmt(r["peak_rss_mib"]), fmt(r["end_rss_mib"]),
            fmt(r["calls_first"] if counted else None), fmt(r["calls_later"] if counted else None),
            fmt(r["mib_later"] if counted else None, 2),
            fmt(every[r["label"]]["calls_later"] if r["label"] in every else None), r["gc"],
            "n/a" if r["hit_rate"] is None else f"{100 * r['hit_rate']:.1f}%", fmt(r["cpu"]),
            fmt(r["peak_rss_mib"] / base["peak_rss_mib"], 2) if base else "n/a",
            fmt(r["calls_later"] / base["calls_later"], 3) if base and counted and base["calls_later"] else "n/a",
            fmt(every[r["label"]]["calls_later"] / every_base["calls_later"], 3)
            if every_base and r["label"] in every else "n/a",
            fmt(r["peak_rss_mib"] / original["peak_rss_mib"], 2) if original else "n/a",
        ])
    print(f"{args.rounds} rounds x {args.runs} concurrent runs; stdout of about "
          f"{', '.join(f'{s // KiB} KiB' for s in SIZES)} (a quarter each) in {CHUNK_MIN // KiB}-"
          f"{CHUNK_MAX // KiB} KiB chunks; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print()
    print(markdown_table(headers, rows))
    for r in results:
        if r["pool"]:
            print(f"\n{r['label']} pool at the end: {r['pool']}")
        if r["failures"]:
            print(f"\n{r['label']} FAILURES: {r['failures']}")
    if any(r["failures"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
