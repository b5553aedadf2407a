"""What the scheduler benchmarks share: the no-op job type, the real daemon on a
config of no-op jobs, APScheduler set up alike, lateness samples, CPU over a
measured window (in total and by thread), one subprocess per contender, and the
project's Docker engine (its address, labelled ``sleep`` containers, clean-up).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import JobTypeSpec, KeySpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_validate import compile_sources
from stats import summary_ms

NOOP_TYPE = "job-noop"
Runner = Callable[[Any, Any, Any], int]
#: ofelia's log line format (ofelia_core/logs.py), written to a file instead of stderr.
LOG_FORMAT = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <8}</level> {message}"


# --- the no-op job type and ofelia set-ups ----------------------------------------------


class NoopJobType:
    """A plugin declaring ``job-noop``, registered as a third-party job type plugin is."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    @hookimpl
    def ofelia_register_job_types(self) -> list[JobTypeSpec]:
        return [JobTypeSpec(NOOP_TYPE, (KeySpec("command"),), "does nothing (benchmarks)", runner=self.runner)]


def noop_hooks(runner: Runner, *, entrypoints: bool = False) -> Any:
    """An OfeliaHooks with the no-op job type (and, with ``entrypoints``, whatever the daemon loads)."""
    from ofelia_core.plugins import OfeliaHooks, build_plugin_manager

    pm = build_plugin_manager(load_entrypoints=entrypoints)
    pm.register(NoopJobType(runner), name="bench.noop")
    return OfeliaHooks(pm)


def noop_jobs(runner: Runner, count: int, schedule: str) -> dict[str, Any]:
    """``count`` Jobs of the no-op type, built as the daemon builds them from a config."""
    from ofelia_core.config.model import Location, Section
    from ofelia_core.jobs import build_job

    hooks = noop_hooks(runner)
    spec, keys = hooks.job_types()[NOOP_TYPE], hooks.config_keys()
    jobs = {}
    for i in range(count):
        section = Section(NOOP_TYPE, f"noop-{i:04d}", Location("bench"))
        section.values.update({"schedule": schedule, "command": "noop"})
        jobs[f"noop-{i:04d}"] = build_job(section, spec, keys)
    return jobs


def log_to_file(path: Path) -> None:
    """Send loguru's lines (the daemon's included) to ``path`` in ofelia's format."""
    from loguru import logger

    logger.remove()
    logger.add(str(path), level="INFO", format=LOG_FORMAT)


def noop_job_sections(count: int, schedule: Callable[[int], str] | str, extra: str = "") -> str:
    """``count`` no-op job sections ``noop-0000`` ...; ``schedule`` is one spec or one per index."""
    return "\n".join(
        f'[{NOOP_TYPE} "noop-{i:04d}"]\nschedule = {schedule(i) if callable(schedule) else schedule}\n'
        f"command = noop\n{extra}" for i in range(count)
    )


def start_daemon(workdir: Path, count: int, schedule: str, runner: Runner) -> tuple[Any, threading.Thread]:
    """The real Daemon (Runtime, history, drivers, Dispatcher, Scheduler, config watch) on a config
    file of ``count`` no-op jobs, its state directory and log file in ``workdir``."""
    return start_daemon_on(workdir, "[global]\n\n" + noop_job_sections(count, schedule), runner)


def start_daemon_on(
    workdir: Path, config_text: str, runner: Runner, env_extra: Mapping[str, str] | None = None
) -> tuple[Any, threading.Thread]:
    """The real Daemon in a thread on ``config_text`` (its no-op jobs run by ``runner``), state
    directory and log file in ``workdir``, none of the caller's ``OFELIA_*`` variables but
    ``env_extra``; exits the bench with the log's tail if it does not start."""
    import ofelia_core.daemon as daemon_module
    from ofelia_core.runtime import load_and_validate

    config = workdir / "ofelia.ini"
    config.write_text(config_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
    env["OFELIA_STATE_DIR"] = str(workdir / "state")
    env.update(env_extra or {})
    log_to_file(workdir / "ofelia.log")
    # The daemon builds its own plugin manager; hand it one that also knows the no-op type.
    noop = noop_hooks(runner, entrypoints=True)

    def load_with_noop(*args: Any, hooks: Any = None, **kwargs: Any) -> Any:
        return load_and_validate(*args, hooks=hooks or noop, **kwargs)

    daemon_module.__dict__["load_and_validate"] = load_with_noop
    daemon = daemon_module.Daemon(str(config), env=env)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, name="daemon-main")
    thread.start()
    if not daemon.started.wait(120) or daemon.scheduler is None:
        daemon.request_stop()
        thread.join(60)
        raise SystemExit(f"bench: the daemon did not start:\n{(workdir / 'ofelia.log').read_text()[-3000:]}")
    return daemon, thread


def stop_daemon(daemon: Any, thread: threading.Thread) -> None:
    daemon.request_stop()
    thread.join(120)
    if thread.is_alive():
        raise SystemExit("bench: the daemon did not stop")


# --- APScheduler ------------------------------------------------------------------------

_aps_local = threading.local()


def aps_scheduler(pool: int) -> Any:
    """A BackgroundScheduler with a thread pool of ``pool`` workers; ofelia's grace (60 s), no bursts."""
    import apscheduler.executors.pool
    from apscheduler.schedulers.background import BackgroundScheduler

    # run_job gets the instants a run is for; keep the (coalesced: last) one for the job function.
    original = apscheduler.executors.pool.run_job

    def run_job(job: Any, jobstore_alias: str, run_times: list[datetime], logger_name: str) -> Any:
        _aps_local.scheduled = run_times[-1].timestamp()
        return original(job, jobstore_alias, run_times, logger_name)

    apscheduler.executors.pool.run_job = run_job
    executor = apscheduler.executors.pool.ThreadPoolExecutor(pool)
    return BackgroundScheduler(
        executors={"default": executor},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        timezone="UTC",
    )


def aps_scheduled() -> float:
    """In an APScheduler job function: the instant this run was scheduled for."""
    scheduled: float = _aps_local.scheduled
    return scheduled


def aps_wakeups(scheduler: Any) -> Callable[[], int]:
    """Count the passes of APScheduler's loop (each wake-up runs ``_process_jobs`` once)."""
    calls = [0]
    original = scheduler._process_jobs

    def process_jobs() -> Any:
        calls[0] += 1
        return original()

    scheduler._process_jobs = process_jobs
    return lambda: calls[0]


def next_second(offset: int = 1) -> datetime:
    """A whole second ``offset`` seconds from now, for ``@every``-like APScheduler jobs all due together."""
    return datetime.fromtimestamp(math.floor(time.time()) + offset, UTC)


# --- measuring --------------------------------------------------------------------------


class Samples:
    """(scheduled instant, lateness, run-path latency) per run, appended from any thread."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float]] = []

    def add(self, scheduled: float, started: float, latency: float = 0.0) -> None:
        self.rows.append((scheduled, started - scheduled, latency))  # list.append is atomic

    def between(self, start: float, end: float) -> list[tuple[float, float, float]]:
        return [row for row in list(self.rows) if start <= row[0] < end]


def thread_cpu(groups: Mapping[str, str]) -> dict[str, float]:
    """CPU seconds so far of the live threads whose name starts with each group's prefix."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    totals = dict.fromkeys(groups, 0.0)
    for thread in psutil.Process().threads():
        name = names.get(thread.id, "")
        for group, prefix in groups.items():
            if name.startswith(prefix):
                totals[group] += thread.user_time + thread.system_time
                break
    return totals


def measure(
    samples: Samples,
    *,
    warmup: float,
    duration: float,
    groups: Mapping[str, str],
    counters: Callable[[], Mapping[str, float]] = dict,
    expected_per_second: int = 0,
) -> dict[str, Any]:
    """Wait out the warm-up, then measure ``duration`` seconds from a half second (between the
    whole-second fires) and return CPU per minute (process, by thread group), counter deltas
    and the lateness of the runs scheduled inside the window."""
    time.sleep(warmup)
    time.sleep((0.5 - time.time()) % 1.0)
    threads0, counts0 = thread_cpu(groups), dict(counters())  # before the CPU clock starts: not counted
    start, cpu0 = time.time(), time.process_time()
    time.sleep(max(0.0, start + duration - time.time()))
    end, cpu1 = time.time(), time.process_time()
    threads1, counts1 = thread_cpu(groups), dict(counters())
    per_minute = 60.0 / (end - start)
    expected = expected_per_second * round(end - start)
    deadline = time.monotonic() + 10
    while len(rows := samples.between(start, end)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)  # runs scheduled near the end may still be starting
    result: dict[str, Any] = {
        "wall": end - start,
        "cpu_per_min": (cpu1 - cpu0) * per_minute,
        "threads_per_min": {g: (threads1[g] - threads0[g]) * per_minute for g in groups},
        "counters": {k: counts1[k] - counts0[k] for k in counts1},
        "expected": expected,
        "runs": len(rows),
    }
    if rows:
        result["lateness_ms"] = summary_ms([row[1] for row in rows])
        result["latency_ms"] = summary_ms([row[2] for row in rows])
    return result


# --- running contenders -----------------------------------------------------------------


def run_contenders(script: str, cases: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, Any]]:
    """Run ``script --contender ...`` once per case, one after the other, each in a fresh process
    (its own GIL, the machine to itself); each prints its result as one JSON line."""
    compile_sources()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_") and k != "PYTHONDONTWRITEBYTECODE"}
    results = []
    for label, args in cases:
        print(f"bench: {label} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, script, *args], stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise SystemExit(f"bench: {label} failed (exit code {proc.returncode})")
        results.append({"label": label, **json.loads(proc.stdout.strip().splitlines()[-1])})
    return results


def versions() -> str:
    import apscheduler

    import ofelia_core

    return (
        f"Python {platform.python_version()}, ofelia {ofelia_core.__version__}, APScheduler {apscheduler.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )


def ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference else "n/a"


# --- the project's Docker engine ----------------------------------------------------------

#: scripts/docker-engine.sh's socket, and the image it builds.
ENGINE_DIR = "/var/lib/ofelia-test-engine"
TEST_IMAGE = "ofelia-test/busybox:latest"
#: Every container a benchmark creates carries ``ofelia.bench=1`` and its session's label.
BENCH_LABEL = "ofelia.bench"
SESSION_LABEL = "ofelia.bench.session"


def engine_url() -> str:
    """``OFELIA_TEST_DOCKER_HOST``, else scripts/docker-engine.sh's socket (never /var/run/docker.sock)."""
    explicit = os.environ.get("OFELIA_TEST_DOCKER_HOST", "").strip()
    directory = os.environ.get("OFELIA_TEST_ENGINE_DIR", "").strip() or ENGINE_DIR
    return explicit or f"unix://{directory}/docker.sock"


def engine_api(url: str) -> Any:
    """A plain SDK client for set-up and clean-up; exits with the start hint when the engine is not usable."""
    import docker

    try:
        api = docker.APIClient(base_url=url, version="auto", timeout=60)
        api.inspect_image(TEST_IMAGE)
    except Exception as exc:
        raise SystemExit(f"bench: the engine at {url} is not usable ({type(exc).__name__}: {exc}); "
                         "start it with: scripts/docker-engine.sh start") from exc
    return api


def bench_labels(session: str) -> dict[str, str]:
    return {BENCH_LABEL: "1", SESSION_LABEL: session}


def start_sleepers(api: Any, session: str, count: int, labels: Callable[[int], Mapping[str, str]] = lambda i: {},
                   made: list[str] | None = None) -> list[str]:
    """``count`` running ``sleep`` containers (network none, the bench labels plus ``labels(i)``),
    named ``ofelia-bench-<session>-<i>``; their ids are appended to ``made`` as each is created."""
    made = [] if made is None else made
    for i in range(count):
        cid: str = api.create_container(
            TEST_IMAGE, command=["sleep", "86400"], name=f"ofelia-bench-{session}-{i:02d}",
            labels={**bench_labels(session), **labels(i)}, host_config=api.create_host_config(network_mode="none"),
        )["Id"]
        made.append(cid)
        api.start(cid)
    return made


def remove_containers(api: Any, session: str, extra_filters: Sequence[str] = ()) -> int:
    """Remove (force) every container of this session, and those matching the label filters
    ``extra_filters`` (``key=value``); returns how many there were."""
    import docker.errors

    found: dict[str, None] = {}
    for label in (f"{SESSION_LABEL}={session}", *extra_filters):
        for item in api.containers(all=True, filters={"label": label}):
            found[item["Id"]] = None
    for cid in found:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(cid, force=True, v=True)
    return len(found)
