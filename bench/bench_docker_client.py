"""The Docker client drivers side by side on the real engine: the baseline (Docker SDK)
against the pooled driver (plugins/docker-pooled), with a bare HTTP request as the floor.

    .venv/bin/python bench/bench_docker_client.py [--levels 1,10,50,100,200] [--overload 1000]
        [--min-runs 60] [--idle-samples 3000] [--containers 8]

Three parts, one process, the same engine (scripts/docker-engine.sh; OFELIA_TEST_DOCKER_HOST
overrides), every container on network ``none``:

1. A control call alone (``container_inspect`` of a running container), no other load:
   the bare floor (``GET /containers/{id}/json`` on one kept-alive ``http.client``
   unix-socket connection), the baseline and the pooled driver, each through the core's
   instrumentation layer as the daemon calls it; the three take turns call by call.
   Target: pooled p50 at most 2x the bare floor.
2. N concurrent job-exec runs (N in ``--levels``), each thread firing runs back to back
   through ``RunExecutor.execute`` (history, hooks, buffers: the daemon's run path minus
   the scheduler) into ``--containers`` sleep containers; meanwhile one prober thread makes
   a control call (``container_inspect`` of a container no run uses) through the same
   driver every 20 ms, and another makes the bare request.
   Per contender: runs a second, the engine calls of the runs (``exec_create``,
   ``exec_start`` to its headers, ``exec_inspect``) and the probers' latency.
   Target: pooled probe p50 at N = 50 at most 0.6x the baseline's. The contenders
   alternate which goes first from one level to the next.
3. Overload: ``--overload`` job-exec runs fired at once (one thread each), per contender:
   runs that succeeded and failed (with the errors), urllib3's "Connection pool is full"
   warnings, the probers' p99 meanwhile (target under 100 ms), and the runs found in
   the history afterwards (every run must be recorded).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import logging
import math
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import engine_api, engine_url, log_to_file, ms, ratio, remove_containers, start_sleepers
from stats import markdown_table, summary_ms

CONTENDERS = ("baseline", "pooled")
#: The pooled driver with as many control connections as request slots (the seed's 100 is the default).
TUNED = "pooled:max-conns-per-host=200"
PROBE_INTERVAL = 0.02
OVERLOAD_P99_TARGET_MS = 100.0


class Recorder:
    """A metrics recorder keeping every Docker operation's latency (bench only)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = collections.defaultdict(list)

    def observe_operation(self, concern: str, operation: str, seconds: float, error: str | None) -> None:
        if error is None:
            self.samples[operation].append(seconds)

    def record_run(self, job_name: str, state: str, seconds: float) -> None: ...
    def set_gauge(self, name: str, value: float, labels: Any = None) -> None: ...
    def export(self, fmt: str) -> str:
        return ""

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None: ...


class BareHttp:
    """The floor: one kept-alive HTTP/1.1 connection on the engine's unix socket, nothing else."""

    def __init__(self, socket_path: str) -> None:
        self.conn = http.client.HTTPConnection("localhost")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path)
        self.conn.sock = sock
        version = self.get("/version")
        import json

        self.prefix = "/v" + json.loads(version)["ApiVersion"]

    def get(self, path: str) -> bytes:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"bare GET {path}: {response.status}")
        return data

    def inspect(self, container: str) -> None:
        self.get(f"{self.prefix}/containers/{container}/json")


class Contender:
    """One driver, in a Runtime built as the daemon builds it, its Docker client re-instrumented
    with a recorder that keeps every latency."""

    def __init__(self, name: str, url: str, containers: list[str], workdir: Path) -> None:
        from ofelia_core.drivers.instrumentation import instrument
        from ofelia_core.runtime import Runtime, load_and_validate

        # "pooled:max-conns-per-host=200,..." : the driver, then [docker-client] settings.
        self.name = name
        driver, _, extra = name.partition(":")
        settings = "".join(f"{item.replace('=', ' = ', 1)}\n" for item in extra.split(",") if item)
        tag = uuid.uuid4().hex[:6]
        self.jobs = [f"bench-{driver}-{tag}-{i}" for i in range(len(containers))]
        config = workdir / f"{driver}-{tag}.ini"
        config.write_text(
            f"[global]\n\n[docker-client]\nbase-url = {url}\n{settings}\n"
            + "".join(f'[job-exec "{job}"]\nschedule = @manual\ncontainer = {cid}\ncommand = echo hi\n'
                      "history-limit = 0\n\n" for job, cid in zip(self.jobs, containers, strict=True))
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
        env["OFELIA_STATE_DIR"] = str(workdir / f"state-{driver}-{tag}")
        env["OFELIA_DOCKER_CLIENT"] = driver
        self.runtime = Runtime(load_and_validate(str(config), env), env=env)
        drivers = self.runtime.drivers
        self.raw = drivers.docker_client.__wrapped__  # type: ignore[attr-defined]
        self.recorder = Recorder()
        drivers.docker_client = instrument("docker-client", self.raw, self.recorder)  # type: ignore[arg-type]
        self.client = drivers.docker_client
        self.executor = self.runtime.executor

    def run(self, index: int) -> str | None:
        """One job-exec run; its error text, or None when it succeeded with the right output."""
        from ofelia_core.runs import Run, RunState, Trigger

        job = self.runtime.jobs[self.jobs[index % len(self.jobs)]]
        run = self.executor.execute(job, Run(job.name, job.type, trigger=Trigger.MANUAL))
        if run.state == RunState.SUCCESS and run.stdout == b"hi\n":
            return None
        return f"{run.state.value}: {(run.error or '').splitlines()[0] if run.error else run.stdout!r}"

    def recorded(self) -> int:
        return sum(len(self.runtime.history.recent(job, 100_000)) for job in self.jobs)

    def reset(self) -> None:
        self.recorder.samples.clear()

    def close(self) -> None:
        self.runtime.close()


class Prober:
    """Makes one control call every ``PROBE_INTERVAL`` until stopped; keeps the latencies."""

    def __init__(self, call: Callable[[], None]) -> None:
        self.call = call
        self.samples: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        perf = time.perf_counter
        while not self._stop.wait(PROBE_INTERVAL):
            start = perf()
            try:
                self.call()
            except Exception:
                self.errors += 1
                continue
            self.samples.append(perf() - start)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def fire(contender: Contender, threads: int, per_thread: int) -> tuple[list[str | None], float]:
    """``threads`` threads started together, each running ``per_thread`` runs back to back."""
    results: list[str | None] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def worker(first: int) -> None:
        barrier.wait()
        mine = []
        for k in range(per_thread):
            try:
                mine.append(contender.run(first + k))
            except Exception as exc:  # a run that raises is a lost run: count it
                mine.append(f"raised {type(exc).__name__}: {exc}")
        with lock:
            results.extend(mine)

    pool = [threading.Thread(target=worker, args=(i * per_thread,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    return results, time.perf_counter() - start


class PoolWarnings(logging.Handler):
    """Counts urllib3's "Connection pool is full, discarding connection" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Connection pool is full" in record.getMessage():
            self.count += 1


def p(samples: list[float], key: str) -> str:
    return ms(summary_ms(samples)[key]) if samples else "n/a"


def part_idle(contenders: dict[str, Contender], bare: BareHttp, target: str, samples: int) -> list[list[Any]]:
    calls: dict[str, Callable[[], Any]] = {"bare HTTP request": lambda: bare.inspect(target)}
    for name, contender in contenders.items():
        calls[f"{name} driver"] = lambda c=contender: c.client.container_inspect(target)
    timings: dict[str, list[float]] = {label: [] for label in calls}
    perf = time.perf_counter
    for _ in range(200):  # warm-up
        for call in calls.values():
            call()
    for _ in range(samples):
        for label, call in calls.items():
            start = perf()
            call()
            timings[label].append(perf() - start)
    floor = summary_ms(timings["bare HTTP request"])["median"]
    rows = []
    for label, values in timings.items():
        s = summary_ms(values)
        rows.append([label, len(values), f"{s['median'] * 1000:.0f}", f"{s['p95'] * 1000:.0f}",
                     f"{s['p99'] * 1000:.0f}", ratio(s["median"], floor)])
    return rows


def part_levels(args: argparse.Namespace, contenders: dict[str, Contender], bare: BareHttp,
                target: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    probe_p50: dict[tuple[int, str], float] = {}
    for turn, level in enumerate(args.levels):
        per_thread = max(2, math.ceil(args.min_runs / level))
        order = tuple(contenders) if turn % 2 == 0 else tuple(reversed(tuple(contenders)))
        for name in order:
            contender = contenders[name]
            contender.reset()
            with Prober(lambda c=contender: c.client.container_inspect(target)) as probe, \
                    Prober(lambda: bare.inspect(target)) as floor:
                results, wall = fire(contender, level, per_thread)
            errors = [r for r in results if r is not None]
            ok = len(results) - len(errors)
            samples = contender.recorder.samples
            probe_p50[(level, name)] = summary_ms(probe.samples)["median"] if probe.samples else math.nan
            rows.append([
                level, name, f"{ok}/{len(results)}", f"{ok / wall:.1f}",
                p(samples["exec_create"], "median"), p(samples["exec_create"], "p95"),
                p(samples["exec_create"], "p99"),
                p(samples["exec_start"], "median"), p(samples["exec_inspect"], "median"),
                p(samples["exec_inspect"], "p99"),
                p(probe.samples, "median"), p(probe.samples, "p95"), p(probe.samples, "p99"),
                p(floor.samples, "median"), p(floor.samples, "p99"),
                ratio(probe_p50[(level, name)], probe_p50.get((level, "baseline"), math.nan))
                if name == "pooled" and (level, "baseline") in probe_p50 else "",
            ])
            print(f"  level {level:>3} {name:<8} {ok}/{len(results)} runs in {wall:.1f} s", flush=True)
            if errors:
                print(f"    errors: {collections.Counter(errors).most_common(3)}", flush=True)
    # The pooled row of a level where it went first has no ratio yet: fill it in.
    for row in rows:
        if row[1] == "pooled" and row[-1] == "" and (row[0], "baseline") in probe_p50:
            row[-1] = ratio(probe_p50[(row[0], "pooled")], probe_p50[(row[0], "baseline")])
    return rows


def part_overload(args: argparse.Namespace, contenders: dict[str, Contender], bare: BareHttp,
                  target: str) -> tuple[list[list[Any]], dict[str, collections.Counter[str]]]:
    """Each of ``contenders`` in turn takes ``--overload`` runs fired at once."""
    rows, errors_by = [], {}
    warnings = PoolWarnings()
    logging.getLogger("urllib3").addHandler(warnings)
    for name in contenders:
        contender = contenders[name]
        before = contender.recorded()
        warnings.count = 0
        contender.reset()
        with Prober(lambda c=contender: c.client.container_inspect(target)) as probe, \
                Prober(lambda: bare.inspect(target)) as floor:
            results, wall = fire(contender, args.overload, 1)
        errors = collections.Counter(r for r in results if r is not None)
        errors_by[name] = errors
        ok = len(results) - sum(errors.values())
        recorded = contender.recorded() - before
        samples = contender.recorder.samples
        rows.append([name, f"{ok}/{len(results)}", sum(errors.values()), warnings.count, f"{wall:.1f}",
                     p(samples["exec_create"], "median"), p(samples["exec_create"], "p99"),
                     p(samples["exec_inspect"], "median"), p(samples["exec_inspect"], "p99"),
                     probe.errors, p(probe.samples, "median"), p(probe.samples, "p99"),
                     p(floor.samples, "p99"), f"{recorded}/{len(results)}"])
        print(f"  overload {name}: {ok}/{len(results)} ok in {wall:.1f} s, {warnings.count} pool warnings",
              flush=True)
    logging.getLogger("urllib3").removeHandler(warnings)
    return rows, errors_by


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50, 100, 200])
    parser.add_argument("--overload", type=int, default=1000, help="runs fired at once (0: skip)")
    parser.add_argument("--overload-contenders", type=lambda s: s.split(";"), default=[*CONTENDERS, TUNED],
                        help="drivers (with settings) in the overload part, ';'-separated")
    parser.add_argument("--min-runs", type=int, default=60, help="runs per contender per level, at least")
    parser.add_argument("--idle-samples", type=int, default=3000)
    parser.add_argument("--containers", type=int, default=8)
    parser.add_argument("--contenders", type=lambda s: s.split(","), default=list(CONTENDERS),
                        help="drivers to compare (default baseline,pooled)")
    args = parser.parse_args()

    url = engine_url()
    api = engine_api(url)
    session = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="bench-docker-client-"))
    log_to_file(workdir / "ofelia.log")
    contenders: dict[str, Contender] = {}
    try:
        # The probers inspect a container no job execs into: they measure the engine, not a
        # container's lock that the runs hold.
        *containers, target = start_sleepers(api, session, args.containers + 1)
        bare = BareHttp(url.removeprefix("unix://"))
        for name in args.contenders:
            contenders[name] = Contender(name, url, containers, workdir)
        for contender in contenders.values():  # warm-up: connections, API version, first runs
            fire(contender, 4, 3)

        print("1. control call alone", flush=True)
        idle = part_idle(contenders, bare, target, args.idle_samples)
        print("2. concurrent job-exec runs", flush=True)
        levels = part_levels(args, contenders, bare, target)
        overload: list[list[Any]] = []
        overload_errors: dict[str, collections.Counter[str]] = {}
        if args.overload:
            print("3. overload", flush=True)
            for name in args.overload_contenders:
                if name not in contenders:
                    contenders[name] = Contender(name, url, containers, workdir)
                    fire(contenders[name], 4, 3)
            overload, overload_errors = part_overload(
                args, {name: contenders[name] for name in args.overload_contenders}, bare, target)
        stats = {name: c.raw.stats() for name, c in contenders.items()}
    finally:
        for contender in contenders.values():
            contender.close()
        remove_containers(api, session)
        api.close()

    print()
    print(f"Docker client drivers on {url}; {os.cpu_count()} CPUs; log: {workdir / 'ofelia.log'}")
    print()
    print("1. A control call alone (container_inspect), µs")
    print()
    print(markdown_table(["call", "samples", "p50 µs", "p95 µs", "p99 µs", "p50 / bare"], idle))
    print()
    print("2. Concurrent job-exec runs (ms); probe = a control call every 20 ms meanwhile")
    print()
    print(markdown_table(
        ["N", "driver", "ok runs", "runs/s", "exec_create p50", "p95", "p99", "exec_start p50",
         "exec_inspect p50", "p99", "probe p50", "probe p95", "probe p99", "bare probe p50", "bare probe p99",
         "probe p50 pooled/baseline"],
        levels,
    ))
    if overload:
        print()
        print(f"3. Overload: {args.overload} job-exec runs fired at once")
        print()
        print(markdown_table(
            ["driver", "ok runs", "failed", "pool-full warnings", "wall s", "exec_create p50 ms", "p99",
             "exec_inspect p50 ms", "p99", "probe errors", "probe p50 ms", "probe p99 ms", "bare probe p99 ms",
             "runs in history"],
            overload,
        ))
        for name, errors in overload_errors.items():
            for text, count in errors.most_common(3):
                print(f"- {name}: {count} x {text[:160]}")
    print()
    for name in contenders:
        driver = stats[name]
        if name.startswith("pooled"):
            pools = driver["pools"]
            print(f"{name} stats: breaker {driver['breaker']['state']}, requests peak {driver['requests']['peak']}"
                  f" waited {driver['requests']['waited']} timeouts {driver['requests']['timeouts']}; control pool"
                  f" created {pools['control']['created']} peak {pools['control']['peak_in_use']} waits"
                  f" {pools['control']['waits']}; stream pool created {pools['stream']['created']}"
                  f" peak {pools['stream']['peak_in_use']}")


if __name__ == "__main__":
    main()
