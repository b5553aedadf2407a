"""``ofelia daemon``: schedule jobs until SIGTERM/SIGINT, reload on SIGHUP and on file changes."""

from __future__ import annotations

import glob
import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from loguru import logger

from . import __version__
from .config.values import to_duration, to_int
from .errors import OfeliaError
from .execution.dispatcher import Dispatcher
from .jobs import Job, build_jobs
from .runs import Run, Trigger
from .runtime import LoadedConfig, Runtime, load_and_validate
from .scheduler.clock import Clock, SystemClock
from .scheduler.core import Scheduler

DEFAULT_SHUTDOWN_TIMEOUT = 30.0


def _global(values: Mapping[str, Any], key: str, default: Any, convert: Any) -> Any:
    raw = values.get(key)
    return default if raw is None or raw == "" else convert(raw)


class Daemon:
    """The long-running scheduler process. ``run()`` blocks until shutdown and returns an exit code."""

    def __init__(
        self,
        config_path: str | None,
        *,
        env: Mapping[str, str] | None = None,
        strict: bool = False,
        cli_drivers: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config_path = config_path
        self.env = dict(os.environ if env is None else env)
        self.strict = strict
        self.cli_drivers = dict(cli_drivers or {})
        self.clock = clock or SystemClock()
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.started = threading.Event()
        self._signals = 0
        self.runtime: Runtime | None = None
        self.dispatcher: Dispatcher | None = None
        self.scheduler: Scheduler | None = None
        self.jobs: dict[str, Job] = {}
        self._watched: dict[str, tuple[float, int]] = {}

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Build everything and start scheduling (returns at once; ``run()`` calls it)."""
        loaded = load_and_validate(self.config_path, self.env, strict=self.strict)
        for diagnostic in loaded.diagnostics:
            logger.warning(str(diagnostic))
        runtime = Runtime(loaded, env=self.env, cli_drivers=self.cli_drivers)
        self.runtime = runtime
        interrupted = runtime.history.mark_interrupted()
        if interrupted:
            logger.warning(
                f"{interrupted} run(s) were still running when the daemon last stopped: recorded as cancelled"
            )
        values = runtime.global_values
        self.dispatcher = Dispatcher(
            runtime.executor,
            max_concurrent=_global(values, "max-concurrent-runs", 32, to_int),
            overflow=str(values.get("concurrency-overflow") or "queue").lower(),
            queue_size=_global(values, "queue-size", 1000, to_int),
        )
        self.scheduler = Scheduler(self._on_due, self.dispatcher.record_missed, clock=self.clock)
        self.jobs = runtime.jobs
        self.scheduler.set_jobs(self.jobs)
        self._watched = self._config_files_state()
        self.write_state_files()
        self.scheduler.start()
        logger.info(f"ofelia {__version__} started: {len(self.jobs)} jobs from {', '.join(loaded.config.sources)}")
        for job in self.jobs.values():
            if job.run_on_startup:
                self.dispatcher.submit(job, Trigger.STARTUP, self.clock.time())
        self.started.set()

    def run(self, *, install_signals: bool = True) -> int:
        if install_signals:  # first, so a signal during start-up is a graceful stop too
            self.install_signal_handlers()
        try:
            self.start()
        except OfeliaError as exc:
            logger.error(str(exc))
            self.started.set()
            return 1
        watch = self._watch_interval()
        while not self.stop_requested.is_set():
            self.clock.wait(self.reload_requested, watch or None)
            if self.stop_requested.is_set():
                break
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload("SIGHUP")
            elif watch and self._config_files_state() != self._watched:
                self.reload("a config file changed")
        self.shutdown()
        return 0

    def request_stop(self) -> None:
        self.stop_requested.set()
        self.reload_requested.set()  # wakes the main loop

    def shutdown(self) -> None:
        """Stop firing, let running jobs finish (up to shutdown-timeout), cancel the rest."""
        assert self.runtime and self.scheduler and self.dispatcher
        timeout = _global(self.runtime.global_values, "shutdown-timeout", DEFAULT_SHUTDOWN_TIMEOUT, to_duration)
        running = len(self.dispatcher.running())
        logger.info(f"shutting down: stopped scheduling; waiting up to {timeout:g}s for {running} running job(s)")
        self.scheduler.stop()
        cancelled = self.dispatcher.shutdown(timeout)
        if cancelled:
            logger.warning(f"cancelled {len(cancelled)} run(s): {', '.join(r.job_name for r in cancelled)}")
        self.runtime.close()
        logger.info("ofelia stopped")

    # --- signals -----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1 and self.dispatcher is not None:
            # A second signal: stop waiting for running jobs.
            for run in self.dispatcher.running():
                self.dispatcher.cancel(run.id)
        self.request_stop()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested.set()

    # --- jobs --------------------------------------------------------------------------

    def _on_due(self, job: Job, scheduled_at: float, trigger: str) -> None:
        assert self.dispatcher is not None
        self.dispatcher.submit(job, trigger, scheduled_at)

    def run_now(self, name: str) -> Run:
        """Run a job now, by name, through the same admission rules as a scheduled run."""
        assert self.dispatcher is not None
        job = self.jobs.get(name)
        if job is None:
            raise OfeliaError(f"no job named '{name}'; jobs: {', '.join(sorted(self.jobs))}")
        return self.dispatcher.submit(job, Trigger.MANUAL, self.clock.time())

    # --- reload ------------------------------------------------------------------------

    def reload(self, reason: str) -> bool:
        """Re-read the config; on success replace the jobs, else keep the running config."""
        assert self.runtime and self.scheduler
        self._watched = self._config_files_state()
        logger.info(f"reloading the config ({reason})")
        try:
            loaded = load_and_validate(self.config_path, self.env, strict=self.strict, hooks=self.runtime.hooks)
            if loaded.errors:
                raise OfeliaError("\n".join(str(d) for d in loaded.errors))
            jobs = build_jobs(loaded.config, self.runtime.hooks.job_types(), self.runtime.hooks.config_keys())
        except (OfeliaError, ValueError) as exc:
            logger.error(f"reload failed, keeping the running config: {exc}")
            return False
        self._warn_driver_changes(loaded)
        changed = sorted(n for n in jobs if n in self.jobs and jobs[n].identity != self.jobs[n].identity)
        added = sorted(set(jobs) - set(self.jobs))
        removed = sorted(set(self.jobs) - set(jobs))
        self.jobs = jobs
        self.runtime.apply(loaded, jobs)
        self.scheduler.set_jobs(jobs)
        self.write_state_files()
        logger.info(
            f"reloaded: {len(jobs)} jobs (added: {', '.join(added) or 'none'}; "
            f"changed: {', '.join(changed) or 'none'}; removed: {', '.join(removed) or 'none'})"
        )
        return True

    def _warn_driver_changes(self, loaded: LoadedConfig) -> None:
        assert self.runtime
        if loaded.config.drivers.values != self.runtime.loaded.config.drivers.values:
            logger.warning("the [drivers] section changed: driver choices take effect at the next restart")

    def _watch_interval(self) -> float:
        assert self.runtime
        seconds: float = _global(self.runtime.global_values, "config-watch-interval", 2.0, to_duration)
        return seconds

    def _config_files_state(self) -> dict[str, tuple[float, int]]:
        """mtime and size of every file the config patterns match now (new files count too)."""
        from .config.loader import config_paths

        state: dict[str, tuple[float, int]] = {}
        for pattern in config_paths(self.config_path, self.env):
            for path in glob.glob(pattern) or [pattern]:
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                state[path] = (info.st_mtime, info.st_size)
        return state

    # --- state directory -----------------------------------------------------------------

    def write_state_files(self) -> None:
        """``drivers.json`` (active drivers and who chose them) and ``daemon.json`` (pid, sources)."""
        from .drivers.report import describe_choices

        assert self.runtime
        state_dir = self.runtime.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        drivers = describe_choices(self.runtime.choices)
        _write_json(state_dir / "drivers.json", {"drivers": drivers, "written_at": time.time()})
        _write_json(
            state_dir / "daemon.json",
            {
                "pid": os.getpid(),
                "version": __version__,
                "config_sources": self.runtime.loaded.config.sources,
                "history": str(self.runtime.history_file),
                "jobs": sorted(self.jobs),
                "written_at": time.time(),
            },
        )


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)  # readers never see a half-written file
