"""The scheduler alone beside APScheduler 3.11: 1,000 jobs ``@every 1s``, all due on
the same second, each running a no-op. Lateness and CPU seconds a minute.

    .venv/bin/python bench/bench_scheduler.py [--duration 60] [--jobs 1000]

What runs, per contender, each in its own process, one after the other:

- ofelia: the Scheduler thread, wired as the daemon wires it: 50 ms before the
  instant it prepares the pass (next instants; ``Dispatcher.prepare_many``
  builds the run records and queue items), at the instant it hands the batch to
  ``Dispatcher.enqueue_many`` (admission of every fire under one lock) -> worker
  threads, woken one by the other, calling the no-op job type's runner. No
  history, hooks, buffers or log lines: bench_run_path.py measures those.
- APScheduler: the BackgroundScheduler thread -> its ThreadPoolExecutor ->
  ``run_job`` -> the no-op function (misfire grace 60 s like ofelia's, coalesce).

Lateness: when the runner (function) starts minus its scheduled instant. CPU:
the process's CPU over the window (after a warm-up), per minute. Targets: p99
at most 10 ms, at most 2 CPU s/min.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Samples,
    aps_scheduled,
    aps_scheduler,
    aps_wakeups,
    measure,
    ms,
    next_second,
    noop_jobs,
    ratio,
    run_contenders,
    versions,
)
from stats import markdown_table

TARGET_P99_MS, TARGET_CPU = 10.0, 2.0


class BareExecutor:
    """The executor's place under the Dispatcher with nothing but the runner: no history, hooks,
    buffers or log lines."""

    not_run = 0

    def now(self) -> float:
        return time.time()

    def execute(self, job: Any, run: Any, cancel: Any = None) -> Any:
        job.spec.runner(job, run, None)
        return run

    def record_not_run(self, job: Any, run: Any, state: str, reason: str) -> Any:
        self.not_run += 1
        run.state, run.error = state, reason
        return run


def run_ofelia(args: argparse.Namespace, samples: Samples) -> dict[str, Any]:
    from ofelia_core.execution.dispatcher import Dispatcher
    from ofelia_core.execution.policies import PolicyEngine
    from ofelia_core.scheduler.core import Scheduler

    def runner(job: Any, run: Any, context: Any) -> int:
        samples.add(run.scheduled_at, time.time())
        return 0

    executor = BareExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=args.pool)  # type: ignore[arg-type]
    # As the daemon wires it: the run-policy engine takes the batch (these jobs have no policy).
    policies = PolicyEngine(dispatcher)
    scheduler = Scheduler(policies.on_due, dispatcher.record_missed,
                          on_due_many=policies.on_due_many, prepare_many=dispatcher.prepare_many)
    jobs = noop_jobs(runner, args.jobs, "@every 1s")
    policies.set_jobs(jobs)
    scheduler.set_jobs(jobs)
    scheduler.start()
    try:
        result = measure(
            samples, warmup=args.warmup, duration=args.duration, expected_per_second=args.jobs,
            groups={"scheduler": "ofelia-scheduler", "workers": "ofelia-run-"}, counters=scheduler.stats,
        )
    finally:
        scheduler.stop()
        dispatcher.shutdown(10)
    result["counters"]["not_run"] = executor.not_run
    return result


def run_apscheduler(args: argparse.Namespace, samples: Samples) -> dict[str, Any]:
    from apscheduler.triggers.interval import IntervalTrigger

    def noop() -> None:
        samples.add(aps_scheduled(), time.time())

    scheduler = aps_scheduler(args.pool)
    trigger = IntervalTrigger(seconds=1, start_date=next_second(), timezone="UTC")
    for i in range(args.jobs):
        scheduler.add_job(noop, trigger, id=f"noop-{i:04d}")
    wakeups = aps_wakeups(scheduler)
    scheduler.start()
    try:
        return measure(
            samples, warmup=args.warmup, duration=args.duration, expected_per_second=args.jobs,
            groups={"scheduler": "APScheduler", "workers": "ThreadPoolExecutor"},
            counters=lambda: {"wakeups": wakeups()},
        )
    finally:
        scheduler.shutdown(wait=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per contender")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds run before measuring")
    parser.add_argument("--ofelia-pool", type=int, default=32, help="the daemon's max-concurrent-runs default")
    parser.add_argument("--contender", choices=("ofelia", "apscheduler"), help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:  # one contender, in this process: print its result as JSON
        run = run_ofelia if args.contender == "ofelia" else run_apscheduler
        print(json.dumps(run(args, Samples())))
        return

    common = ["--duration", str(args.duration), "--jobs", str(args.jobs), "--warmup", str(args.warmup)]
    pools = sorted({args.ofelia_pool, 10}, reverse=True)
    cases = [
        (f"{name} {args.jobs} jobs, {pool} workers, {args.duration:g} s",
         ["--contender", name, "--pool", str(pool), *common])
        for name in ("ofelia", "apscheduler") for pool in pools
    ]
    results = run_contenders(__file__, cases)
    reference = next(r for r in results if r["label"].startswith("apscheduler") and ", 10 workers" in r["label"])
    rows = []
    failed = False
    for r in results:
        late, cpu = r.get("lateness_ms"), r["cpu_per_min"]
        if late is None:
            raise SystemExit(f"bench: {r['label']}: no run in the window")
        rows.append([
            r["label"].rsplit(",", 1)[0], f"{r['runs']}/{r['expected']}",
            ms(late["median"]), ms(late["p95"]), ms(late["p99"]), ms(late["max"]),
            f"{cpu:.2f}", f"{r['threads_per_min']['scheduler']:.2f}", f"{r['threads_per_min']['workers']:.2f}",
            ratio(late["p99"], reference["lateness_ms"]["p99"]), ratio(cpu, reference["cpu_per_min"]),
        ])
        failed |= r["runs"] < r["expected"]
    print(f"Configuration: {args.jobs} jobs `@every 1s` all due on the same second, no-op job; "
          f"{args.duration:g} s measured per contender after {args.warmup:g} s warm-up, one process each; "
          f"worker pools {', '.join(map(str, pools))}; {versions()}.\n")
    print(markdown_table(
        ["contender", "runs in window", "p50 ms", "p95 ms", "p99 ms", "max ms", "CPU s/min",
         "scheduler thread CPU s/min", "worker threads CPU s/min", "p99 / APScheduler (10)",
         "CPU / APScheduler (10)"], rows))
    print(f"\nTargets for ofelia: p99 lateness at most {TARGET_P99_MS:g} ms, at most {TARGET_CPU:g} CPU s/min.")
    if failed:
        raise SystemExit("bench: a contender ran fewer runs than scheduled in the window")


if __name__ == "__main__":
    main()
