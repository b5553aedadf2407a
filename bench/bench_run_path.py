"""The full run path at 100 and 1,000 runs a second, beside APScheduler doing the same
bookkeeping in its job function; and where the time goes.

    .venv/bin/python bench/bench_run_path.py [--duration 30] [--rates 100,1000]

What runs, per contender and rate (N jobs ``@every 1s`` all due on the same
second, N = the rate), each in its own process, one after the other:

- ofelia: the real Daemon (ofelia_core/daemon.py: Runtime, baseline drivers,
  save middleware, Dispatcher, Scheduler, config watch) on a config file of N
  no-op jobs, its state directory (SQLite history) in a temp dir and its log
  lines in a file there. A run: record_start (INSERT, commit), "Started" line,
  observe_run_start hooks, two buffers from the pool, execute_run hook -> the
  no-op runner, buffers back, record_end (UPDATE + prune to history-limit 10,
  commit), metrics, "Finished" line, observe_run_end hooks.
- APScheduler: a BackgroundScheduler (10 workers, its default) with N interval
  jobs whose function does the same bookkeeping by hand through the same
  HistoryStore and log file: Run, record_start, "Started" line, record_end
  (history-limit 10), "Finished" line.

Lateness: run start (``run.started_at``) minus the scheduled instant. Run path:
run start -> record_end committed. Stages: wall and thread CPU of each part,
from timing wrappers set on the live objects (their cost per call is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    NOOP_TYPE,
    Samples,
    aps_scheduled,
    aps_scheduler,
    log_to_file,
    measure,
    ms,
    next_second,
    ratio,
    run_contenders,
    start_daemon,
    stop_daemon,
    versions,
)
from stats import markdown_table

HISTORY_LIMIT = 10  # ofelia's default history-limit


class Stages:
    """Calls, wall and thread-CPU seconds of wrapped callables, by stage."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: dict[str, list[float]] = {}

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        function = getattr(owner, attr)
        totals, lock = self.totals.setdefault(stage, [0, 0.0, 0.0]), self.lock
        perf, thread_time = time.perf_counter, time.thread_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = perf(), thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                wall, cpu = perf() - wall, thread_time() - cpu
                with lock:
                    totals[0] += 1
                    totals[1] += wall
                    totals[2] += cpu

        setattr(owner, attr, timed)

    def counters(self) -> dict[str, float]:
        with self.lock:
            return {f"{stage}|{i}": value for stage, t in self.totals.items() for i, value in enumerate(t)}


class Proxy:
    """Stands for an object whose methods cannot be replaced (slots, loguru's shared logger)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def track_commits(history: Any, samples: Samples) -> None:
    """Sample lateness and start -> committed each time ``record_end`` returns."""
    record_end = history.record_end

    def tracked(run: Any, **kwargs: Any) -> None:
        record_end(run, **kwargs)
        samples.add(run.scheduled_at, run.started_at, time.time() - run.started_at)

    history.record_end = tracked


def run_ofelia(args: argparse.Namespace, workdir: Path, stages: Stages, samples: Samples) -> dict[str, Any]:
    daemon, thread = start_daemon(workdir, args.jobs, "@every 1s", lambda job, run, context: 0)
    try:
        executor, history = daemon.runtime.executor, daemon.runtime.history
        # The scheduler prepares a pass ahead of its instant (Dispatcher.prepare_many) and hands
        # every fire of it over in one call at the instant (Dispatcher.enqueue_many).
        stages.wrap(daemon.scheduler, "_prepare_many", "scheduler thread: prepare")
        stages.wrap(daemon.scheduler, "_on_due_many", "scheduler thread: hand-off")
        stages.wrap(executor, "execute", "run: all")
        stages.wrap(history, "record_start", "history.record_start")
        stages.wrap(history, "record_end", "history.record_end")
        track_commits(history, samples)
        executor.log = Proxy(executor.log)
        stages.wrap(executor.log, "info", "log lines")
        stages.wrap(executor.log, "log", "log lines")
        for hook in ("observe_run_start", "execute_run", "observe_run_end"):
            stages.wrap(executor.hooks, hook, f"hooks.{hook}")
        stages.wrap(executor.drivers.buffer_pool, "get", "buffer pool get/put")
        stages.wrap(executor.drivers.buffer_pool, "put", "buffer pool get/put")
        executor.drivers.metrics = Proxy(executor.drivers.metrics)
        stages.wrap(executor.drivers.metrics, "record_run", "metrics.record_run")
        groups = {"scheduler": "ofelia-scheduler", "workers": "ofelia-run-", "config watch": "daemon-main"}
        return measure(samples, warmup=args.warmup, duration=args.duration, groups=groups,
                       counters=stages.counters, expected_per_second=args.jobs)
    finally:
        stop_daemon(daemon, thread)


def run_apscheduler(args: argparse.Namespace, workdir: Path, stages: Stages, samples: Samples) -> dict[str, Any]:
    from apscheduler.triggers.interval import IntervalTrigger
    from loguru import logger

    from ofelia_core.execution.executor import finished_line, job_prefix
    from ofelia_core.history import HistoryStore
    from ofelia_core.runs import Run, RunState

    log_to_file(workdir / "apscheduler.log")
    log = Proxy(logger)
    history = HistoryStore(workdir / "history.db")

    def job(name: str) -> None:
        run = Run(name, NOOP_TYPE, scheduled_at=aps_scheduled())
        run.started_at = time.time()
        history.record_start(run)
        log.info(f"{job_prefix(run)} Started - noop")
        run.exit_code, run.state, run.ended_at = 0, RunState.SUCCESS, time.time()
        history.record_end(run, history_limit=HISTORY_LIMIT)
        log.log("INFO", finished_line(run))

    holder = SimpleNamespace(job=job)
    stages.wrap(holder, "job", "run: all")
    stages.wrap(history, "record_start", "history.record_start")
    stages.wrap(history, "record_end", "history.record_end")
    track_commits(history, samples)
    stages.wrap(log, "info", "log lines")
    stages.wrap(log, "log", "log lines")
    scheduler = aps_scheduler(args.pool)
    stages.wrap(scheduler._executors["default"], "submit_job", "scheduler thread: hand-off")
    trigger = IntervalTrigger(seconds=1, start_date=next_second(), timezone="UTC")
    for i in range(args.jobs):
        scheduler.add_job(holder.job, trigger, args=[f"noop-{i:04d}"], id=f"noop-{i:04d}")
    scheduler.start()
    try:
        return measure(samples, warmup=args.warmup, duration=args.duration,
                       groups={"scheduler": "APScheduler", "workers": "ThreadPoolExecutor"},
                       counters=stages.counters, expected_per_second=args.jobs)
    finally:
        scheduler.shutdown(wait=True)
        history.close()


def contender(args: argparse.Namespace) -> dict[str, Any]:
    """One contender at one rate, in this process; the stage totals are turned into µs per run."""
    stages, samples = Stages(), Samples()
    run = run_ofelia if args.contender == "ofelia" else run_apscheduler
    with tempfile.TemporaryDirectory(prefix="ofelia-bench-") as workdir:
        result = run(args, Path(workdir), stages, samples)
    deltas = result.pop("counters")
    runs = deltas["run: all|0"]
    result["runs_per_s"] = runs / result["wall"]
    result["stages_us"] = {
        stage: {"calls": deltas[f"{stage}|0"] / runs, "wall": deltas[f"{stage}|1"] / runs * 1e6,
                "cpu": deltas[f"{stage}|2"] / runs * 1e6}
        for stage in stages.totals
    } if runs else {}
    return result


def stage_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Stages by CPU per run, "run: rest" (the run's time outside the timed parts), then CPU by thread."""
    for r in results:
        stages = r["stages_us"]
        parts = [v for k, v in stages.items() if not k.startswith(("run:", "scheduler thread"))]
        stages["run: rest"] = {key: stages["run: all"][key] - sum(v[key] for v in parts) for key in ("cpu", "wall")}
        stages["run: rest"]["calls"] = 1
    names = sorted({k for r in results for k in r["stages_us"]}, key=lambda k: (
        k != "run: all", -max(r["stages_us"].get(k, {"cpu": 0})["cpu"] for r in results)))
    rows = []
    for name in names:
        cells = [r["stages_us"].get(name) for r in results]
        rows.append([name, *("—" if c is None else f"{c['cpu']:.0f} / {c['wall']:.0f} ({c['calls']:.3g})"
                             for c in cells)])
    for group in ("scheduler", "workers", "config watch"):
        rows.append([f"CPU of the {group} thread(s)", *(
            f"{r['threads_per_min'][group] / 60 / r['runs_per_s'] * 1e6:.0f}" if group in r["threads_per_min"]
            else "—" for r in results)])
    rows.append(["CPU of the process", *(f"{r['cpu_per_min'] / 60 / r['runs_per_s'] * 1e6:.0f}" for r in results)])
    return rows


def wrapper_cost_us() -> float:
    """What one timing wrapper adds to a call, in µs (they are counted in the stages' figures)."""
    owner = SimpleNamespace(call=lambda: None)
    plain = timeit.timeit(owner.call, number=100_000)
    Stages().wrap(owner, "call", "x")
    return (timeit.timeit(owner.call, number=100_000) - plain) * 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured per contender and rate")
    parser.add_argument("--rates", default="100,1000", help="runs a second (jobs @every 1s), comma separated")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds run before measuring")
    parser.add_argument("--aps-pool", type=int, default=10, help="APScheduler's thread pool (its default: 10)")
    parser.add_argument("--contender", choices=("ofelia", "apscheduler"), help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(contender(args)))
        return

    rates = [int(rate) for rate in args.rates.split(",")]
    common = ["--duration", str(args.duration), "--warmup", str(args.warmup), "--pool", str(args.aps_pool)]
    cases = [(f"{name} {rate} runs/s, {args.duration:g} s", ["--contender", name, "--jobs", str(rate), *common])
             for rate in rates for name in ("ofelia", "apscheduler")]
    results = run_contenders(__file__, cases)
    by_rate = {rate: results[2 * i:2 * i + 2] for i, rate in enumerate(rates)}
    rows = []
    for rate, pair in by_rate.items():
        reference = pair[1]
        for r in pair:
            late, path = r.get("lateness_ms"), r.get("latency_ms")
            if late is None or path is None:
                raise SystemExit(f"bench: {r['label']}: no run committed in the window")
            rows.append([
                r["label"].split(" ", 1)[0], rate, f"{r['runs_per_s']:.0f}", f"{r['runs']}/{r['expected']}",
                ms(late["median"]), ms(late["p99"]), ms(late["max"]), ms(path["median"]), ms(path["p99"]),
                f"{r['cpu_per_min']:.2f}", ratio(r["cpu_per_min"], reference["cpu_per_min"]),
            ])
    print(f"Configuration: jobs `@every 1s` all due on the same second (as many as the rate), no-op job type; "
          f"{args.duration:g} s measured per contender and rate after {args.warmup:g} s warm-up, one process each; "
          f"ofelia: the Daemon with its defaults (32 workers, history-limit 10, SQLite synchronous NORMAL); "
          f"APScheduler: {args.aps_pool} workers; {versions()}. Timing wrappers add {wrapper_cost_us():.1f} µs "
          "a wrapped call (14 calls a run for ofelia, 6 for APScheduler).\n")
    print(markdown_table(
        ["contender", "target runs/s", "runs/s done", "runs in window", "lateness p50 ms", "lateness p99 ms",
         "lateness max ms", "start→committed p50 ms", "start→committed p99 ms", "CPU s/min",
         "CPU / APScheduler"], rows))
    print("\nWhere the time goes: thread CPU / wall µs per run (calls per run); "
          "wall includes waiting for locks and the GIL.\n")
    print(markdown_table(["stage", *(r["label"].rsplit(",", 1)[0] for r in results)], stage_rows(results)))
    behind = [r["label"] for r in results if r["runs"] < r["expected"]]
    if behind:
        print(f"\nNot all runs scheduled in the window were committed within 10 s of its end: {'; '.join(behind)}.")


if __name__ == "__main__":
    main()
