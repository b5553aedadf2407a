"""A job-exec and a job-run on the real engine at 1, 10 and 50 concurrent runs, through
ofelia's run path with the baseline driver, beside the bare Docker SDK doing the same
in the same process: wall time, engine requests per run and their latency.

    .venv/bin/python bench/bench_docker_jobs.py [--runs 100,100,200] [--concurrency 1,10,50]
        [--operations exec,run] [--warmup 10] [--mode paired|turns]

The engine is the project's own (scripts/docker-engine.sh; OFELIA_TEST_DOCKER_HOST
overrides), image ofelia-test/busybox:latest, every container on network ``none``.

Operations:

- job-exec: ``echo hi`` in a long-running ``sleep`` container (created here).
- job-run: a new container from the image running ``echo hi``, removed after
  (``delete = true``, ``pull = false``: there is no registry to pull from, and
  ``pull = true`` would ask it at every run).

Contenders, in one process, the same engine and the same machine:

- ofelia: ``RunExecutor.execute`` on the jobs of a config file built by
  ``Runtime`` as the daemon builds them (baseline drivers, instrumented; buffers
  from the pool; save middleware; SQLite history in a temp dir; log lines to a
  file there): a daemon's run minus the scheduler and the dispatcher's hand-off.
- bare SDK: ``docker.APIClient`` with its defaults: ``exec_create``,
  ``exec_start(stream=True, demux=True)``, ``exec_inspect``; ``create_container``,
  ``start``, ``wait``, ``logs``, ``remove_container``.

Concurrency N: N threads started together, each firing runs back to back.
At N = 1 the contenders take turns in rounds of 10 runs, the order swapped
every round, so drift in the engine's speed falls on both. At N > 1 (``--mode
paired``, the default) both run in one batch, the N threads shared out between
them: the engine carries N runs at every moment and both see it in the same
state (the engine is the bottleneck there, and taking turns left the ratio to
the drift of its queue: ±13% from one run of the script to the next);
``--mode turns`` runs each alone with N threads, in rounds as at N = 1. Warm-up
first (runs at 1 and 10 concurrent, not counted).

Engine requests are counted in process, per run, by wrapping ``requests``'
``HTTPAdapter.send`` (both contenders go through it); their latency is the time
to the response's headers. New connections: ``UnixHTTPConnection.connect`` calls.
Client CPU: thread CPU of the thread doing the run. A run that fails is counted,
listed with its error and left out of the figures, and the script then exits 1.
Targets: three engine requests per job-exec; ofelia's p50 wall at most 5% over
the bare SDK's.
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    TEST_IMAGE,
    bench_labels,
    engine_api,
    engine_url,
    log_to_file,
    ms,
    remove_containers,
    start_sleepers,
    versions,
)
from stats import markdown_table, summary_ms

EXEC_TARGET_REQUESTS = 3
#: Rounds per cell at most (the contenders take turns, the order swapped every round).
MAX_ROUNDS = 10
OVERHEAD_TARGET = 1.05
CONTENDERS = ("bare SDK", "ofelia")
OPERATIONS = {"exec": "job-exec", "run": "job-run"}
COMMAND = ["echo", "hi"]
OUTPUT = b"hi\n"


# --- counting engine requests -----------------------------------------------------------


class Tally:
    """What one run cost: engine requests (endpoint, seconds), new connections, wall, CPU."""

    __slots__ = ("connects", "cpu", "discards", "error", "requests", "runner", "wall")

    def __init__(self) -> None:
        self.requests: list[tuple[str, float]] = []
        self.connects = self.discards = 0
        self.wall = self.cpu = self.runner = 0.0
        #: Why the run failed (``Type: message``); None when it succeeded.
        self.error: str | None = None


_local = threading.local()
_VERSION = re.compile(r"^/v\d+\.\d+")
_IDS = re.compile(r"^(/containers|/exec)/[^/]+")
_IMAGE = re.compile(r"^/images/.+/json$")


def endpoint(method: str | None, path: str) -> str:
    """``POST /exec/{id}/start``: the request without version, ids and query."""
    path = _VERSION.sub("", path.split("?", 1)[0])
    path = _IMAGE.sub("/images/{name}/json", _IDS.sub(r"\1/{id}", path))
    return f"{method} {path}"


def count_requests() -> None:
    """Wrap every ``requests`` adapter and the SDK's unix-socket connections, and count the
    connections urllib3 discards (its pool was full); record into the running thread's Tally."""
    import docker.transport.unixconn
    import requests.adapters

    send = requests.adapters.HTTPAdapter.send
    connect = docker.transport.unixconn.UnixHTTPConnection.connect
    perf = time.perf_counter

    def counted_send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        start = perf()
        try:
            return send(self, request, *args, **kwargs)
        finally:
            tally = getattr(_local, "tally", None)
            if tally is not None:
                tally.requests.append((endpoint(request.method, request.path_url), perf() - start))

    def counted_connect(self: Any) -> Any:
        tally = getattr(_local, "tally", None)
        if tally is not None:
            tally.connects += 1
        return connect(self)

    requests.adapters.HTTPAdapter.send = counted_send  # type: ignore[method-assign]
    docker.transport.unixconn.UnixHTTPConnection.connect = counted_connect

    # "Connection pool is full, discarding connection" (logged by the thread that made the
    # request): counted, not printed once per run.
    class Discards(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tally = getattr(_local, "tally", None)
            if tally is not None and "pool is full" in record.getMessage():
                tally.discards += 1

    pool_log = logging.getLogger("urllib3.connectionpool")
    pool_log.addHandler(Discards())
    pool_log.propagate = False


# --- the contenders ---------------------------------------------------------------------


class BareSdk:
    """The same operations by hand with ``docker.APIClient`` and its defaults."""

    def __init__(self, url: str, container: str, session: str) -> None:
        import docker

        self.api = docker.APIClient(base_url=url, version="auto", timeout=60)
        self.container = container
        self.labels = bench_labels(session)
        self.host_config = self.api.create_host_config(network_mode="none")

    def exec(self) -> None:
        api = self.api
        exec_id = api.exec_create(self.container, COMMAND)["Id"]
        output = b"".join(out or b"" for out, _err in api.exec_start(exec_id, stream=True, demux=True))
        code = api.exec_inspect(exec_id)["ExitCode"]
        if code != 0 or output != OUTPUT:
            raise RuntimeError(f"bare SDK exec: exit code {code}, output {output!r}")

    def run(self) -> None:
        api = self.api
        cid = api.create_container(TEST_IMAGE, COMMAND, labels=self.labels, host_config=self.host_config)["Id"]
        try:
            api.start(cid)
            code = api.wait(cid)["StatusCode"]
            output = api.logs(cid, stdout=True, stderr=True)
        finally:
            api.remove_container(cid, v=True, force=True)
        if code != 0 or output != OUTPUT:
            raise RuntimeError(f"bare SDK run: exit code {code}, output {output!r}")

    def close(self) -> None:
        self.api.close()


class Ofelia:
    """The jobs of a config file, run by the Runtime's RunExecutor as the daemon's workers run them."""

    def __init__(self, url: str, container: str, session: str, workdir: Path) -> None:
        from ofelia_core.runtime import Runtime, load_and_validate

        self.names = {"exec": f"bench-exec-{session}", "run": f"bench-run-{session}"}
        config = workdir / "ofelia.ini"
        config.write_text(
            f"[global]\n\n[docker-client]\nbase-url = {url}\n\n"
            f'[job-exec "{self.names["exec"]}"]\nschedule = @manual\ncontainer = {container}\n'
            f"command = {' '.join(COMMAND)}\n\n"
            f'[job-run "{self.names["run"]}"]\nschedule = @manual\nimage = {TEST_IMAGE}\n'
            f"command = {' '.join(COMMAND)}\nnetwork = none\npull = false\ndelete = true\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
        env["OFELIA_STATE_DIR"] = str(workdir / "state")
        log_to_file(workdir / "ofelia.log")
        self.runtime = Runtime(load_and_validate(str(config), env), env=env)
        self.executor = self.runtime.executor
        self.client = self.runtime.drivers.docker_client
        # Time the job type's runner (the execute_run hook) inside each run.
        hooks = self.executor.hooks
        execute_run, perf = hooks.execute_run, time.perf_counter

        def timed(job: Any, run: Any) -> Any:
            start = perf()
            try:
                return execute_run(job, run)
            finally:
                tally = getattr(_local, "tally", None)
                if tally is not None:
                    tally.runner = perf() - start

        hooks.execute_run = timed  # type: ignore[method-assign]

    def _execute(self, key: str) -> None:
        from ofelia_core.runs import Run, RunState, Trigger

        job = self.runtime.jobs[self.names[key]]
        run = self.executor.execute(job, Run(job.name, job.type, trigger=Trigger.MANUAL))
        if run.state != RunState.SUCCESS or run.stdout != OUTPUT:
            raise RuntimeError(f"ofelia {job.type}: {run.state}, {run.error}, output {run.stdout!r}")

    def exec(self) -> None:
        self._execute("exec")

    def run(self) -> None:
        self._execute("run")

    def operations(self) -> dict[str, dict[str, float]]:
        """The core's own per-operation figures of the Docker client driver (calls, total seconds)."""
        return {name: dict(figures) for name, figures in self.client.stats()["operations"].items()}

    def close(self) -> None:
        self.runtime.close()


# --- firing runs ------------------------------------------------------------------------


def fire(actions: Sequence[Callable[[], None]], counts: Sequence[int]) -> tuple[list[list[Tally]], float]:
    """Thread ``i`` runs ``actions[i]`` ``counts[i]`` times back to back, all threads started
    together; each thread's tallies (a failed run has its ``error``) and the batch's wall seconds."""
    perf, thread_time = time.perf_counter, time.thread_time
    results: list[list[Tally]] = [[] for _ in actions]

    def worker(action: Callable[[], None], count: int, tallies: list[Tally]) -> None:
        barrier.wait()
        for _ in range(count):
            tally = _local.tally = Tally()
            wall, cpu = perf(), thread_time()
            try:
                action()
            except Exception as exc:
                tally.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            tally.wall, tally.cpu = perf() - wall, thread_time() - cpu
            _local.tally = None
            tallies.append(tally)

    threads = [threading.Thread(target=worker, args=job, name=f"bench-{i}")
               for i, job in enumerate(zip(actions, counts, results, strict=True)) if job[1]]
    barrier = threading.Barrier(len(threads) + 1)
    for thread in threads:
        thread.start()
    barrier.wait()
    start = perf()
    for thread in threads:
        thread.join()
    return results, perf() - start


def spread(runs: int, threads: int) -> list[int]:
    """``runs`` shared out among ``threads`` as evenly as can be."""
    return [runs // threads + (i < runs % threads) for i in range(threads)]


class Cell:
    """One operation at one concurrency for one contender, over its rounds. Figures are over the
    runs that succeeded (``ok``); the failed ones are counted apart."""

    def __init__(self) -> None:
        self.tallies: list[Tally] = []
        self.elapsed = 0.0
        self.operations: dict[str, list[float]] = {}

    def add(self, tallies: list[Tally], elapsed: float) -> None:
        self.tallies += tallies
        self.elapsed += elapsed

    @property
    def ok(self) -> list[Tally]:
        return [t for t in self.tallies if t.error is None]

    @property
    def failed(self) -> list[Tally]:
        return [t for t in self.tallies if t.error is not None]

    def p50(self, values: list[float]) -> float:
        return statistics.median(values) * 1000 if values else math.nan

    def wall(self) -> dict[str, float]:
        ok = self.ok
        return summary_ms([t.wall for t in ok]) if ok else dict.fromkeys(("median", "p95", "p99", "max"), math.nan)

    def requests_per_run(self) -> float:
        ok = self.ok
        return sum(len(t.requests) for t in ok) / len(ok) if ok else math.nan

    def latency(self) -> dict[str, float]:
        return summary_ms([seconds for t in self.ok for _, seconds in t.requests] or [math.nan])

    def mean_ms(self, values: list[float]) -> str:
        return f"{statistics.fmean(values) * 1000:.2f}" if values else "—"


Cells = dict[tuple[str, int, str], Cell]


def run_cells(args: argparse.Namespace, contenders: dict[str, Any], ofelia: Ofelia) -> Cells:
    cells: Cells = {}
    names = list(contenders)
    for key in args.operations:
        for name, contender in contenders.items():
            failed = 0
            for concurrency in (1, 10):
                batch = fire([getattr(contender, key)] * concurrency, spread(args.warmup, concurrency))[0]
                failed += sum(t.error is not None for tallies in batch for t in tallies)
            print(f"bench: warm-up {OPERATIONS[key]}, {name}: {failed} failed", file=sys.stderr, flush=True)
        for concurrency, runs in zip(args.concurrency, args.runs, strict=True):
            started = time.perf_counter()
            before = ofelia.operations()
            if args.mode == "paired" and concurrency >= 2:
                # One batch, the threads shared out between the contenders: the engine carries
                # `concurrency` runs at every moment and both contenders see the same engine.
                owners = [names[i % len(names)] for i in range(concurrency)]
                counts = [0] * concurrency
                for name in names:
                    mine = [i for i, owner in enumerate(owners) if owner == name]
                    for i, count in zip(mine, spread(runs, len(mine)), strict=True):
                        counts[i] = count
                batch, elapsed = fire([getattr(contenders[owner], key) for owner in owners], counts)
                for owner, tallies in zip(owners, batch, strict=True):
                    cells.setdefault((key, concurrency, owner), Cell()).tallies += tallies
                for name in names:
                    cells[(key, concurrency, name)].elapsed += elapsed
            else:
                # In turns: short rounds cancel the engine's drift best; each fills every thread twice.
                rounds = max(1, min(MAX_ROUNDS, runs // (2 * concurrency)))
                for index in range(rounds):
                    for name in names if index % 2 == 0 else names[::-1]:
                        share = runs // rounds + (index < runs % rounds)
                        action = getattr(contenders[name], key)
                        batch, elapsed = fire([action] * concurrency, spread(share, concurrency))
                        cells.setdefault((key, concurrency, name), Cell()).add(
                            [t for tallies in batch for t in tallies], elapsed)
            cell = cells[(key, concurrency, "ofelia")]
            for op, figures in ofelia.operations().items():
                old = before.get(op, {"calls": 0, "total_seconds": 0.0})
                totals = cell.operations.setdefault(op, [0.0, 0.0])
                totals[0] += figures["calls"] - old["calls"]
                totals[1] += figures["total_seconds"] - old["total_seconds"]
            failures = {name: len(cells[(key, concurrency, name)].failed) for name in names}
            print(f"bench: {OPERATIONS[key]} at {concurrency} concurrent: {runs} runs per contender "
                  f"in {time.perf_counter() - started:.1f} s; failed: {failures}", file=sys.stderr, flush=True)
    return cells


# --- report ---------------------------------------------------------------------------


def main_table(args: argparse.Namespace, cells: Cells) -> list[list[Any]]:
    rows = []
    for key in args.operations:
        for concurrency in args.concurrency:
            reference = cells[(key, concurrency, "bare SDK")].wall()["median"]
            for name in CONTENDERS:
                cell = cells[(key, concurrency, name)]
                wall, latency, ok = cell.wall(), cell.latency(), cell.ok
                rows.append([
                    OPERATIONS[key], concurrency, name, len(cell.tallies), len(cell.failed),
                    ms(wall["median"]), ms(wall["p95"]), ms(wall["p99"]),
                    f"{cell.requests_per_run():.2f}", ms(latency["median"]), ms(latency["p99"]),
                    f"{sum(t.connects for t in ok) / len(ok):.2f}" if ok else "—",
                    cell.mean_ms([t.cpu for t in ok]),
                    f"{len(cell.tallies) / cell.elapsed:.1f}", f"{wall['median'] / reference:.3f}",
                ])
    return rows


def endpoint_rows(args: argparse.Namespace, cells: Cells) -> list[list[Any]]:
    rows = []
    for key in args.operations:
        for name in CONTENDERS:
            merged: collections.Counter[str] = collections.Counter()
            runs = 0
            for concurrency in args.concurrency:
                ok = cells[(key, concurrency, name)].ok
                merged.update(point for t in ok for point, _ in t.requests)
                runs += len(ok)
            rows.append([OPERATIONS[key], name, "; ".join(
                f"`{point}` {count / runs:.2f}" for point, count in sorted(merged.items(), key=lambda i: -i[1]))])
    return rows


def ofelia_rows(args: argparse.Namespace, cells: Cells) -> list[list[Any]]:
    """Where ofelia's run goes: the runner (execute_run hook) and the rest, beside the bare SDK's run."""
    rows = []
    for key in args.operations:
        for concurrency in args.concurrency:
            cell, sdk = cells[(key, concurrency, "ofelia")], cells[(key, concurrency, "bare SDK")]
            ok, runs = cell.ok, len(cell.tallies)
            operations = "; ".join(
                f"{op} {calls / runs:.2f} x {seconds / calls * 1000:.1f}"
                for op, (calls, seconds) in cell.operations.items() if calls)
            rows.append([
                OPERATIONS[key], concurrency, ms(sdk.p50([t.wall for t in sdk.ok])), ms(cell.p50([t.wall for t in ok])),
                ms(cell.p50([t.runner for t in ok])), f"{cell.p50([t.wall - t.runner for t in ok]):.2f}",
                sdk.mean_ms([t.cpu for t in sdk.ok]), cell.mean_ms([t.cpu for t in ok]),
                f"{sum(t.discards for t in sdk.tallies)} / {sum(t.discards for t in cell.tallies)}", operations,
            ])
    return rows


def failure_rows(args: argparse.Namespace, cells: Cells) -> list[list[Any]]:
    rows = []
    for (key, concurrency, name), cell in cells.items():
        for error, count in collections.Counter(t.error for t in cell.failed).most_common():
            rows.append([OPERATIONS[key], concurrency, name, count, error])
    return rows


def targets(args: argparse.Namespace, cells: Cells) -> list[str]:
    lines = []
    if "exec" in args.operations:
        for concurrency in args.concurrency:
            per_run = cells[("exec", concurrency, "ofelia")].requests_per_run()
            verdict = "met" if per_run == EXEC_TARGET_REQUESTS else "MISSED"
            lines.append(f"- job-exec engine requests per run at {concurrency} concurrent: "
                         f"{per_run:.2f} (target {EXEC_TARGET_REQUESTS}): {verdict}")
    for key in args.operations:
        for concurrency in args.concurrency:
            ours = cells[(key, concurrency, "ofelia")].wall()["median"]
            sdk = cells[(key, concurrency, "bare SDK")].wall()["median"]
            verdict = "met" if ours <= sdk * OVERHEAD_TARGET else "MISSED"
            lines.append(f"- {OPERATIONS[key]} at {concurrency} concurrent: ofelia p50 {ms(ours)} ms vs bare SDK "
                         f"{ms(sdk)} ms, overhead {(ours / sdk - 1) * 100:+.1f}% (target ≤ +5%): {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="100,100,200",
                        help="runs per contender at each concurrency, comma separated (default 100,100,200)")
    parser.add_argument("--concurrency", default="1,10,50", help="concurrent runs, comma separated")
    parser.add_argument("--operations", default="exec,run", help="exec, run or both, comma separated")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up runs per contender at 1 and at 10 concurrent")
    parser.add_argument("--mode", choices=("paired", "turns"), default="paired",
                        help="concurrent cells: both contenders in one batch, half the threads each (paired), "
                        "or each alone in turns")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.runs = [int(r) for r in args.runs.split(",")]
    args.operations = [o.strip() for o in args.operations.split(",")]
    if len(args.runs) == 1:
        args.runs *= len(args.concurrency)
    if len(args.runs) != len(args.concurrency) or not set(args.operations) <= set(OPERATIONS):
        parser.error("--runs needs one count per concurrency level; --operations takes exec and run")

    url, session = engine_url(), uuid.uuid4().hex[:12]
    api = engine_api(url)
    count_requests()
    contenders: dict[str, Any] = {}
    total = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="ofelia-bench-") as workdir:
            made: list[str] = []
            start_sleepers(api, session, 1, made=made)
            container = f"ofelia-bench-{session}-00"
            contenders["bare SDK"] = BareSdk(url, container, session)
            ofelia = contenders["ofelia"] = Ofelia(url, container, session, Path(workdir))
            try:
                cells = run_cells(args, contenders, ofelia)
            finally:
                for contender in contenders.values():
                    contender.close()
    finally:
        left = remove_containers(api, session, [f"ofelia.job=bench-run-{session}"])
        api.close()
        print(f"bench: removed {left} container(s); {time.perf_counter() - total:.0f} s in all",
              file=sys.stderr, flush=True)

    layout = "in turns" if args.mode == "turns" else "at 1 in turns, above in one batch sharing the threads"
    print(f"Configuration: engine {url} (dockerd on this machine), image {TEST_IMAGE}, network none; "
          f"runs per contender at {', '.join(map(str, args.concurrency))} concurrent: "
          f"{', '.join(map(str, args.runs))} ({layout}), after {args.warmup} warm-up "
          f"runs at 1 and at 10 concurrent; ofelia: baseline drivers, history in SQLite, log lines to a file; "
          f"{versions()}.\n")
    print(markdown_table(
        ["operation", "concurrency", "contender", "runs", "failed", "wall p50 ms", "wall p95 ms", "wall p99 ms",
         "requests/run", "request p50 ms", "request p99 ms", "new connections/run", "client CPU ms/run",
         "runs/s", "p50 / bare SDK"], main_table(args, cells)))
    print("\nEngine requests per run, by endpoint (all concurrencies):\n")
    print(markdown_table(["operation", "contender", "requests per run"], endpoint_rows(args, cells)))
    print("\nWhere ofelia's run goes: p50 of the whole run, of the runner (execute_run hook), and of the rest "
          "(history, log lines, hooks, buffers); client CPU per run; connections urllib3 discarded (pool of 10 "
          "full); driver operations per run x mean ms (the core's instrumentation).\n")
    print(markdown_table(
        ["operation", "concurrency", "bare SDK p50 ms", "ofelia p50 ms", "runner p50 ms", "rest p50 ms",
         "bare SDK CPU ms/run", "ofelia CPU ms/run", "connections discarded (SDK / ofelia)",
         "driver operations"],
        ofelia_rows(args, cells)))
    failures = failure_rows(args, cells)
    if failures:
        print("\nFailed runs (left out of every figure above):\n")
        print(markdown_table(["operation", "concurrency", "contender", "runs", "error"], failures))
    print("\nTargets:\n" + "\n".join(targets(args, cells)))
    if failures:
        raise SystemExit(f"bench: {sum(row[3] for row in failures)} run(s) failed")


if __name__ == "__main__":
    main()
