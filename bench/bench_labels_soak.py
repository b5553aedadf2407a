"""Label soak: 20 containers, each with one labelled job-exec ``@every 1s``, for 60 s,
through a real ``ofelia daemon --docker`` in its own process: every scheduled run
delivered (or recorded with its reason), the daemon's CPU seconds a minute and RSS.

    .venv/bin/python bench/bench_labels_soak.py [--containers 20] [--duration 60] [--warmup 5]
        [--drivers baseline,pooled] [--profile daemon.pstats] [--inherit-env] [--keep DIR]

Each Docker client driver in ``--drivers`` gets its own daemon over the same containers,
one after the other, and a last table puts them side by side.

What runs: ``sleep`` containers on the project's engine (scripts/docker-engine.sh;
OFELIA_TEST_DOCKER_HOST overrides), network none, labelled ``ofelia.enabled=true``,
``ofelia.bench=1``, ``ofelia.bench.session=<uuid>`` and
``ofelia.job-exec.bench-NN.schedule=@every 1s`` / ``.command=echo hi`` /
``.history-limit=1000`` (the default, 10, would prune the runs to count; the
prune still runs at each record). Then, as a subprocess:

    python -m ofelia_core daemon --docker -c <tmp>/ofelia.ini -f ofelia.bench.session=<uuid>

with DOCKER_HOST = the engine, OFELIA_STATE_DIR = a temp dir and, as in a
container, only PATH, HOME, LANG, LC_ALL, TZ and HOSTNAME of this shell's
environment (``--inherit-env`` passes all of it: the SDK's ``requests`` scans
the whole environment for proxy settings at every engine request, so a large
environment costs CPU at every run), a config file of
an empty ``[global]`` (every default: config watch every 2 s, label poll every
10 s plus the events stream, 32 workers) and its log lines in a file there.

The window starts on a half second once every label job is scheduled and
``--warmup`` seconds have passed, and lasts ``--duration`` seconds. Expected runs:
containers x whole seconds in the window (the jobs fire on whole seconds).
Delivered: runs whose scheduled instant falls in the window recorded in
history.db (in any state) over the expected count; success is counted apart,
every other recorded state is listed with its reason, and a run missing from
history altogether counts as lost. CPU: user + system
seconds of the daemon process over the window (psutil), per minute. RSS:
sampled every 0.2 s in the window (max) and at its end; the kernel's peak
(VmHWM, start-up included) beside them.

``--profile FILE`` runs the daemon under cProfile (every thread, by thread CPU
time, merged; the CPU figures then include the profiler's cost) and prints its
top functions.

Targets: 100% delivered, under 6 CPU s/min, under 56 MiB RSS (the Python peer
deck-chores, measured on this set-up: 94% delivered, 12.7 CPU s/min, 56 MiB).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_validate import compile_sources
from common import SESSION_LABEL, engine_api, engine_url, remove_containers, start_sleepers
from stats import markdown_table, summary_ms

TARGET_DELIVERED = 100.0
TARGET_CPU = 6.0
TARGET_RSS_MIB = 56.0
PEER = "deck-chores (Python): 94% delivered, 12.7 CPU s/min, 56 MiB"
MIB = 1024 * 1024
#: What the daemon inherits by default, as in a container: requests reads every variable of the
#: environment at each engine request (proxy settings), so its size shows in the CPU figures.
MINIMAL_ENV = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TZ", "HOSTNAME"})


def job_labels(i: int) -> dict[str, str]:
    prefix = f"ofelia.job-exec.bench-{i:02d}"
    return {
        "ofelia.enabled": "true",
        f"{prefix}.schedule": "@every 1s",
        f"{prefix}.command": "echo hi",
        f"{prefix}.history-limit": "1000",
    }


# --- the daemon process ---------------------------------------------------------------------


def profiled_daemon(out: str, argv: list[str]) -> None:
    """Run ``ofelia <argv>`` in this process with every thread under cProfile, timed by the
    thread's own CPU clock (blocking costs nothing); write the merged stats to ``out`` at exit.
    Threads still running then are read as they are."""
    import cProfile
    import pstats

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.runcall(run, self)

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile(time.thread_time)
    profiles.append(main_profile)
    sys.argv = ["ofelia", *argv]
    from ofelia_core.cli import main

    try:
        main_profile.runcall(main)
    finally:
        with lock:
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                stats.add(profile)
        stats.dump_stats(out)


def daemon_env(args: argparse.Namespace, workdir: Path, url: str, driver: str) -> dict[str, str]:
    if args.inherit_env:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OFELIA_", "DOCKER_"))}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env = {k: v for k, v in os.environ.items() if k in MINIMAL_ENV}
    env.update(DOCKER_HOST=url, OFELIA_STATE_DIR=str(workdir / "state"), OFELIA_DOCKER_CLIENT=driver)
    return env


def start_daemon(args: argparse.Namespace, workdir: Path, env: dict[str, str], session: str) -> subprocess.Popen[bytes]:
    config = workdir / "ofelia.ini"
    config.write_text("[global]\n")
    daemon_args = ["daemon", "--docker", "-c", str(config), "-f", f"{SESSION_LABEL}={session}"]
    if args.profile:
        command = [sys.executable, __file__, "--profiled-daemon", str(Path(args.profile).resolve()), *daemon_args]
    else:
        command = [sys.executable, "-m", "ofelia_core", *daemon_args]
    print(f"bench: {' '.join(command)}", file=sys.stderr, flush=True)
    with (workdir / "daemon.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)


def wait_for_jobs(daemon: subprocess.Popen[bytes], state: Path, count: int, timeout: float = 120.0) -> float:
    """Seconds until daemon.json lists ``count`` jobs; exits when the daemon dies or never gets there."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if daemon.poll() is not None:
            raise SystemExit(f"bench: the daemon exited with code {daemon.returncode} at start")
        try:
            jobs = json.loads((state / "daemon.json").read_text()).get("jobs", [])
        except (OSError, ValueError):
            jobs = []
        if len(jobs) >= count:
            return time.monotonic() - start
        time.sleep(0.05)
    raise SystemExit(f"bench: the daemon did not schedule the {count} label jobs within {timeout:g} s")


class RssSampler:
    """The process's RSS every ``interval`` seconds while running."""

    def __init__(self, process: psutil.Process, interval: float = 0.2) -> None:
        self.process = process
        self.interval = interval
        self.samples: list[int] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.done.is_set():
            self.samples.append(self.process.memory_info().rss)
            self.done.wait(self.interval)

    def stop(self) -> list[int]:
        self.done.set()
        self.thread.join()
        return self.samples


def peak_rss(pid: int) -> int:
    """VmHWM: the most the process ever had resident, in bytes (0 where /proc lacks it)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(args: argparse.Namespace, daemon: subprocess.Popen[bytes]) -> dict[str, Any]:
    process = psutil.Process(daemon.pid)
    time.sleep(args.warmup)
    time.sleep((0.5 - time.time()) % 1.0)
    sampler = RssSampler(process)
    cpu0, start = process.cpu_times(), time.time()
    time.sleep(max(0.0, start + args.duration - time.time()))
    cpu1, end = process.cpu_times(), time.time()
    rss = sampler.stop()
    rss_end = process.memory_info().rss
    if daemon.poll() is not None:
        raise SystemExit(f"bench: the daemon exited with code {daemon.returncode} during the window")
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "start": start, "end": end, "cpu_per_min": cpu * 60 / (end - start),
        "user_per_min": (cpu1.user - cpu0.user) * 60 / (end - start),
        "rss_max": max(rss), "rss_end": rss_end, "rss_peak": peak_rss(daemon.pid), "threads": process.num_threads(),
    }


def stop_daemon(daemon: subprocess.Popen[bytes]) -> int:
    daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(90)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        raise SystemExit("bench: the daemon did not stop within 90 s of SIGTERM (killed)") from None


# --- the record ----------------------------------------------------------------------------


def history_rows(path: Path, start: float, end: float) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT job_name, scheduled_at, started_at, ended_at, state, error FROM runs "
            "WHERE scheduled_at >= ? AND scheduled_at < ? ORDER BY scheduled_at", (start, end)).fetchall()
    finally:
        con.close()


def report(args: argparse.Namespace, window: dict[str, Any], rows: list[tuple[Any, ...]], code: int,
           env_size: int, driver: str) -> tuple[bool, list[Any]]:
    seconds = window["end"] - window["start"]
    expected = args.containers * round(seconds)
    slots = {(row[0], round(row[1], 3)) for row in rows}
    success = [row for row in rows if row[4] == "success"]
    other = collections.Counter((row[4], row[5] or "") for row in rows if row[4] != "success")
    per_job = collections.Counter(row[0] for row in success)
    lost = max(0, expected - len(slots))
    delivered = 100.0 * len(slots) / expected
    succeeded = 100.0 * len(success) / expected
    late = summary_ms([row[2] - row[1] for row in success]) if success else None
    took = summary_ms([row[3] - row[2] for row in success]) if success else None
    mib = {k: window[k] / MIB for k in ("rss_max", "rss_end", "rss_peak")}

    environment = "this shell's" if args.inherit_env else "a container-like"
    print(f"Configuration: {args.containers} containers, one label job-exec `@every 1s` each (`echo hi`); "
          f"`ofelia daemon --docker` as a subprocess with an empty [global] (defaults), Docker client "
          f"driver `{driver}` (other drivers baseline), "
          f"{environment} environment ({env_size} variables); "
          f"window {seconds:.1f} s after {args.warmup:g} s warm-up; daemon exit code {code}"
          f"{'; under cProfile' if args.profile else ''}; {psutil.cpu_count()} CPUs.\n")
    print(markdown_table(
        ["expected runs", "recorded", "delivered (recorded / expected)", "success", "other states",
         "lost (not in history)",
         "success per job min/max", "lateness p50/p99/max ms", "run p50/p99 ms", "CPU s/min (user)", "CPU ms/run",
         "RSS max MiB", "RSS end MiB", "peak RSS (VmHWM) MiB", "threads"],
        [[expected, len(rows), f"{delivered:.1f}%", f"{len(success)} ({succeeded:.1f}%)", sum(other.values()), lost,
          f"{min(per_job.values(), default=0)}/{max(per_job.values(), default=0)}",
          "/".join(f"{late[k]:.0f}" for k in ("median", "p99", "max")) if late else "—",
          "/".join(f"{took[k]:.0f}" for k in ("median", "p99")) if took else "—",
          f"{window['cpu_per_min']:.2f} ({window['user_per_min']:.2f})",
          f"{window['cpu_per_min'] / 60 / args.containers * 1000:.2f}",
          f"{mib['rss_max']:.1f}", f"{mib['rss_end']:.1f}", f"{mib['rss_peak']:.1f}", window["threads"]]]))
    if other:
        print("\nRuns in the window not recorded as success:\n")
        print(markdown_table(["state", "runs", "reason"],
                             [[state, count, reason or "—"] for (state, reason), count in other.most_common()]))
    if len(slots) != len(rows):
        print(f"\n{len(rows) - len(slots)} duplicate record(s) of the same job and instant.")
    checks = [
        ("delivered", f"{delivered:.1f}%", delivered >= TARGET_DELIVERED, f"{TARGET_DELIVERED:g}%"),
        ("CPU", f"{window['cpu_per_min']:.2f} s/min", window["cpu_per_min"] < TARGET_CPU, f"< {TARGET_CPU:g} s/min"),
        ("RSS max", f"{mib['rss_max']:.1f} MiB", mib["rss_max"] < TARGET_RSS_MIB, f"< {TARGET_RSS_MIB:g} MiB"),
    ]
    print("\nTargets:\n" + "\n".join(f"- {name}: {value} (target {target}): {'met' if ok else 'MISSED'}"
                                     for name, value, ok, target in checks))
    print(f"- the peer, {PEER}")
    summary = [driver, f"{delivered:.1f}%", f"{succeeded:.1f}%", lost, window["cpu_per_min"], mib["rss_max"]]
    return all(ok for _, _, ok, _ in checks), summary


def print_profile(path: str, limit: int = 25) -> None:
    import io
    import pstats

    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(path, stream=text).sort_stats(order).print_stats(limit)
        body = text.getvalue()
        print(f"\nProfile of the daemon (thread CPU seconds, every thread, whole life), by {order}:\n")
        print("```\n" + body[body.find("   ncalls"):].rstrip() + "\n```")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--profiled-daemon":
        profiled_daemon(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20, help="labelled containers, one job each")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the jobs are scheduled")
    parser.add_argument("--profile", metavar="FILE", help="run the daemon under cProfile, stats to FILE")
    parser.add_argument("--keep", metavar="DIR", help="copy the daemon's state and log to DIR")
    parser.add_argument("--drivers", type=lambda text: text.split(","), default=["baseline", "pooled"],
                        help="Docker client drivers to soak, one daemon after the other (default baseline,pooled)")
    parser.add_argument("--inherit-env", action="store_true",
                        help="give the daemon this shell's environment instead of a container-like one")
    args = parser.parse_args()

    url, session = engine_url(), uuid.uuid4().hex[:12]
    api = engine_api(url)
    compile_sources()
    made: list[str] = []
    codes: list[int] = []
    summaries: list[list[Any]] = []
    met = True
    try:
        print(f"bench: starting {args.containers} labelled containers", file=sys.stderr, flush=True)
        start_sleepers(api, session, args.containers, job_labels, made)
        for driver in args.drivers:
            code, driver_met, summary = soak(args, url, session, driver)
            codes.append(code)
            met = met and driver_met
            summaries.append(summary)
    finally:
        left = remove_containers(api, session)
        api.close()
        print(f"bench: removed {left} container(s)", file=sys.stderr, flush=True)
    if len(summaries) > 1:
        base_cpu = summaries[0][4]
        print("\nSide by side (the same containers, one daemon after the other):\n")
        print(markdown_table(
            ["Docker client driver", "delivered", "success", "lost", "CPU s/min", "CPU / first", "RSS max MiB"],
            [[d, dl, sc, lost, f"{cpu:.2f}", f"{cpu / base_cpu:.2f}", f"{rss:.1f}"]
             for d, dl, sc, lost, cpu, rss in summaries]))
    if any(codes):
        raise SystemExit(f"bench: a daemon exited with code {codes}")
    if not met:
        print("bench: a target was missed", file=sys.stderr, flush=True)


def soak(args: argparse.Namespace, url: str, session: str, driver: str) -> tuple[int, bool, list[Any]]:
    """One daemon with Docker client ``driver`` over the labelled containers: its report."""
    daemon: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="ofelia-soak-") as tmp:
            workdir = Path(tmp)
            env = daemon_env(args, workdir, url, driver)
            daemon = start_daemon(args, workdir, env, session)
            ready = wait_for_jobs(daemon, workdir / "state", args.containers)
            print(f"bench: [{driver}] {args.containers} label jobs scheduled {ready:.1f} s after the start; "
                  f"measuring {args.duration:g} s after {args.warmup:g} s", file=sys.stderr, flush=True)
            window = measure(args, daemon)
            time.sleep(3)  # runs scheduled near the end finish and are recorded
            code = stop_daemon(daemon)
            print(f"bench: the daemon stopped with exit code {code}", file=sys.stderr, flush=True)
            rows = history_rows(workdir / "state" / "history.db", window["start"], window["end"])
            if args.keep:
                import shutil

                shutil.copytree(workdir, Path(args.keep) / driver, dirs_exist_ok=True)
            met, summary = report(args, window, rows, code, len(env), driver)
            if args.profile:
                print_profile(args.profile)
            print()
            return code, met, summary
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()


if __name__ == "__main__":
    main()
