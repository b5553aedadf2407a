"""The web API with 1,000 jobs while the scheduler runs them: requests/s and latency of the
job list and ``/metrics``, the ``performance`` metrics driver beside ``noop``.

    .venv/bin/python bench/bench_web.py [--jobs 1000] [--duration 15] [--loads 4@2,1@0,8@0]
        [--target-loads 4@2] [--spread 10] [--schedule "@every 1s"] [--run-on-startup] [--profile]

What runs, per metrics driver (``performance``, then ``noop``), one after the other:

- the server: a subprocess holding the real Daemon in a thread (as bench/common.py's
  ``start_daemon`` runs it: Runtime, SQLite history, drivers, Dispatcher, Scheduler, and
  here the web server) on a config file of ``--jobs`` no-op jobs (``job-noop``, registered
  as a third-party job type plugin is). By default (``--spread 10``) job ``i`` has the
  schedule ``{i % 10}/10 * * * * *``: each job runs every 10 s and the 1,000 of them make
  a steady 100 runs a second, each recorded in the history. ``--spread 0`` gives every job
  ``--schedule`` instead, all due on the same second (``@every 1s``: 1,000 runs a second,
  more than one Python process runs, so the runs themselves fall behind).
  ``[global]``: ``enable-web``, ``web-address = 127.0.0.1:0`` (a free loopback port),
  ``web-auth-enabled`` with a bcrypt hash (cost 12) of a random password made for the run;
  ``OFELIA_METRICS`` (and ``OFELIA_ENABLE_PERFORMANCE_METRICS``) choose the metrics driver.
  Its state directory and log file are in a temp dir, removed at the end.
- the client: this process (its own GIL), logged in once with ``POST /api/login``; per
  endpoint and load ``N@R`` (``--loads``), N threads each with its own ``http.client``
  keep-alive connection send requests for ``--duration`` seconds: R a second each, the
  clients taking turns (``4@2``: four dashboards polling twice a second, 8 requests a
  second in all), or back to back when R is 0 (the throughput: with N in flight each waits
  for the others, so p99 is about N service times). Endpoints: ``GET /health`` (the floor: the guard, routing, h11),
  ``GET /api/jobs`` (Bearer token), ``GET /metrics`` (Prometheus text; 503 by design with
  the noop driver) and ``GET /api/metrics`` (JSON, Bearer token).

Client side: latency from sending the request to the last byte of the body; requests per
second over the cell's wall time; errors are exceptions and statuses other than the
expected one. Server side, per cell (and an idle window with no requests first): the
process's CPU; the runs scheduled inside the window that started (their lateness: run
start minus scheduled instant, taken when the final row is committed) and those recorded
as not started (skipped, missed); garbage collections (gen-2 count, longest pause); and
inside ``GET /api/jobs`` the wall time of its calls into the core
(``Scheduler.next_fires``, which takes the scheduler's lock, and
``HistoryStore.last_runs``). Target: p99 under 50 ms for ``/api/jobs`` and ``/metrics``
while the scheduler runs the jobs, checked at ``--target-loads`` (default ``4@2``).

``--profile``: after the cells, the server runs the ``/api/jobs`` handler (it serializes its
own JSON) and a ``/metrics`` render in its main thread, timed and then under cProfile, with
the scheduler still running; the top functions are printed. The daemon freezes its
start-up heap itself (ofelia_core/gc_tuning.py); the garbage collections in each window are
reported.
``--schedule "@every 1h" --run-on-startup`` gives the web's own cost: every job has a last
run, and nothing runs during the cells.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import http.client
import importlib.util
import io
import json
import os
import pstats
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Samples, ms, noop_job_sections, start_daemon_on, stop_daemon
from stats import markdown_table, summary_ms

TARGET_P99_MS = 50.0
#: Endpoints measured, in order: (path, needs the Bearer token).
ENDPOINTS = (("/health", False), ("/api/jobs", True), ("/metrics", False), ("/api/metrics", True))
#: The ones the target is about.
TARGETED = ("/api/jobs", "/metrics")
USERNAME = "bench"
DRIVERS = ("performance", "noop")


# --- the server process -----------------------------------------------------------------


def start_web_daemon(
    workdir: Path, count: int, driver: str, password_hash: str, schedule: str = "@every 1s",
    run_on_startup: bool = False, spread: int = 0,
) -> tuple[Any, threading.Thread]:
    """The real Daemon with its web server on a free loopback port, auth on, ``count`` no-op jobs
    on ``schedule`` (or spread over ``spread`` seconds, see :func:`job_schedule`), the metrics driver
    ``driver``; state and log in ``workdir``."""
    startup = "run-on-startup = true\n" if run_on_startup else ""
    web = (f"enable-web = true\nweb-address = 127.0.0.1:0\nweb-auth-enabled = true\n"
           f"web-username = {USERNAME}\nweb-password-hash = {password_hash}\n")
    env = {"OFELIA_METRICS": driver}
    if driver == "performance":
        env["OFELIA_ENABLE_PERFORMANCE_METRICS"] = "true"
    jobs = noop_job_sections(count, lambda i: job_schedule(i, schedule, spread), startup)
    daemon, thread = start_daemon_on(workdir, "[global]\n" + web + "\n" + jobs, lambda job, run, context: 0, env)
    if daemon.web is None:
        stop_daemon(daemon, thread)
        raise SystemExit("bench: the daemon started without its web server")
    return daemon, thread


def job_schedule(index: int, schedule: str, spread: int) -> str:
    """Job ``index``'s schedule: every ``spread`` seconds at its own second, or ``schedule``."""
    return f"{index % spread}/{spread} * * * * *" if spread > 0 else schedule


class Watch:
    """What the server records while the cells run: each final run row committed (lateness of the
    runs that started, the scheduled instants of those that did not) and each garbage collection."""

    def __init__(self) -> None:
        self.started = Samples()
        self.not_run: list[float] = []
        #: (wall time at the end, generation, seconds)
        self.collections: list[tuple[float, int, float]] = []
        self._gc_start = 0.0
        #: name -> (wall time at the end, seconds) of each call of a timed method
        self.calls: dict[str, list[tuple[float, float]]] = {}

    def install(self, daemon: Any) -> None:
        from ofelia_core.runs import RunState

        history = daemon.runtime.history
        # What GET /api/jobs calls into the core: its waits (the scheduler's lock, SQLite and
        # getting the GIL back after it) show here.
        self.time_calls(daemon.scheduler, "next_fires")
        self.time_calls(history, "last_runs")

        # record_end commits through record, so this sees every final row once.
        record = history.record
        not_started = {RunState.SKIPPED, RunState.MISSED}

        def tracked(run: Any, **kwargs: Any) -> None:
            record(run, **kwargs)
            if run.scheduled_at is None:
                return
            if run.state in not_started:
                self.not_run.append(run.scheduled_at)
            elif run.started_at is not None:
                self.started.add(run.scheduled_at, run.started_at)

        history.record = tracked
        gc.callbacks.append(self._on_gc)

    def time_calls(self, owner: Any, attr: str) -> None:
        function, calls = getattr(owner, attr), self.calls.setdefault(attr, [])
        perf = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = perf()
            try:
                return function(*args, **kwargs)
            finally:
                calls.append((time.time(), perf() - start))

        setattr(owner, attr, timed)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.collections.append((time.time(), info["generation"], time.perf_counter() - self._gc_start))

    def window(self, start: float, end: float) -> dict[str, Any]:
        rows = self.started.between(start, end)
        pauses = [c for c in list(self.collections) if start <= c[0] < end]
        return {
            "runs": len(rows), "not_run": sum(1 for at in list(self.not_run) if start <= at < end),
            "lateness": summary_ms([r[1] for r in rows]) if rows else None,
            "gc_gen2": sum(1 for c in pauses if c[1] == 2),
            "gc_max_ms": max((c[2] for c in pauses), default=0.0) * 1000,
            "gc_ms": sum(c[2] for c in pauses) * 1000,
            "calls": {name: summary_ms(spent) if (spent := [c[1] for c in list(calls) if start <= c[0] < end])
                      else None for name, calls in self.calls.items()},
        }


def serve(args: argparse.Namespace) -> None:
    """Server mode: start the daemon, print where it listens, answer the client's one request
    (what happened in each window, the profile), then stop the daemon and remove the temp dir."""
    import socket

    from ofelia_core.web.password import hash_password

    password = secrets.token_urlsafe(18)
    watch = Watch()
    with tempfile.TemporaryDirectory(prefix="ofelia-bench-web-") as tmp:
        daemon, thread = start_web_daemon(Path(tmp), args.jobs, args.serve, hash_password(password),
                                          args.schedule, args.run_on_startup, args.spread)
        try:
            watch.install(daemon)
            server = daemon.web.get("web")
            driver = daemon.runtime.choices["metrics"].name
            # asyncio sets TCP_NODELAY on accepted connections only when the listening socket's proto is TCP.
            nodelay = server._socket.proto == socket.IPPROTO_TCP
            print(json.dumps({"port": server.port, "username": USERNAME, "password": password, "tmp": tmp,
                              "pid": os.getpid(), "driver": driver, "nodelay": nodelay}), flush=True)
            line = sys.stdin.readline()  # EOF (the client went away) stops everything too
            if line.strip():
                request = json.loads(line)
                print(json.dumps(answer(daemon, watch, request)), flush=True)
                sys.stdin.read()  # until the client closes the pipe
        finally:
            daemon.request_stop()
            thread.join(120)


def answer(daemon: Any, watch: Watch, request: dict[str, Any]) -> dict[str, Any]:
    last_end = max((end for _, _, end in request["windows"]), default=0.0)
    time.sleep(max(0.0, min(10.0, last_end + 1.5 - time.time())))  # the last runs may still be committing
    result: dict[str, Any] = {"windows": {label: watch.window(start, end) for label, start, end in request["windows"]}}
    if request.get("profile"):
        result["profile"] = profile_routes(daemon)
    return result


def profile_routes(daemon: Any, rounds: int = 20) -> str:
    """cProfile of ``/api/jobs``'s handler (it serializes its own JSON) and of a ``/metrics`` render,
    in this thread, with the scheduler still running. Returns the report text."""
    from ofelia_core.metrics_feed import render_metrics
    from ofelia_core.web import routes_jobs

    ctx = daemon.web.get("web")._server.config.app.state.ctx
    perf = time.perf_counter

    def jobs_once() -> int:
        return len(routes_jobs.list_jobs(ctx).body)

    def metrics_once() -> int:
        return len(render_metrics(daemon.runtime, "prometheus")[1])

    out = io.StringIO()
    for name, once in (("/api/jobs handler", jobs_once), ("/metrics render", metrics_once)):
        once()  # warm
        spent, size = [], 0
        for _ in range(rounds):
            start = perf()
            size = once()
            spent.append(perf() - start)
        took = summary_ms(spent)
        out.write(f"{name}, {rounds} calls timed without the profiler: p50 {took['median']:.1f} ms "
                  f"(max {took['max']:.1f}), {size:,} bytes\n")
    calls = (("/api/jobs", jobs_once), ("/metrics render", metrics_once))
    for name, call in calls:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(rounds):
            call()
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(12)
        report = text.getvalue()
        out.write(f"\n--- {name}: {rounds} calls, by own time (wall clock: waits for the GIL and locks count) ---\n")
        out.write(report[report.find("   ncalls"):].rstrip() + "\n")
    return out.getvalue()


# --- the client (this process) ----------------------------------------------------------


class Server:
    """One server subprocess (one metrics driver), and what it said when it was ready."""

    def __init__(self, args: argparse.Namespace, driver: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", driver, "--jobs", str(args.jobs), "--schedule", args.schedule,
             "--spread", str(args.spread),
             *(["--run-on-startup"] if args.run_on_startup else []),
             ],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise SystemExit(f"bench: the {driver} server did not start (exit code {self.proc.returncode})")
        self.info: dict[str, Any] = json.loads(line)
        self.port: int = self.info["port"]
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("bench: the server went away")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(150)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        tmp = getattr(self, "info", {}).get("tmp")
        if tmp:  # gone already unless the server had to be killed
            shutil.rmtree(tmp, ignore_errors=True)


def login(port: int, username: str, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"username": username, "password": password})
        conn.request("POST", "/api/login", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"bench: login failed: {response.status} {data[:200]!r}")
        token: str = json.loads(data)["token"]
        return token
    finally:
        conn.close()


class Worker(threading.Thread):
    """Requests ``path`` on one keep-alive connection for ``duration`` seconds: back to back, or
    ``rate`` a second (each sent at its turn, or at once when the previous answer came late)."""

    def __init__(self, port: int, path: str, headers: dict[str, str], barrier: threading.Barrier,
                 duration: float, rate: float, offset: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.headers, self.barrier = port, path, headers, barrier
        self.duration, self.rate, self.offset = duration, rate, offset
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.size = 0
        self.ended = 0.0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        perf = time.perf_counter
        try:
            conn.connect()
            self.barrier.wait()
            began = perf()
            deadline, sent = began + self.duration, 0
            while True:
                if self.rate:
                    time.sleep(max(0.0, began + self.offset + sent / self.rate - perf()))
                if (start := perf()) >= deadline:
                    break
                sent += 1
                try:
                    conn.request("GET", self.path, headers=self.headers)
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    self.errors[type(exc).__name__] += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    continue
                self.latencies.append(perf() - start)
                self.statuses[response.status] += 1
                self.size = len(body)
        finally:
            self.ended = perf()
            conn.close()


def cell(server: Server, path: str, headers: dict[str, str], clients: int, duration: float,
         rate: float = 0.0) -> dict[str, Any]:
    barrier = threading.Barrier(clients + 1, timeout=60)
    # Paced clients take turns (client i starts i/(clients*rate) s in), as independent pollers would.
    workers = [Worker(server.port, path, headers, barrier, duration, rate, i / (clients * rate) if rate else 0.0)
               for i in range(clients)]
    for worker in workers:
        worker.start()
    barrier.wait()
    began, began_wall, cpu0 = time.perf_counter(), time.time(), server.cpu()
    for worker in workers:
        worker.join(duration + 120)
    wall = max(w.ended for w in workers) - began
    server_cpu = server.cpu() - cpu0
    latencies = [x for w in workers for x in w.latencies]
    statuses: Counter[int] = sum((w.statuses for w in workers), Counter())
    exceptions: Counter[str] = sum((w.errors for w in workers), Counter())
    return {
        "path": path, "clients": clients, "rate": rate, "load": load_label(clients, rate),
        "requests": len(latencies), "wall": wall,
        "rps": len(latencies) / wall if wall > 0 else 0.0,
        "latency_ms": summary_ms(latencies) if latencies else None,
        "statuses": dict(statuses), "exceptions": dict(exceptions), "size": max(w.size for w in workers),
        "server_cpu_pct": 100 * server_cpu / wall if wall > 0 else 0.0,
        "window": (began_wall, began_wall + wall),
    }


def parse_loads(text: str) -> list[tuple[int, float]]:
    """``"4@2,1@0"``: 4 clients at 2 requests/s each, then 1 client back to back."""
    loads = []
    for item in text.split(","):
        clients, _, rate = item.strip().partition("@")
        loads.append((int(clients), float(rate or 0)))
    return loads


def load_label(clients: int, rate: float) -> str:
    if rate:
        return f"{clients} x {rate:g}/s"
    return f"{clients} back to back"


def expected_status(path: str, driver: str) -> int:
    return 503 if path == "/metrics" and driver == "noop" else 200


def run_driver(args: argparse.Namespace, driver: str) -> dict[str, Any]:
    print(f"bench: {driver} driver: starting the daemon with {args.jobs} jobs ...", file=sys.stderr, flush=True)
    server = Server(args, driver)
    try:
        token = login(server.port, server.info["username"], server.info["password"])
        bearer = {"Authorization": f"Bearer {token}"}
        for path, auth in ENDPOINTS:  # warm-up: first imports, first queries, connection set-up
            cell(server, path, bearer if auth else {}, 1, 1.0)
        time.sleep(args.warmup)
        idle_start, cpu0 = time.time(), server.cpu()
        time.sleep(args.idle)
        idle = {"path": "(idle: no requests)", "load": "—", "wall": time.time() - idle_start,
                "server_cpu_pct": 100 * (server.cpu() - cpu0) / args.idle}
        idle["window"] = (idle_start, idle_start + idle["wall"])
        cells = []
        for path, auth in ENDPOINTS:
            for n, rate in args.loads:
                print(f"bench: {driver}: GET {path}, {load_label(n, rate)}, {args.duration:g} s", file=sys.stderr,
                      flush=True)
                cells.append(cell(server, path, bearer if auth else {}, n, args.duration, rate))
        windows = [[str(i), *c["window"]] for i, c in enumerate([idle, *cells])]
        reply = server.ask({"windows": windows, "profile": args.profile})
    finally:
        server.close()
    for i, c in enumerate([idle, *cells]):
        c["server"] = reply["windows"][str(i)]
    for c in cells:
        c["ok"] = c["statuses"].get(expected_status(c["path"], driver), 0)
        c["errors"] = c["requests"] - c["ok"] + sum(c["exceptions"].values())
    return {"driver": driver, "active": server.info["driver"], "nodelay": server.info["nodelay"],
            "idle": idle, "cells": cells, "profile": reply.get("profile")}


def report(args: argparse.Namespace, results: list[dict[str, Any]], note: str) -> bool:
    """Print the tables; returns whether the target was met."""
    import platform

    import ofelia_core

    nan = float("nan")
    rows, server_rows, inside_rows, checks, met = [], [], [], [], True
    noop = next((r for r in results if r["driver"] == "noop"), None)
    for result in results:
        floor = {c["load"]: c for c in result["cells"] if c["path"] == "/health"}
        for c in result["cells"]:
            lat = c["latency_ms"] or {"median": nan, "p95": nan, "p99": nan, "max": nan}
            vs_noop = "—"
            if noop is not None and result is not noop and c["path"] != "/metrics":
                other = next(o for o in noop["cells"] if o["path"] == c["path"] and o["load"] == c["load"])
                if other["latency_ms"]:
                    vs_noop = f"{lat['p99'] / other['latency_ms']['p99']:.2f}"
            rows.append([
                result["active"], f"GET {c['path']}", c["load"], f"{c['rps']:.0f}",
                ms(lat["median"]), ms(lat["p95"]), ms(lat["p99"]), ms(lat["max"]),
                f"{c['errors']}", ",".join(map(str, sorted(c["statuses"]))), f"{c['size']:,}",
                f"{lat['p99'] / TARGET_P99_MS:.2f}" if c["path"] in TARGETED else "—", vs_noop,
                f"{c['rps'] / floor[c['load']]['rps']:.2f}" if floor[c["load"]]["rps"] else "n/a",
            ])
            # /metrics with the noop driver is a 503 by design: the target is about the performance driver.
            if c["path"] == "/api/jobs" or (c["path"] == "/metrics" and result["active"] != "noop"):
                ok = bool(c["latency_ms"]) and lat["p99"] < TARGET_P99_MS and c["errors"] == 0
                checks.append([f"GET {c['path']}", c["load"], result["active"], ms(lat["p99"]),
                               "met" if ok else "**not met**"])
                if (c["clients"], c["rate"]) in args.target_loads:
                    met &= ok
        for c in result["cells"]:
            if c["path"] == "/api/jobs" and c["latency_ms"]:
                inside = [c["server"]["calls"].get(name) or {"median": nan, "p99": nan, "max": nan}
                          for name in ("next_fires", "last_runs")]
                inside_rows.append([result["active"], c["load"], ms(c["latency_ms"]["median"]),
                                    ms(c["latency_ms"]["p99"]),
                                    *(ms(part[key]) for part in inside for key in ("median", "p99", "max"))])
        for c in [result["idle"], *result["cells"]]:
            srv, wall = c["server"], c["wall"]
            late = srv["lateness"] or {"median": nan, "p99": nan, "max": nan}
            where = c["path"] if c["path"].startswith("(") else f"GET {c['path']}"
            server_rows.append([
                result["active"], where, c["load"], f"{c['server_cpu_pct']:.0f}",
                f"{srv['runs'] / wall:.0f}", f"{srv['not_run'] / wall:.0f}",
                ms(late["median"]), ms(late["p99"]), ms(late["max"]),
                srv["gc_gen2"], ms(srv["gc_max_ms"]), f"{srv['gc_ms'] / wall / 10:.1f}",
            ])

    nodelay = {r["nodelay"] for r in results}
    nodelay_text = "on" if nodelay == {True} else "off" if nodelay == {False} else "mixed"
    startup = ", each also run once at start" if args.run_on_startup else ""
    if args.spread > 0:
        jobs = (f"{args.jobs} no-op jobs, job i on `{{i % {args.spread}}}/{args.spread} * * * * *` (each every "
                f"{args.spread} s, {args.jobs / args.spread:g} runs a second in all){startup}")
    else:
        jobs = f"{args.jobs} no-op jobs `{args.schedule}`{startup} (all due on the same second)"
    print(f"Configuration: {jobs} run by "
          f"the real Daemon in a server process, web on 127.0.0.1 with authentication on (TCP_NODELAY on its "
          f"connections: {nodelay_text}); the client in this process, http.client keep-alive, "
          f"{args.duration:g} s per cell after a warm-up, {args.idle:g} s idle window first; "
          f"Python {platform.python_version()}, ofelia {ofelia_core.__version__}, {os.cpu_count()} CPUs.{note}\n")
    print(markdown_table(
        ["metrics driver", "endpoint", "load", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors",
         "status", "bytes", "p99 / 50 ms", "p99 / noop driver's", "req/s / /health's"], rows))
    print("\nThe server process meanwhile: runs started and not started (skipped, missed) a second, for the "
          "runs scheduled in the window; lateness of those started; garbage collections.\n")
    print(markdown_table(
        ["metrics driver", "window", "load", "server CPU %", "runs/s", "not run/s", "lateness p50 ms",
         "lateness p99 ms", "lateness max ms", "gen-2 GCs", "longest GC ms", "GC % of wall"], server_rows))
    print("\nInside GET /api/jobs, in the server: the wall time of its two calls into the core (each request "
          "makes one of each), beside the whole request as the client saw it.\n")
    print(markdown_table(
        ["metrics driver", "load", "request p50 ms", "request p99 ms", "scheduler.next_fires p50 ms",
         "next_fires p99 ms", "next_fires max ms", "history.last_runs p50 ms", "last_runs p99 ms",
         "last_runs max ms"], inside_rows))
    print(f"\nTarget: p99 under {TARGET_P99_MS:g} ms for GET /api/jobs and GET /metrics (the performance "
          f"driver's; with noop it is a 503) while the scheduler runs the jobs:\n")
    print(markdown_table(["endpoint", "load", "metrics driver", "p99 ms", f"p99 < {TARGET_P99_MS:g} ms"], checks))
    print(f"\nOverall, at {', '.join(load_label(*load) for load in args.target_loads)}: "
          f"**{'met' if met else 'not met'}**.")
    for result in results:
        if result.get("profile"):
            print(f"\nProfile in the server ({result['active']} driver):\n\n```\n{result['profile'].rstrip()}\n```")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per endpoint and clients")
    parser.add_argument("--loads", default="4@2,1@0,8@0",
                        help="N@R, comma separated: N client threads each sending R requests a second "
                             "(R 0: back to back, the throughput)")
    parser.add_argument("--target-loads", default="4@2",
                        help="the loads the target check covers (a subset of --loads)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the idle window")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle window (no requests)")
    parser.add_argument("--drivers", default=",".join(DRIVERS), help="metrics drivers, comma separated")
    parser.add_argument("--profile", action="store_true", help="cProfile /api/jobs and /metrics in the server")
    parser.add_argument("--spread", type=int, default=10,
                        help="job i runs every SPREAD seconds at second i %% SPREAD (0: every job on --schedule)")
    parser.add_argument("--schedule", default="@every 1s", help="every job's schedule when --spread is 0")
    parser.add_argument("--run-on-startup", action="store_true",
                        help="each job also runs once at start (history for /api/jobs with a quiet schedule)")
    parser.add_argument("--serve", choices=DRIVERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    args.loads, args.target_loads = parse_loads(args.loads), parse_loads(args.target_loads)
    drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    note = ""
    if "performance" in drivers and importlib.util.find_spec("ofelia_metrics_perf") is None:
        drivers = [d for d in drivers if d != "performance"] or ["noop"]
        note = (" The performance metrics driver (plugins/metrics-perf) is not importable: /metrics was "
                "measured with the noop driver only (503 by design).")
    results = [run_driver(args, driver) for driver in drivers]
    report(args, results, note)


if __name__ == "__main__":
    main()
