"""Idle CPU with 1,000 ``@hourly`` jobs, beside APScheduler 3.11: CPU seconds a minute
and scheduler wake-ups while nothing is due.

    .venv/bin/python bench/bench_idle.py [--duration 60] [--jobs 1000]

Contenders, each in its own process, one after the other:

- ofelia Scheduler: the Scheduler thread alone (callbacks that do nothing).
- ofelia daemon: the real Daemon (Runtime, drivers, SQLite history, Dispatcher,
  Scheduler and its config-watch loop, every 2 s by default) on a config file of
  no-op jobs, state in a temp dir.
- APScheduler: a BackgroundScheduler with the jobs as ``CronTrigger(minute=0)``.

A window that would hold the top of an hour (when every job fires) is moved
past it. Target: near zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Samples,
    aps_scheduler,
    aps_wakeups,
    measure,
    noop_jobs,
    ratio,
    run_contenders,
    start_daemon,
    stop_daemon,
    versions,
)
from stats import markdown_table

OFELIA_GROUPS = {"scheduler": "ofelia-scheduler", "config watch": "daemon-main"}


def skip_top_of_hour(seconds: float) -> None:
    """Sleep past the next top of the hour if it falls within ``seconds`` (the jobs would all fire)."""
    left = 3600 - time.time() % 3600
    if left < seconds + 10:
        print(f"bench: waiting {left + 5:.0f} s for the top of the hour to pass", file=sys.stderr, flush=True)
        time.sleep(left + 5)


def run_scheduler(args: argparse.Namespace) -> dict[str, Any]:
    from ofelia_core.scheduler.core import Scheduler

    scheduler = Scheduler(lambda job, at, trigger: None, lambda job, at: None)
    scheduler.set_jobs(noop_jobs(lambda job, run, context: 0, args.jobs, "@hourly"))
    scheduler.start()
    try:
        return measure(Samples(), warmup=args.warmup, duration=args.duration, groups=OFELIA_GROUPS,
                       counters=scheduler.stats)
    finally:
        scheduler.stop()


def run_daemon(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ofelia-bench-") as workdir:
        daemon, thread = start_daemon(Path(workdir), args.jobs, "@hourly", lambda job, run, context: 0)
        checks = [0]
        files_state = daemon._config_files_state

        def counted() -> Any:
            checks[0] += 1
            return files_state()

        daemon._config_files_state = counted
        try:
            return measure(Samples(), warmup=args.warmup, duration=args.duration, groups=OFELIA_GROUPS,
                           counters=lambda: {**daemon.scheduler.stats(), "config checks": checks[0]})
        finally:
            stop_daemon(daemon, thread)


def run_apscheduler(args: argparse.Namespace) -> dict[str, Any]:
    from apscheduler.triggers.cron import CronTrigger

    fired = [0]

    def noop() -> None:
        fired[0] += 1

    scheduler = aps_scheduler(10)
    for i in range(args.jobs):
        scheduler.add_job(noop, CronTrigger(minute=0, timezone="UTC"), id=f"noop-{i:04d}")
    wakeups = aps_wakeups(scheduler)
    scheduler.start()
    try:
        return measure(Samples(), warmup=args.warmup, duration=args.duration,
                       groups={"scheduler": "APScheduler"}, counters=lambda: {"wakeups": wakeups(), "fired": fired[0]})
    finally:
        scheduler.shutdown(wait=True)


CONTENDERS = {"ofelia-scheduler": run_scheduler, "ofelia-daemon": run_daemon, "apscheduler": run_apscheduler}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per contender")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds run before measuring")
    parser.add_argument("--contender", choices=tuple(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        skip_top_of_hour(args.warmup + args.duration + 5)
        print(json.dumps(CONTENDERS[args.contender](args)))
        return

    common = ["--duration", str(args.duration), "--jobs", str(args.jobs), "--warmup", str(args.warmup)]
    results = run_contenders(__file__, [
        (f"{name} {args.jobs} @hourly jobs, {args.duration:g} s", ["--contender", name, *common])
        for name in CONTENDERS
    ])
    reference = results[-1]
    rows = []
    for r in results:
        counts, per_minute = r["counters"], 60 / r["wall"]
        if counts.get("fired"):
            raise SystemExit(f"bench: {r['label']}: {counts['fired']} runs fired in the window; run it again")
        rows.append([
            r["label"].split(" ", 1)[0], f"{r['cpu_per_min']:.4f}", f"{r['threads_per_min']['scheduler']:.3f}",
            f"{counts['wakeups'] * per_minute:.1f}",
            f"{counts['config checks'] * per_minute:.1f}" if "config checks" in counts else "—",
            ratio(r["cpu_per_min"], reference["cpu_per_min"]),
        ])
    print(f"Configuration: {args.jobs} jobs `@hourly` (APScheduler: CronTrigger(minute=0)), nothing due in the "
          f"window; {args.duration:g} s measured per contender after {args.warmup:g} s warm-up, one process each; "
          f"{versions()}. Thread CPU is counted in 10 ms clock ticks.\n")
    print(markdown_table(["contender", "CPU s/min", "scheduler thread CPU s/min", "scheduler wake-ups/min",
                          "config checks/min", "CPU / APScheduler"], rows))


if __name__ == "__main__":
    main()
