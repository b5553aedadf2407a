"""Metrics overhead: the ``noop`` recorder beside the ``performance`` driver, in one run.

    .venv/bin/python bench/bench_metrics.py [--runs 5000] [--rounds 7] [--threads 1,4] [--jobs 1000] [--scrapes 40]

1. Job throughput. The core's RunExecutor runs a no-op job type (bench/common.py's
   ``job-noop``, registered as a third-party plugin), as the daemon's workers do:
   "Started" line, ``observe_run_start`` hooks, two buffers from the pool, the
   ``execute_run`` hook -> the runner, buffers back, ``metrics.record_run``,
   "Finished" line, ``observe_run_end`` hooks. Each contender has its own plugin
   manager and drivers built by ``start_drivers`` exactly as a Runtime does
   (choices from ``OFELIA_METRICS=noop|performance``, the other concerns on their
   baselines, every driver instrumented), plus the run metrics plugin the Runtime
   registers for a recorder that is not ``noop``. No history store (SQLite would
   dominate a no-op run and hide what is compared; the second table adds it) and no
   log sink (loguru still formats nothing). Runs cycle over ``--jobs`` jobs, so the
   recorder holds that many job series. The contenders alternate, round by round,
   in one process, so both see the same machine; with ``--threads`` N > 1 the
   runs of a round are split over N threads (the daemon's workers are threads).
   Per-run latency is each ``execute`` call timed alone; runs/s is a round's runs
   over its wall time, the median over rounds. With several threads a run that
   straddles one of the GIL's forced switches (every 5 ms) waits for the others'
   turns, milliseconds: "runs > 1 ms" counts those, and once they pass 1 % they are
   what p99 shows.
2. The same with the SQLite history store (one per contender, in a temp dir): a run
   as the daemon commits it.
3. One scrape: ``render_metrics(runtime, fmt)`` (feed the drivers' stats and the
   plugins' samples, then export) after ``--jobs`` jobs ran twice (success and
   failed, so two series of each run family per job), ``--scrapes`` times each.
4. What the hot calls cost: ``observe_operation``, ``record_run``, ``set_gauge``,
   each called in a loop (``timeit``, best of 5).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import noop_hooks, noop_jobs
from stats import markdown_table, percentile

CONTENDERS = ("noop", "performance")


def build(name: str, runner: Any, history_dir: Path | None) -> SimpleNamespace:
    """Hooks, drivers, executor (and history) for one contender, as a Runtime builds them."""
    from ofelia_core.drivers.loading import default_context, start_drivers
    from ofelia_core.drivers.selection import choose_drivers
    from ofelia_core.execution.executor import RunExecutor
    from ofelia_core.history import HistoryStore
    from ofelia_core.metrics_runs import register_run_metrics

    hooks = noop_hooks(runner)
    choices = choose_drivers(env={"OFELIA_METRICS": name})
    drivers = start_drivers(hooks.pm, choices, {}, default_context())
    history = HistoryStore(history_dir / f"{name}.db") if history_dir is not None else None
    executor = RunExecutor(hooks, drivers=drivers, history=history)
    register_run_metrics(hooks.pm, drivers)
    return SimpleNamespace(name=name, hooks=hooks, drivers=drivers, executor=executor, history=history)


def run_round(
    contender: SimpleNamespace, jobs: list[Any], runs: int, threads: int, offset: int
) -> tuple[float, list[float]]:
    """``runs`` runs over ``threads`` threads; returns (wall seconds, per-run seconds)."""
    from ofelia_core.runs import Run

    execute = contender.executor.execute
    per_thread = [runs // threads + (1 if i < runs % threads else 0) for i in range(threads)]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        out = latencies[index]
        perf = time.perf_counter
        barrier.wait()
        for i in range(per_thread[index]):
            job = jobs[(offset + index * 7919 + i) % len(jobs)]
            run = Run(job.name, job.type)
            start = perf()
            execute(job, run)
            out.append(perf() - start)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    return wall, [value for chunk in latencies for value in chunk]


def throughput(args: argparse.Namespace, with_history: bool) -> list[list[str]]:
    rows = []
    runner = lambda job, run, context: 0  # noqa: E731 - the no-op job type
    jobs = list(noop_jobs(runner, args.jobs, "@every 1h").values())
    with tempfile.TemporaryDirectory(prefix="ofelia-bench-metrics-") as tmp:
        for threads in args.threads:
            contenders = [build(name, runner, Path(tmp) if with_history else None) for name in CONTENDERS]
            try:
                results: dict[str, dict[str, list[float]]] = {c.name: {"rates": [], "lat": []} for c in contenders}
                for contender in contenders:  # warm-up: series created, caches filled
                    run_round(contender, jobs, min(args.runs, 2 * args.jobs), threads, 0)
                for round_index in range(args.rounds):
                    order = contenders if round_index % 2 == 0 else contenders[::-1]
                    for contender in order:
                        gc.collect()
                        wall, latencies = run_round(contender, jobs, args.runs, threads, round_index * args.runs)
                        results[contender.name]["rates"].append(len(latencies) / wall)
                        results[contender.name]["lat"].extend(latencies)
            finally:
                for contender in contenders:
                    contender.drivers.close()
                    if contender.history is not None:
                        contender.history.close()
            reference = statistics.median(results["noop"]["rates"])
            for name in CONTENDERS:
                rates, lat = results[name]["rates"], results[name]["lat"]
                rate = statistics.median(rates)
                rows.append([
                    name, threads, f"{rate:,.0f}", f"{min(rates):,.0f} to {max(rates):,.0f}",
                    f"{percentile(lat, 50) * 1e6:.1f}", f"{percentile(lat, 95) * 1e6:.1f}",
                    f"{percentile(lat, 99) * 1e6:.1f}",
                    f"{sum(1 for value in lat if value > 1e-3) / len(lat) * 100:.2f}", f"{rate / reference:.3f}",
                ])
    return rows


def scrape_cost(args: argparse.Namespace) -> list[list[str]]:
    from ofelia_core.metrics_feed import render_metrics
    from ofelia_core.runs import Run

    runner_state = {"code": 0}
    runner = lambda job, run, context: runner_state["code"]  # noqa: E731
    jobs = list(noop_jobs(runner, args.jobs, "@every 1h").values())
    rows = []
    for name in CONTENDERS:
        contender = build(name, runner, None)
        try:
            for code in (0, 1):  # success, then failed: two series per job in each run family
                runner_state["code"] = code
                for job in jobs:
                    contender.executor.execute(job, Run(job.name, job.type))
            runtime = SimpleNamespace(drivers=contender.drivers, hooks=contender.hooks)
            for fmt in ("prometheus", "json"):
                render_metrics(runtime, fmt)  # warm-up
                times, body = [], ""
                for _ in range(args.scrapes):
                    start = time.perf_counter()
                    _, body = render_metrics(runtime, fmt)
                    times.append(time.perf_counter() - start)
                lines = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
                rows.append([
                    name, fmt, f"{len(body) / 1024:,.0f}" if body else "0",
                    f"{lines:,}" if fmt == "prometheus" else "—",
                    f"{percentile(times, 50) * 1e3:.2f}", f"{percentile(times, 95) * 1e3:.2f}",
                    f"{percentile(times, 99) * 1e3:.2f}",
                ])
        finally:
            contender.drivers.close()
    return rows


def call_costs() -> list[list[str]]:
    from ofelia_metrics_perf import build_recorder

    from ofelia_core.baseline.metrics_noop import NoopMetricsRecorder

    recorders: dict[str, Any] = {
        "noop": NoopMetricsRecorder(), "performance": build_recorder({"sample-interval": "0"}, {}),
    }
    calls = {
        "observe_operation": ("observe_operation", ("docker-client", "container_inspect", 0.0042, None)),
        "record_run": ("record_run", ("job-0042", "success", 1.25)),
        "set_gauge (no labels)": ("set_gauge", ("buffer_pool_returned_bytes", 1024.0, None)),
        "set_gauge (2 labels)": ("set_gauge", ("queue_depth", 3.0, {"job": "a", "stream": "stdout"})),
    }
    rows = []
    number = 100_000
    for label, (method, arguments) in calls.items():
        costs = {}
        for name, recorder in recorders.items():
            timer = timeit.Timer("call(*arguments)", globals={"call": getattr(recorder, method),
                                                               "arguments": arguments})
            costs[name] = min(timer.repeat(repeat=5, number=number)) / number * 1e9
        rows.append([label, f"{costs['noop']:.0f}", f"{costs['performance']:.0f}",
                     f"{costs['performance'] - costs['noop']:.0f}"])
    for recorder in recorders.values():
        recorder.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000, help="runs per contender per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (contenders alternate)")
    parser.add_argument("--threads", default="1,4", help="thread counts, comma separated")
    parser.add_argument("--jobs", type=int, default=1000, help="distinct jobs (series in the recorder)")
    parser.add_argument("--scrapes", type=int, default=40, help="scrapes timed per contender and format")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]

    from loguru import logger

    import ofelia_core

    logger.remove()  # the "Started"/"Finished" lines are formatted by neither contender
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"Python {platform.python_version()}, ofelia {ofelia_core.__version__}, {os.cpu_count()} CPUs "
          f"(load average at start {load}); "
          f"{args.runs:,} runs per contender per round, {args.rounds} rounds alternating, "
          f"{args.jobs:,} jobs; ratio = runs/s over noop's.\n")
    headers = ["recorder", "threads", "runs/s (median)", "runs/s range", "run p50 µs", "run p95 µs",
               "run p99 µs", "runs > 1 ms %", "runs/s ratio"]
    print("Run path without history (RunExecutor.execute of a no-op job):\n")
    print(markdown_table(headers, throughput(args, with_history=False)))
    print("\nRun path with the SQLite history store (record_start + record_end commits):\n")
    print(markdown_table(headers, throughput(args, with_history=True)))
    print(f"\nOne scrape, render_metrics(runtime, fmt), {args.jobs:,} jobs x 2 states ({args.scrapes} scrapes):\n")
    print(markdown_table(["recorder", "format", "body KiB", "samples", "p50 ms", "p95 ms", "p99 ms"],
                         scrape_cost(args)))
    print("\nOne call of the recorder's hot methods, ns (best of 5 x 100,000):\n")
    print(markdown_table(["call", "noop ns", "performance ns", "added ns"], call_costs()))


if __name__ == "__main__":
    main()
