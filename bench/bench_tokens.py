"""Web token managers: the baseline dict, the heap driver, and Ofelia's original design.

For 1,000, 10,000 and 100,000 active tokens (the cap raised above the count),
each contender is filled to that many tokens (one hour lifetimes, 1,000
distinct subjects), then measured:

* threads the manager runs (started since it was built), and the process's RSS growth over the fill
  (VmRSS after minus before, after a ``gc.collect`` each side);
* Python allocations, ``tracemalloc`` current and peak bytes after the fill
  (a second process, since tracing slows every allocation and adds its own memory);
* ``issue`` latency: each of the last 1,000 issues of the fill, timed alone
  (p50/p99 µs; so at n - 1,000 to n tokens);
* ``validate`` latency: 20,000 calls on random held tokens, each timed alone,
  in process and directly on the driver (no instrumentation layer).

A second table shows ``issue`` at the default cap (10,000 held, every issue
evicts one): the baseline scans for the token closest to expiry, the heap
pops the least recently used.

Contenders, each run in a fresh process so its RSS is its own:

* ``baseline``: the core's dict (``issue`` sweeps every token: O(n)), built
  through its entry point and factory hook. Filling it to 100,000 tokens with
  ``issue`` would take minutes (about 3 ms a call at 100,000), so past
  ``--baseline-issue-fill`` (20,000) tokens the bench inserts the same entries
  ``issue`` would (a token from ``secrets.token_urlsafe(32)``, ``(subject,
  expires_at)``) straight into its dict, and the last 1,000 go through ``issue``
  again, timed;
* ``heap``: ``ofelia-tokens-heap``, likewise, default settings but the cap;
* ``original``: a reference implementation of the original design (not a
  driver): a dict plus one thread per token that sleeps until its expiry and
  then deletes it (Go's goroutine per token; here an OS thread each, at the
  default stack size). It stops at ``--thread-cap`` (10,000) threads or when
  the OS refuses to start another, whichever comes first.

    .venv/bin/python bench/bench_tokens.py            # --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import secrets
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LIFETIME = 3600.0
SUBJECTS = 1000
ISSUE_SAMPLES = 1000
VALIDATE_SAMPLES = 20_000
DEFAULT_CAP = 10_000
MB = 1_000_000
#: Targets of the issue, for the heap driver.
TARGET_RSS_MB = 50
TARGET_VALIDATE_P99_US = 20.0


# --- the original design, as a reference (not a driver) ---------------------------------


class ThreadPerTokenManager:
    """The original design: every token gets a thread that sleeps until the token
    expires and then deletes it (Go: ``go func() { time.Sleep(ttl); delete(m, t) }()``)."""

    def __init__(self, clock: Any, max_threads: int) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._max_threads = max_threads
        self.threads = 0
        self.refused: str | None = None

    def can_issue(self) -> bool:
        return self.refused is None and self.threads < self._max_threads

    def issue(self, subject: str, expires_in: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (subject, self._clock() + expires_in)
        thread = threading.Thread(target=self._expire_later, args=(token, expires_in), daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread"
            self.refused = str(exc)
            with self._lock:
                del self._tokens[token]
            raise
        self.threads += 1
        return token

    def _expire_later(self, token: str, expires_in: float) -> None:
        time.sleep(expires_in)
        with self._lock:
            self._tokens.pop(token, None)

    def validate(self, token: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None or self._clock() >= entry[1]:
                return None
            return entry[0]

    def revoke(self, token: str) -> bool:
        with self._lock:
            return self._tokens.pop(token, None) is not None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"driver": "original", "active": len(self._tokens), "threads": self.threads}

    def close(self) -> None:
        """The sleeping threads cannot be stopped (nor could the goroutines); they are daemons."""


# --- one contender, in its own process ----------------------------------------------------


def build_manager(name: str, cap: int, thread_cap: int) -> Any:
    """A driver through its entry point and factory hook, as the daemon builds it (unwrapped)."""
    if name == "original":
        return ThreadPerTokenManager(time.monotonic, thread_cap)
    import ofelia_hookspecs.specs
    import pluggy

    from ofelia_core.drivers.loading import build_driver, default_context, register_drivers
    from ofelia_core.drivers.selection import Choice
    from ofelia_core.drivers.table import BY_KEY

    pm = pluggy.PluginManager("ofelia")
    pm.add_hookspecs(ofelia_hookspecs.specs)
    register_drivers(pm, {"token-manager": Choice(BY_KEY["token-manager"], name, "bench")})
    return build_driver(pm, "token-manager", {"max-tokens": cap}, default_context())


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def inject(manager: Any, subject: str) -> str:
    """What the baseline's ``issue`` leaves in its dict, without its O(n) sweep."""
    token = secrets.token_urlsafe(32)
    manager._tokens[token] = (subject, manager._clock() + LIFETIME)
    return token


def run_contender(name: str, size: int, *, trace: bool, at_cap: bool, issue_fill: int,
                  thread_cap: int, seed: int) -> dict[str, Any]:
    from loguru import logger

    logger.remove()  # the heap driver logs its worker's start at DEBUG; keep the output to the table
    rng = random.Random(seed)
    subjects = [f"user-{index:04d}@example.org" for index in range(SUBJECTS)]
    cap = DEFAULT_CAP if at_cap else 2 * size
    threads_before = threading.active_count()
    manager = build_manager(name, cap, thread_cap)
    keep_every = max(1, size // VALIDATE_SAMPLES)
    sample: list[str] = []
    issue_ns: list[int] = []
    # Warm the code paths (and start the heap's worker) before the "before" figures; the
    # original design's warm-up token would cost it a thread, so it only validates.
    if name != "original":
        warm = manager.issue("warm-up", LIFETIME)
        manager.validate(warm)
        manager.revoke(warm)
    manager.validate("warm-up")
    gc.collect()
    rss_before = status_kib("VmRSS")
    if trace:
        tracemalloc.start()
    stopped: str | None = None
    timed_from = size - ISSUE_SAMPLES
    direct = 0
    first_part = 0.0  # seconds of the issue() calls before the direct inserts
    fill_started = time.perf_counter()
    for index in range(size):
        subject = subjects[index % SUBJECTS]
        if name == "original" and not manager.can_issue():
            stopped = manager.refused or f"thread cap ({thread_cap:,})"
            break
        if name == "baseline" and issue_fill <= index < timed_from:
            if not direct:
                first_part = time.perf_counter() - fill_started
            token = inject(manager, subject)
            direct += 1
        else:
            try:
                started = time.perf_counter_ns()
                token = manager.issue(subject, LIFETIME)
                elapsed = time.perf_counter_ns() - started
            except RuntimeError as exc:
                stopped = f"the OS refused a thread: {exc}"
                break
            issue_ns.append(elapsed)
        if index % keep_every == 0:
            sample.append(token)
    fill_seconds = time.perf_counter() - fill_started
    held = manager.stats()["active"]
    traced = tracemalloc.get_traced_memory() if trace else (0, 0)
    if trace:
        tracemalloc.stop()
    gc.collect()
    rss_after = status_kib("VmRSS")
    threads_after = threading.active_count()
    validate_ns: list[int] = []
    if not trace and not at_cap:
        picks = [rng.choice(sample) for _ in range(VALIDATE_SAMPLES)]
        for token in picks:
            started = time.perf_counter_ns()
            result = manager.validate(token)
            validate_ns.append(time.perf_counter_ns() - started)
            if result is None:
                raise SystemExit(f"bench: {name}: a held token did not validate")
    stats = manager.stats()
    manager.close()
    timed = issue_ns[-ISSUE_SAMPLES:]
    return {
        "name": name,
        "size": size,
        "held": held,
        "stopped": stopped,
        "threads": threads_after - threads_before,
        "threads_native": status_kib("Threads"),
        "rss_growth_mb": (rss_after - rss_before) * 1024 / MB,
        "traced_current_mb": traced[0] / MB,
        "traced_peak_mb": traced[1] / MB,
        "issue_us": [ns / 1000 for ns in timed],
        "validate_us": [ns / 1000 for ns in validate_ns],
        "fill_s": fill_seconds,
        "direct": direct,
        "first_part_s": first_part,
        "stats": {k: stats[k] for k in ("heap_size", "heap_garbage", "compactions", "evicted", "worker") if k in stats},
    }


# --- the parent: one process per contender and pass, then the tables --------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--contenders", default="baseline,heap,original")
    parser.add_argument("--baseline-issue-fill", type=int, default=20_000,
                        help="tokens the baseline gets through issue() before the rest is inserted directly")
    parser.add_argument("--thread-cap", type=int, default=10_000, help="most threads the original design starts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--at-cap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        result = run_contender(args.contender, args.size, trace=args.trace, at_cap=args.at_cap,
                               issue_fill=args.baseline_issue_fill, thread_cap=args.thread_cap, seed=args.seed)
        print(json.dumps(result))
        os._exit(0)  # the original design's threads sleep for an hour: do not wait for them

    sys.path.insert(0, str(HERE))
    from common import run_contenders
    from stats import markdown_table, percentile

    def ratio(value: float, reference: float) -> str:
        return f"{value / reference:.3g}" if reference else "n/a"

    names = [name.strip() for name in args.contenders.split(",") if name.strip()]
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    common = ["--baseline-issue-fill", str(args.baseline_issue_fill), "--thread-cap", str(args.thread_cap),
              "--seed", str(args.seed)]
    cases = []
    for size in sizes:
        for name in names:
            argv = ["--contender", name, "--size", str(size), *common]
            cases.append((f"{name} {size}", argv))
            cases.append((f"{name} {size} traced", [*argv, "--trace"]))
    for name in (n for n in names if n != "original"):
        cases.append((f"{name} at cap", ["--contender", name, "--size", str(DEFAULT_CAP + 2 * ISSUE_SAMPLES),
                                          "--at-cap", *common]))
    results = {r["label"]: r for r in run_contenders(__file__, cases)}

    def p(values: list[float], q: float) -> float | None:
        return percentile(values, q) if values else None

    headers = ["contender", "tokens", "held", "manager's threads", "RSS growth MB", "tracemalloc current MB",
               "tracemalloc peak MB", "issue p50 µs", "issue p99 µs", "validate p50 µs", "validate p99 µs",
               "fill s", "RSS / baseline", "issue p99 / baseline", "validate p99 / baseline"]
    rows, notes = [], []
    for size in sizes:
        base = results.get(f"baseline {size}")
        for name in names:
            r, t = results[f"{name} {size}"], results[f"{name} {size} traced"]
            issue99, valid99 = p(r["issue_us"], 99), p(r["validate_us"], 99)
            rows.append([
                name, f"{size:,}", f"{r['held']:,}", r["threads"], fmt(r["rss_growth_mb"]),
                fmt(t["traced_current_mb"]), fmt(t["traced_peak_mb"]),
                fmt(p(r["issue_us"], 50)), fmt(issue99), fmt(p(r["validate_us"], 50), 2), fmt(valid99, 2),
                fmt(r["fill_s"], 2) if not r["direct"] else "n/a",
                ratio(r["rss_growth_mb"], base["rss_growth_mb"]) if base else "n/a",
                ratio(issue99, p(base["issue_us"], 99) or 0) if base and issue99 is not None else "n/a",
                ratio(valid99, p(base["validate_us"], 99) or 0) if base and valid99 is not None else "n/a",
            ])
            if r["stopped"]:
                notes.append(f"{name} {size:,}: stopped at {r['held']:,} tokens: {r['stopped']}")
            if r["direct"]:
                notes.append(f"{name} {size:,}: {r['direct']:,} tokens inserted directly (issue() for the first "
                             f"{args.baseline_issue_fill:,}, which took {r['first_part_s']:.1f} s, and the last "
                             f"{ISSUE_SAMPLES:,})")
            if "heap_size" in r["stats"]:
                notes.append(f"{name} {size:,} stats: {r['stats']}")
    print(f"tokens with {LIFETIME:.0f} s lifetimes, {SUBJECTS:,} subjects; issue latency over the last "
          f"{ISSUE_SAMPLES:,} issues of the fill, validate over {VALIDATE_SAMPLES:,} calls on held tokens; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print()
    print(markdown_table(headers, rows))
    for note in notes:
        print(f"\n- {note}")

    cap_rows = []
    cap_base = results.get("baseline at cap")
    for name in (n for n in names if n != "original"):
        r = results[f"{name} at cap"]
        cap_rows.append([name, f"{DEFAULT_CAP:,}", r["stats"].get("evicted", "n/a"), fmt(p(r["issue_us"], 50)),
                         fmt(p(r["issue_us"], 99)),
                         ratio(p(r["issue_us"], 99) or 0, p(cap_base["issue_us"], 99) or 0) if cap_base else "n/a"])
    print(f"\nissue at the default cap: {DEFAULT_CAP + 2 * ISSUE_SAMPLES:,} issues into a cap of {DEFAULT_CAP:,}, "
          f"the last {ISSUE_SAMPLES:,} timed (each evicts one)\n")
    print(markdown_table(["contender", "cap", "evicted", "issue p50 µs", "issue p99 µs", "issue p99 / baseline"],
                         cap_rows))

    heap = {size: results.get(f"heap {size}") for size in sizes}
    if all(heap.values()):
        biggest = heap[max(sizes)]
        assert biggest is not None
        valid99 = max(p(r["validate_us"], 99) or 0 for r in heap.values() if r)
        threads = {r["threads"] for r in heap.values() if r}
        print(f"\ntargets (heap): {max(sizes):,} tokens under {TARGET_RSS_MB} MB RSS growth: "
              f"{'met' if biggest['rss_growth_mb'] < TARGET_RSS_MB else 'NOT met'} "
              f"({biggest['rss_growth_mb']:.1f} MB); validate p99 under {TARGET_VALIDATE_P99_US:.0f} µs: "
              f"{'met' if valid99 < TARGET_VALIDATE_P99_US else 'NOT met'} (worst {valid99:.2f} µs); "
              f"one background thread whatever the count: "
              f"{'met' if threads == {1} else 'NOT met'} (the manager's threads at each size: {sorted(threads)})")


if __name__ == "__main__":
    main()
