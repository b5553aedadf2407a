"""Scheduler fire lateness at 100 runs a second with notifiers on, beside no notifier: mail
to a real SMTP server, Slack and a webhook of every preset to a real HTTP server, all on
loopback, delivered by the notification core's own queue, worker and notification process.

    .venv/bin/python bench/bench_notify.py [--duration 60] [--jobs 100] [--windows 6]
        [--rounds 1] [--warmup 5] [--failing 5] [--queue-size 1000] [--patch-send idle]
        [--contenders none,on-error,slack,webhooks,mail,all,none]

What runs, per contender, each in its own process, one after the other (this process
only serves and counts):

- the real Daemon in a thread (Runtime, SQLite history, drivers, Dispatcher, Scheduler,
  the notification core's ``Notifications``: its bounded queue, its delivery worker and
  the notification process it sends from) on a config file of ``--jobs`` no-op jobs
  (``job-noop``, registered as a third-party job type plugin is), each ``@every 1s``: 100
  jobs make 100 runs a second, all due on the same whole second. The runner notes when
  it starts; the first ``--failing`` jobs exit 1 (in every contender). ``[global]`` holds
  the contender's notifier settings, so every job has them:

  - ``none``: no notifier key at all (the mail, Slack and webhook plugins are loaded and
    build nothing: what a user without notifications runs);
  - ``on-error``: mail, Slack and the nine webhooks below, as most deployments set them:
    ``mail-only-on-error``, ``slack-only-on-error``, webhooks ``trigger = error`` (their
    default): 11 deliveries per failed run, 55 a second with ``--failing 5``;
  - ``slack``: ``slack-webhook`` to the HTTP server here (Ofelia's form POST), every run;
  - ``webhooks``: one ``[webhook]`` section per preset (json-post, slack, discord, teams,
    ntfy, ntfy-token, gotify, healthchecks, healthchecks-selfhosted), each
    ``trigger = always``: 900 deliveries a second;
  - ``mail``: ``smtp-host``/``smtp-port`` of the SMTP server here, ``smtp-tls = none``,
    ``email-to``: one mail per run;
  - ``all``: mail, Slack and the nine webhooks on every run: 1,100 deliveries a second.

  A name may end in ``:thread`` (``notify-process = false``: sent from the daemon's
  thread) and/or ``:noquiet`` (``notify-quiet = 0``: sent at once, not after the burst),
  to show what each setting does. ``notify-queue-size`` is ``--queue-size`` (the
  product's default, 1000). ``--patch-send idle`` replaces every send by a 1 ms sleep (a
  diagnostic: what the delivery machinery costs without the sends' own CPU).
- this process: an aiosmtpd server and an asyncio HTTP server on 127.0.0.1 (free ports)
  that answer 250/200 and count what each contender sent them (by URL path and recipient).

Measured after ``--warmup`` seconds, for ``--duration`` seconds cut into ``--windows``
equal windows: lateness (runner start minus the scheduled instant) of the runs scheduled
inside, per window and in all; the process's CPU, its threads' (scheduler, run workers,
the delivery worker: CPU per delivery sent in the window) and the notification process's;
the notification core's CPU on the runs' threads; the deliveries of those runs as the core
recorded them (``sent``, ``failed``, ``dropped``), each sent one's delay from the run's end,
and the queue's depth (sampled every 50 ms). After the window the contender waits (at most
30 s) for those deliveries, stops the daemon (which drains for 10 s and records what is
left), and this process checks that its servers received exactly what the core recorded
as sent, per notifier.

Target, "no measurable difference at 100 runs a second". One round: the baseline
(``none``) runs first and last, and the p99 of each of its windows gives its spread; a
contender is within noise when its p99 is at most the highest window p99 of the baseline
and the median of its windows' p99 at most the baseline's median plus that spread. With
``--rounds N`` the whole order runs N times (contenders interleaved, so a slow spell of
the machine hits all of them), and each contender's window p99s are compared with all the
baseline's by a one-sided Mann-Whitney U test: a difference is measurable when p < 0.05.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_validate import compile_sources
from common import Samples, ms, noop_job_sections, start_daemon_on, thread_cpu
from stats import mann_whitney_greater, markdown_table, percentile, summary_ms

PRESETS = ("json-post", "slack", "discord", "teams", "ntfy", "ntfy-token", "gotify", "healthchecks",
           "healthchecks-selfhosted")
CONTENDERS = ("none", "on-error", "slack", "webhooks", "mail", "all")
DEFAULT_ORDER = "none,on-error,slack,webhooks,mail,all,none"
THREADS = {"scheduler": "ofelia-scheduler", "run workers": "ofelia-run-", "delivery worker": "ofelia-notify"}


def kind(contender: str) -> str:
    """``on-error:thread`` is ``on-error`` sent from the daemon's thread (``notify-process = false``),
    ``on-error:noquiet`` with ``notify-quiet = 0``; both: ``on-error:thread:noquiet``."""
    return contender.split(":")[0]


def flags(contender: str) -> set[str]:
    return set(contender.split(":")[1:])


def destinations(contender: str) -> list[str]:
    """The notifier names a notified run of ``contender`` is delivered to (as the core records them)."""
    contender = kind(contender)
    webhooks = [f"webhook:{preset}" for preset in PRESETS]
    return {"none": [], "mail": ["mail"], "slack": ["slack"], "webhooks": webhooks,
            "all": ["mail", "slack", *webhooks], "on-error": ["mail", "slack", *webhooks]}[contender]


def global_section(contender: str, label: str, smtp_port: int, http_port: int, queue_size: int) -> str:
    """``[global]`` (and ``[webhook]`` sections) for ``contender``; ``label`` marks its deliveries."""
    base = f"http://127.0.0.1:{http_port}/{label}"
    lines = ["[global]", f"notify-queue-size = {queue_size}"]
    lines += ["notify-process = false"] if "thread" in flags(contender) else []
    lines += ["notify-quiet = 0"] if "noquiet" in flags(contender) else []
    contender = kind(contender)
    sections: list[str] = []
    on_error = contender == "on-error"
    if contender in ("mail", "all", "on-error"):
        lines += ["smtp-host = 127.0.0.1", f"smtp-port = {smtp_port}", "smtp-tls = none",
                  f"email-to = {label}@bench.invalid", "email-from = ofelia@%"]
        lines += ["mail-only-on-error = true"] if on_error else []
    if contender in ("slack", "all", "on-error"):
        lines.append(f"slack-webhook = {base}/slack-webhook")
        lines += ["slack-only-on-error = true"] if on_error else []
    if contender in ("webhooks", "all", "on-error"):
        lines.append("webhooks = " + ", ".join(PRESETS))
        for preset in PRESETS:
            sections += [f'[webhook "{preset}"]', f"preset = {preset}", f"url = {base}/webhook/{preset}",
                         f"trigger = {'error' if on_error else 'always'}"]
            if preset in ("ntfy-token", "gotify"):
                sections.append("secret = bench-token")  # these presets require one
            sections.append("")
    return "\n".join(lines) + "\n\n" + "\n".join(sections)


# --- the contender process ----------------------------------------------------------------


def start_bench_daemon(workdir: Path, global_text: str, count: int, runner: Callable[..., int]) -> tuple[Any, Any]:
    """The real Daemon on a config of ``global_text`` and ``count`` no-op jobs ``@every 1s``
    (the mail, slack and webhook plugins come from entry points); state and log in ``workdir``."""
    return start_daemon_on(workdir, global_text + "\n" + noop_job_sections(count, "@every 1s"), runner)


class IdleNotifier:
    """``--patch-send idle``: stands in for every notifier in the send (pickled to the notification
    process like the real ones): it sleeps ``pause`` seconds, no CPU, nothing on the network."""

    retry_count, retry_delay = 0, 0.0

    def __init__(self, name: str, pause: float) -> None:
        self.name, self.pause = name, pause

    def wants(self, notice: Any) -> bool:
        return True

    def send(self, notice: Any) -> None:
        time.sleep(self.pause)


def patch_send_idle(notifications: Any, pause: float = 0.001) -> None:
    """``--patch-send idle``: every delivery goes through the queue, the worker, the notification
    process (or thread) and the records as usual, but the send itself is :class:`IdleNotifier`'s:
    what the delivery machinery costs the runs without the sends' own CPU and the servers'.
    A diagnostic (the servers then receive nothing)."""
    import pickle

    pickled = notifications._pickled
    notifications._pickled = lambda notifier: pickled(IdleNotifier(notifier.name, pause))
    queue_send = notifications.queue.send

    def send(delivery: Any) -> None:
        if delivery.blob is None:
            delivery.notifier = IdleNotifier(delivery.notifier.name, pause)
        else:
            assert pickle.loads(delivery.blob).__class__.__name__ == "IdleNotifier"
        queue_send(delivery)

    notifications.queue.send = send


class Deliveries:
    """Counts the notification core's record calls (the records are still written):
    (scheduled instant, notifier, state, seconds from the run's end to the record, when)."""

    def __init__(self, notifications: Any) -> None:
        self.rows: list[tuple[float, str, str, float, float]] = []
        self.errors: list[str] = []
        record = notifications._record

        def counted(notice: Any, notifier: str, state: str, attempts: int, error: str | None) -> None:
            now = time.time()
            self.rows.append((notice.scheduled_at or 0.0, notifier, state, now - (notice.ended_at or now), now))
            if error and len(self.errors) < 5:
                self.errors.append(f"{notifier} {state}: {error}")
            record(notice, notifier, state, attempts, error)

        notifications._record = counted

    def between(self, start: float, end: float) -> list[tuple[float, str, str, float, float]]:
        return [row for row in list(self.rows) if start <= row[0] < end]

    def total(self) -> Counter[str]:
        """``notifier state`` -> count, every delivery since the start."""
        return Counter(f"{row[1]} {row[2]}" for row in list(self.rows))


class ChildCpu:
    """CPU seconds of the notification process (``notify-process``) from now to :meth:`used`."""

    def __init__(self, pid: int | None) -> None:
        self.process = psutil.Process(pid) if pid is not None else None
        self.start = self._now()

    def _now(self) -> float:
        if self.process is None:
            return 0.0
        times = self.process.cpu_times()
        return times.user + times.system

    def used(self) -> float:
        return self._now() - self.start


class RunThreadCost:
    """CPU seconds the notification core spends on the runs' threads: building each notice
    (``build_notice``) and offering it to each notifier (``wants``, cooldown, the queue)."""

    def __init__(self, notifications: Any) -> None:
        from ofelia_core.notify import service

        self.lock = threading.Lock()
        #: (wall time at the end, thread CPU seconds, which)
        self.calls: list[tuple[float, float, str]] = []
        clock = time.thread_time

        def timed(function: Callable[..., Any], name: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                cpu = clock()
                try:
                    return function(*args, **kwargs)
                finally:
                    self.calls.append((time.time(), clock() - cpu, name))

            return call

        service.__dict__["build_notice"] = timed(service.__dict__["build_notice"], "build_notice")
        notifications._offer = timed(notifications._offer, "offer")

    def between(self, start: float, end: float, name: str | None = None) -> float:
        return sum(cpu for at, cpu, which in list(self.calls) if start <= at < end and name in (None, which))


class QueueDepth(threading.Thread):
    """Samples the delivery queue's length every 50 ms."""

    def __init__(self, queue: Any) -> None:
        super().__init__(name="bench-queue-depth", daemon=True)
        self.queue = queue
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.samples.append((time.time(), self.queue.pending()))

    def peak(self, start: float, end: float) -> int:
        return max((n for at, n in list(self.samples) if start <= at < end), default=0)


def contend(args: argparse.Namespace) -> dict[str, Any]:
    samples = Samples()

    def runner(job: Any, run: Any, context: Any) -> int:
        samples.add(run.scheduled_at, time.time())
        return 1 if int(job.name[-4:]) < args.failing else 0  # noop-0000 .. : the first --failing jobs fail

    text = global_section(args.contender, args.label, args.smtp_port, args.http_port, args.queue_size)
    with tempfile.TemporaryDirectory(prefix="ofelia-bench-notify-") as tmp:
        daemon, thread = start_bench_daemon(Path(tmp), text, args.jobs, runner)
        notifications = daemon.runtime.notifications
        if args.patch_send == "idle":
            patch_send_idle(notifications)
            notifications.configure(daemon.runtime.loaded.config, daemon.runtime.jobs)
        built = Counter(n.name for job in daemon.runtime.jobs for n in notifications.notifiers_of(job))
        deliveries = Deliveries(notifications)
        run_thread = RunThreadCost(notifications)
        depth = QueueDepth(notifications.queue)
        depth.start()
        try:
            time.sleep(args.warmup)
            time.sleep((0.5 - time.time()) % 1.0)  # start between two whole-second fires
            threads0, start, cpu0 = thread_cpu(THREADS), time.time(), time.process_time()
            child = ChildCpu(notifications.process.pid)
            time.sleep(max(0.0, start + args.duration - time.time()))
            end, cpu1, threads1 = time.time(), time.process_time(), thread_cpu(THREADS)
            child_cpu = child.used()
            # The runs scheduled near the end, and their deliveries, are still being made.
            drain_start = time.monotonic()
            deadline = drain_start + 30  # then the daemon's own drain (10 s) records the rest
            wanted = len(destinations(args.contender))
            notified = args.failing if kind(args.contender) == "on-error" else args.jobs
            while time.monotonic() < deadline and (
                len(samples.between(start, end)) < args.jobs * round(end - start)
                or len(deliveries.between(start, end)) < wanted * notified * round(end - start)
            ):
                time.sleep(0.1)
            drained = time.monotonic() - drain_start
        finally:
            depth.stop.set()
            daemon.request_stop()
            thread.join(120)
    per_minute = 60.0 / (end - start)
    rows = samples.between(start, end)
    span = (end - start) / args.windows
    windows = []
    for i in range(args.windows):
        inside = [row[1] for row in rows if start + i * span <= row[0] < start + (i + 1) * span]
        windows.append(percentile(inside, 99) * 1000 if inside else None)
    sent = deliveries.between(start, end)
    states = Counter(row[2] for row in sent)
    delays = [row[3] for row in sent if row[2] == "sent"]
    return {
        "runs": len(rows),
        "expected": args.jobs * round(end - start),
        "lateness_ms": summary_ms([row[1] for row in rows]) if rows else None,
        "window_p99_ms": windows,
        "cpu_per_min": (cpu1 - cpu0) * per_minute,
        "threads_per_min": {g: (threads1[g] - threads0[g]) * per_minute for g in THREADS},
        "built": dict(built),
        "states": dict(states),
        "expected_deliveries": wanted * notified * round(end - start),
        "delivery_s": summary_ms(delays) if delays else None,
        "queue_peak": depth.peak(start, end),
        "run_thread_us_per_run": run_thread.between(start, end) / len(rows) * 1e6 if rows else 0.0,
        "build_notice_us_per_run": run_thread.between(start, end, "build_notice") / len(rows) * 1e6 if rows else 0.0,
        "worker_cpu": threads1["delivery worker"] - threads0["delivery worker"],
        "child_cpu_per_min": child_cpu * per_minute,
        "sent_in_wall": sum(1 for row in deliveries.rows if start <= row[4] < end and row[2] == "sent"),
        "drained_s": drained,
        "totals": dict(deliveries.total()),
        "errors": deliveries.errors,
    }


# --- the servers (this process) -----------------------------------------------------------


class Servers:
    """aiosmtpd and a minimal asyncio HTTP/1.1 server on 127.0.0.1, counting by contender label."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.http: Counter[str] = Counter()  # "label/notifier" -> requests
        self.mail: Counter[str] = Counter()  # label -> messages
        self.bad: Counter[str] = Counter()
        servers = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                for rcpt in envelope.rcpt_tos:
                    servers.mail[rcpt.split("@")[0]] += 1
                subject = message_from_bytes(envelope.content)["Subject"] or ""
                if "] Job noop-" not in str(make_header(decode_header(subject))):  # "µs" is encoded
                    servers.bad["mail subject"] += 1
                return "250 OK"

        with socket.socket() as probe:  # aiosmtpd's start-up check cannot use port 0: pick a free one
            probe.bind(("127.0.0.1", 0))
            self.smtp_port: int = probe.getsockname()[1]
        self.smtp = Controller(Handler(), hostname="127.0.0.1", port=self.smtp_port)
        self.smtp.start()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.http_port = 0

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._answer, "127.0.0.1", 0, backlog=1024))
            self.http_port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name="bench-http", daemon=True)
        self.thread.start()
        ready.wait(10)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            label, _, rest = path.lstrip("/").partition("/")
            notifier = rest.replace("webhook/", "webhook:", 1).split("/")[0] if rest.startswith("webhook/") else rest
            notifier = "slack" if notifier == "slack-webhook" else notifier
            self.http[f"{label}/{notifier}"] += 1
            if method != "POST" or not body:
                self.bad[f"http {notifier}"] += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            self.bad["http malformed"] += 1
        finally:
            writer.close()

    def received(self, label: str) -> Counter[str]:
        """notifier -> deliveries received from contender ``label``."""
        found: Counter[str] = Counter()
        for key, count in list(self.http.items()):
            owner, _, notifier = key.partition("/")
            if owner == label:
                found[notifier] += count
        if self.mail.get(label):
            found["mail"] += self.mail[label]
        return found

    def close(self) -> None:
        self.smtp.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# --- the report ---------------------------------------------------------------------------


def load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def run_all(args: argparse.Namespace) -> None:
    order = [name.strip() for name in args.contenders.split(",") if name.strip()] * args.rounds
    unknown = sorted({kind(name) for name in order} - set(CONTENDERS)) + sorted(
        {flag for name in order for flag in flags(name)} - {"thread", "noquiet"})
    if unknown or "none" not in order:
        raise SystemExit(f"bench: --contenders takes {', '.join(CONTENDERS)} (each may end in :thread and/or :noquiet) "
                         "and must include none")
    compile_sources()
    servers = Servers()
    me = psutil.Process()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_") and k != "PYTHONDONTWRITEBYTECODE"}
    results = []
    try:
        for index, name in enumerate(order):
            label = f"c{index}-{name.replace(':', '-')}"
            load = load_average()
            print(f"bench: {name} (load average {load}) ...", file=sys.stderr, flush=True)
            before = me.cpu_times()
            proc = subprocess.run(
                [sys.executable, __file__, "--contender", name, "--label", label, "--smtp-port", str(servers.smtp_port),
                 "--http-port", str(servers.http_port), "--jobs", str(args.jobs), "--duration", str(args.duration),
                 "--windows", str(args.windows), "--warmup", str(args.warmup), "--queue-size", str(args.queue_size),
                 "--failing", str(args.failing), "--patch-send", args.patch_send],
                stdout=subprocess.PIPE, text=True, env=env,
            )
            after = me.cpu_times()
            if proc.returncode != 0 or not proc.stdout.strip():
                raise SystemExit(f"bench: {name} failed (exit code {proc.returncode})")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            time.sleep(0.5)  # the last answers are counted
            result.update(name=name, label=label, load=load, received=dict(servers.received(label)),
                          server_cpu=(after.user + after.system - before.user - before.system))
            results.append(result)
    finally:
        servers.close()
    report(args, results, servers)


def pooled_report(args: argparse.Namespace, results: list[dict[str, Any]], band: list[float]) -> dict[str, bool]:
    """Each contender's window p99s over every round against the baseline's (Mann-Whitney U);
    returns whether each differs measurably."""
    rows = []
    measurable: dict[str, bool] = {}
    middle = statistics.median(band)
    for name in dict.fromkeys(r["name"] for r in results):
        if name == "none":
            continue
        windows = [p for r in results if r["name"] == name for p in r["window_p99_ms"] if p is not None]
        chance = mann_whitney_greater(windows, band)
        difference = statistics.median(windows) - middle
        measurable[name] = chance < 0.05
        rows.append([name, len(windows), ms(statistics.median(windows)), ms(middle),
                     f"{difference:+.1f} ({difference / middle * 100:+.0f} %)", f"{chance:.3f}",
                     "**yes**" if chance < 0.05 else "no"])
    span = args.duration / args.windows
    print(f"\nOver the {args.rounds} rounds (contenders interleaved): each contender's {span:g} s window p99s against "
          f"the baseline's {len(band)}; measurable = Mann-Whitney U one-sided p < 0.05 that they are higher.\n")
    print(markdown_table(["contender", "windows", "median window p99 ms", "baseline median window p99 ms",
                          "difference ms", "p (higher)", "measurable difference"], rows))
    return measurable


def report(args: argparse.Namespace, results: list[dict[str, Any]], servers: Servers) -> None:
    baseline = [r for r in results if r["name"] == "none"]
    band = [p for r in baseline for p in r["window_p99_ms"] if p is not None]
    low, high, middle = min(band), max(band), statistics.median(band)
    limit_median = middle + (high - low)
    patched = "; every send replaced by a 1 ms sleep (--patch-send idle)" if args.patch_send == "idle" else ""
    print(f"{args.jobs} no-op jobs @every 1s ({args.jobs} runs a second, all due on the same second), "
          f"{args.failing} of them failing every run; {args.duration:g} s measured after {args.warmup:g} s "
          f"per contender in {args.windows} windows; notify-queue-size {args.queue_size}{patched}. "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs; load average at each start: "
          + "; ".join(f"{r['name']} {r['load']}" for r in results) + "\n")
    rows = []
    for r in results:
        lateness = r["lateness_ms"] or {"median": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
        windows = [p for p in r["window_p99_ms"] if p is not None]
        expected = r["expected_deliveries"]
        states = r["states"]
        delivered = (f"{states.get('sent', 0)}/{expected}" if expected else "—")
        lost = f"{states.get('failed', 0)}/{states.get('dropped', 0)}" if expected else "—"
        delay = f"{r['delivery_s']['p99'] / 1000:.2f}" if r["delivery_s"] else "—"
        within = lateness["p99"] <= high and statistics.median(windows) <= limit_median
        rows.append([
            r["name"], f"{r['runs']}/{r['expected']}", ms(lateness["median"]), ms(lateness["p95"]),
            ms(lateness["p99"]), ms(lateness["max"]), f"{ms(min(windows))} to {ms(max(windows))}",
            delivered, lost, delay, r["queue_peak"], f"{r['cpu_per_min']:.1f}",
            f"{r['threads_per_min']['delivery worker']:.1f}", f"{r['child_cpu_per_min']:.1f}",
            f"{r['worker_cpu'] / r['sent_in_wall'] * 1000:.2f}" if r["sent_in_wall"] else "—",
            f"{r['run_thread_us_per_run']:.0f}", f"{lateness['p99'] / middle:.2f}",
            "yes" if within else "**no**",
        ])
    print(markdown_table(
        ["contender", "runs", "median ms", "p95 ms", "p99 ms", "max ms", "window p99 ms", "sent/expected",
         "failed/dropped", "delivery p99 s", "queue peak", "CPU s/min", "delivery worker CPU s/min",
         "notification process CPU s/min",
         "worker CPU ms per delivery", "run-thread notify CPU µs per run", "p99 / baseline median window p99",
         "within noise"],
        rows,
    ))
    print(f"\nBaseline spread: window p99 {ms(low)} to {ms(high)} ms, median {ms(middle)} ms "
          f"({len(band)} windows of {args.duration / args.windows:g} s). Within noise: p99 at most {ms(high)} ms "
          f"and the median window p99 at most {ms(limit_median)} ms.")
    measurable = pooled_report(args, results, band) if args.rounds > 1 else {}
    print("\nEvery delivery, the whole run of each contender (warm-up and drain included), as the core "
          "recorded it and as the servers received it:\n")
    check_rows = []
    for r in results:
        if not destinations(r["name"]):
            continue
        sent = {key.split(" ")[0]: n for key, n in r["totals"].items() if key.endswith(" sent")}
        other = {key: n for key, n in r["totals"].items() if not key.endswith(" sent")}
        received = r["received"]
        matches = all(received.get(name, 0) == sent.get(name, 0) for name in destinations(r["name"]))
        check_rows.append([
            r["name"], sum(sent.values()), sum(received.values()), "yes" if matches else "**no**",
            ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "none",
            f"{r['drained_s']:.1f}", f"{r['server_cpu'] * 60 / args.duration:.1f}",
        ])
        if not matches:
            print(f"  {r['name']}: recorded sent {sent}, received {dict(received)}", file=sys.stderr)
        for error in r["errors"]:
            print(f"  {r['name']}: {error}", file=sys.stderr)
    print(markdown_table(["contender", "recorded sent", "received by the servers", "equal per notifier",
                          "other outcomes", "wait after the window s", "servers CPU s/min (approx.)"], check_rows))
    if servers.bad:
        print(f"\nservers saw unexpected requests: {dict(servers.bad)}")
    target = f"\nTarget (no measurable difference at {args.jobs} runs a second)"
    if measurable:
        same = [name for name, differs in measurable.items() if not differs]
        print(f"{target}: met by {', '.join(same) or 'none'}; not by "
              f"{', '.join(name for name, differs in measurable.items() if differs) or 'none'}.")
    else:
        met = all(row[-1] == "yes" for row in rows)
        print(f"{target}: {'met' if met else 'NOT met'}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per contender")
    parser.add_argument("--jobs", type=int, default=100, help="no-op jobs, each @every 1s")
    parser.add_argument("--windows", type=int, default=6, help="windows the measurement is cut into")
    parser.add_argument("--rounds", type=int, default=1, help="run the contenders in order this many times")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--queue-size", type=int, default=1000, help="notify-queue-size")
    parser.add_argument("--failing", type=int, default=5, help="jobs whose every run fails (exit code 1)")
    parser.add_argument("--patch-send", choices=("real", "idle"), default="real",
                        help="idle: each send sleeps 1 ms instead (diagnostic)")
    parser.add_argument("--contenders", default=DEFAULT_ORDER, help=f"in order, from {', '.join(CONTENDERS)}")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--smtp-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(contend(args)), flush=True)
        return
    with contextlib.suppress(KeyboardInterrupt):
        run_all(args)


if __name__ == "__main__":
    main()
