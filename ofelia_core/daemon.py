"""``ofelia daemon``: schedule jobs until SIGTERM/SIGINT, reload on SIGHUP and on file changes.

With ``--docker`` (or ``docker = true``) jobs also come from Docker labels
(:mod:`ofelia_core.labels`). Files and labels meet in one place,
:meth:`Daemon._install_jobs`: a file reload keeps the label jobs, a label
change keeps the file jobs, and on a name clash the file wins.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from loguru import logger

from . import __version__
from .config.loader import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH
from .config.model import Config, Diagnostic
from .config.validate import soften_unknown_references
from .config.values import to_duration, to_int
from .errors import OfeliaError
from .execution.dispatcher import Dispatcher
from .execution.policies import PolicyEngine
from .gc_tuning import freeze_long_lived
from .jobs import Job, build_jobs
from .runs import Run, Trigger
from .runtime import LoadedConfig, Runtime, global_strict, load_and_validate
from .scheduler.clock import Clock, SystemClock
from .scheduler.core import Scheduler

if TYPE_CHECKING:
    from .labels.parse import LabelConfig
    from .labels.source import LabelSettings
    from .labels.watch import LabelWatcher
    from .plugins import OfeliaHooks
    from .web.server import WebServers

DEFAULT_SHUTDOWN_TIMEOUT = 30.0


class _Merged(NamedTuple):
    """Files and labels together: the config, its jobs, and the label summary for daemon.json."""

    loaded: LoadedConfig
    jobs: dict[str, Job]
    label_state: dict[str, Any] | None


def _global(values: Mapping[str, Any], key: str, default: Any, convert: Any) -> Any:
    raw = values.get(key)
    return default if raw is None or raw == "" else convert(raw)


#: The main loop wakes at least this often. Python runs a signal's handler on the main thread
#: only; when the kernel hands SIGHUP or SIGTERM to another thread, the main thread sees it the
#: next time it wakes, which, waiting without a timeout, could be never.
SIGNAL_POLL = 1.0

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
        docker: bool = False,
        docker_filters: Sequence[str] = (),
        enable_web: bool = False,
        web_address: str | None = None,
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
        self.policies: PolicyEngine | None = None
        self.scheduler: Scheduler | None = None
        self.jobs: dict[str, Job] = {}
        self._watched: dict[str, tuple[float, int]] = {}
        #: ``--docker`` and ``--docker-filter``; ``[global]`` docker keys apply when these are not given.
        self.docker = docker
        self.docker_filters = tuple(docker_filters)
        self.label_watcher: LabelWatcher | None = None
        self.label_settings: LabelSettings | None = None
        #: The files' config as last loaded, and the labels as last read: _install_jobs merges them.
        self._files: LoadedConfig | None = None
        self._labels: LabelConfig | None = None
        self._label_findings: set[str] = set()
        #: What daemon.json says about labels: containers read, label jobs scheduled and rejected.
        self._label_state: dict[str, Any] | None = None
        # Held while the jobs are replaced: a file reload (main thread) and a label change
        # (watcher thread) must not interleave.
        self._jobs_lock = threading.RLock()
        #: ``--enable-web`` and ``--web-address``; ``[global]`` web keys apply when these are not given.
        self.enable_web = enable_web
        self.web_address = web_address
        self.web: WebServers | None = None
        #: Jobs disabled from the web API: not scheduled until enabled; kept across reloads, not restarts.
        self.disabled: set[str] = set()

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Build everything and start scheduling (returns at once; ``run()`` calls it)."""
        loaded = self._load_files()
        for diagnostic in loaded.diagnostics:
            logger.warning(str(diagnostic))
        runtime = Runtime(loaded, env=self.env, cli_drivers=self.cli_drivers)
        self.runtime = runtime
        try:
            self._start_with(runtime, loaded)
        except BaseException:
            if self.web is not None:
                self.web.stop()
            if self.label_watcher is not None:
                self.label_watcher.stop()
            runtime.close()
            raise
        freeze_long_lived(reason="start-up")
        self.started.set()

    def _start_with(self, runtime: Runtime, loaded: LoadedConfig) -> None:
        interrupted = runtime.history.mark_interrupted()
        if interrupted:
            logger.warning(
                f"{interrupted} run(s) were still running when the daemon last stopped: recorded as cancelled"
            )
        self._files = loaded
        self._labels = self._read_labels_at_start(runtime, loaded)
        merged = self._merge(loaded, self._labels)
        jobs = merged.jobs
        self._label_state = merged.label_state
        runtime.apply(merged.loaded, jobs)  # label global keys count for the middlewares and limits too
        values = runtime.global_values
        self.dispatcher = Dispatcher(
            runtime.executor,
            max_concurrent=_global(values, "max-concurrent-runs", 32, to_int),
            overflow=str(values.get("concurrency-overflow") or "queue").lower(),
            queue_size=_global(values, "queue-size", 1000, to_int),
        )
        # Retries, chains and depends-on; jobs without them go straight to the dispatcher.
        self.policies = PolicyEngine(self.dispatcher, now=self.clock.time)
        self.scheduler = Scheduler(
            self._on_due, self.dispatcher.record_missed, clock=self.clock,
            on_due_many=self.policies.on_due_many, prepare_many=self.dispatcher.prepare_many,
        )
        self.jobs = jobs
        self.policies.set_jobs(self.jobs)
        self.policies.start()
        self.scheduler.set_jobs(self.jobs)
        self._watched = self._config_files_state()
        self.write_state_files()
        from .web import start_web  # FastAPI and uvicorn load only when a web key asks for a server

        self.web = start_web(self)  # binds first: a bad web-address fails start-up before anything runs
        self.scheduler.start()
        if self.label_watcher is not None:
            self.label_watcher.start()
        sources = ", ".join(merged.loaded.config.sources)
        logger.info(f"ofelia {__version__} started: {len(self.jobs)} jobs from {sources}")
        startup = [job for job in self.jobs.values() if job.run_on_startup]
        if startup:
            self.policies.submit_startup(startup, self.clock.time())

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
        next_check = self.clock.monotonic() + watch
        while not self.stop_requested.is_set():
            self.clock.wait(self.reload_requested, min(watch, SIGNAL_POLL) if watch else SIGNAL_POLL)
            if self.stop_requested.is_set():
                break
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload("SIGHUP")
            elif watch and self.clock.monotonic() >= next_check:
                next_check = self.clock.monotonic() + watch
                if self._config_files_state() != self._watched:
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
        if self.web is not None:
            self.web.stop()
        running = len(self.dispatcher.running())
        logger.info(f"shutting down: stopped scheduling; waiting up to {timeout:g}s for {running} running job(s)")
        if self.label_watcher is not None:
            self.label_watcher.stop()
        self.scheduler.stop()
        # Pending retries and runs waiting for their dependencies are recorded cancelled.
        cancelled = self.policies.close() if self.policies is not None else []
        cancelled += self.dispatcher.shutdown(timeout)
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
        assert self.policies is not None
        self.policies.on_due(job, scheduled_at, trigger)

    def run_now(self, name: str) -> Run:
        """Run a job now, by name, through the same admission rules as a scheduled run."""
        assert self.dispatcher is not None
        job = self.jobs.get(name)
        if job is None:
            raise OfeliaError(f"no job named '{name}'; jobs: {', '.join(sorted(self.jobs))}")
        assert self.policies is not None
        return self.policies.submit(job, Trigger.MANUAL, self.clock.time())

    def set_job_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable a job by name; returns whether that changed anything.

        A disabled job stays out of the scheduler (it can still be run by name)
        until enabled again; re-enabled, its next run is computed from now. The
        choice lives in memory: a reload keeps it, a restart forgets it.
        """
        assert self.scheduler is not None
        with self._jobs_lock:
            if name not in self.jobs:
                raise OfeliaError(f"no job named '{name}'; jobs: {', '.join(sorted(self.jobs))}")
            if enabled == (name not in self.disabled):
                return False
            if enabled:
                self.disabled.discard(name)
            else:
                self.disabled.add(name)
            self.scheduler.set_jobs(self._enabled_jobs())
        logger.info(f"job '{name}' {'enabled' if enabled else 'disabled'} (until the daemon restarts)")
        return True

    def _enabled_jobs(self) -> dict[str, Job]:
        if not self.disabled:
            return self.jobs
        return {name: job for name, job in self.jobs.items() if name not in self.disabled}

    # --- reload ------------------------------------------------------------------------

    def reload(self, reason: str) -> bool:
        """Re-read the config files; on success replace the jobs (label jobs stay), else keep the running config."""
        assert self.runtime and self.scheduler
        self._watched = self._config_files_state()
        logger.info(f"reloading the config ({reason})")
        with self._jobs_lock:
            try:
                loaded = self._load_files(hooks=self.runtime.hooks)
                if loaded.errors:
                    raise OfeliaError("\n".join(str(d) for d in loaded.errors))
                merged = self._merge(loaded, self._labels)
            except (OfeliaError, ValueError) as exc:
                logger.error(f"reload failed, keeping the running config: {exc}")
                return False
            self._warn_restart_needed(loaded)
            self._files = loaded
            self._install_jobs(merged, "reloaded")
        return True

    def _warn_restart_needed(self, loaded: LoadedConfig) -> None:
        assert self.runtime and self._files
        if loaded.config.drivers.values != self.runtime.loaded.config.drivers.values:
            logger.warning("the [drivers] section changed: driver choices take effect at the next restart")
        from .labels.source import SETTING_KEYS

        old, new = self._files.config.global_.values, loaded.config.global_.values
        changed = [key for key in SETTING_KEYS if old.get(key) != new.get(key)]
        if changed:
            logger.warning(f"{', '.join(changed)} changed: Docker label settings take effect at the next restart")

    # --- files and labels together -------------------------------------------------------

    def _merge(self, files: LoadedConfig, labels: LabelConfig | None) -> _Merged:
        """The files' config with the label jobs and global keys (the file wins), and its jobs.

        Findings about labels are logged once each; a label job with an error is
        left out (logged as an error naming the container, label, job and key).
        """
        hooks = files.hooks
        if labels is None:
            return _Merged(files, build_jobs(files.config, hooks.job_types(), hooks.config_keys()), None)
        from .labels.merge import merge_labels

        strict = self.strict or global_strict(files.config)
        merged = merge_labels(files.config, labels, hooks.job_types(), hooks.config_keys(), strict=strict)
        self._log_label_findings(merged.diagnostics)
        jobs = build_jobs(merged.config, hooks.job_types(), hooks.config_keys())
        state = {"containers": labels.containers, "jobs": sorted(merged.label_jobs), "rejected": merged.rejected}
        return _Merged(LoadedConfig(merged.config, files.diagnostics, hooks), jobs, state)

    def _install_jobs(self, merged: _Merged, what: str) -> None:
        """Schedule exactly the merged jobs: unchanged ones keep their next instant (Scheduler.set_jobs)."""
        assert self.runtime and self.scheduler
        jobs = merged.jobs
        changed = sorted(n for n in jobs if n in self.jobs and jobs[n].identity != self.jobs[n].identity)
        added = sorted(set(jobs) - set(self.jobs))
        removed = sorted(set(self.jobs) - set(jobs))
        self.jobs = jobs
        self._label_state = merged.label_state
        self.runtime.apply(merged.loaded, jobs)
        self.disabled &= set(jobs)
        if self.policies is not None:
            self.policies.set_jobs(jobs)
        self.scheduler.set_jobs(self._enabled_jobs())
        self.write_state_files()
        freeze_long_lived(reason=what, force=False)
        logger.info(
            f"{what}: {len(jobs)} jobs (added: {', '.join(added) or 'none'}; "
            f"changed: {', '.join(changed) or 'none'}; removed: {', '.join(removed) or 'none'})"
        )

    def _log_label_findings(self, findings: list[Diagnostic]) -> None:
        # Each finding is logged when it first appears, not again at every reload.
        texts = {str(d) for d in findings}
        for finding in findings:
            text = str(finding)
            if text in self._label_findings:
                continue
            message = f"docker labels: {text.removeprefix(finding.level + ': ')}"
            if finding.level == "error":
                logger.error(message + (f"; job {finding.job!r} is not scheduled" if finding.job else ""))
            else:
                logger.warning(message)
        self._label_findings = texts

    def _on_labels(self, labels: LabelConfig) -> None:
        """Called by the label watcher's thread with each new label set."""
        with self._jobs_lock:
            if self.stop_requested.is_set() or self._files is None:
                return
            self._labels = labels
            self._install_jobs(self._merge(self._files, labels), "docker labels changed")

    def _read_labels_at_start(self, runtime: Runtime, loaded: LoadedConfig) -> LabelConfig | None:
        from .labels.source import LabelSettings

        settings = LabelSettings.from_config(
            loaded.config.global_.values, cli_docker=self.docker, cli_filters=self.docker_filters
        )
        self.label_settings = settings
        if not settings.enabled:
            return None
        from .labels.source import build_watcher

        self.label_watcher = build_watcher(runtime.drivers.docker_client, loaded.hooks, settings, self._on_labels)
        labels = self.label_watcher.load_initial(self.stop_requested)
        filters = f" (filters: {', '.join(settings.filters)})" if settings.filters else ""
        logger.info(
            f"docker labels: {len(labels.jobs)} job(s) from {len(labels.containers)} running container(s) "
            f"labelled ofelia.enabled=true{filters}"
        )
        return labels

    def _load_files(self, hooks: OfeliaHooks | None = None) -> LoadedConfig:
        """The config files; with ``--docker`` and no file at the default path, an empty config (as Ofelia)."""
        if not self._labels_only():
            loaded = load_and_validate(self.config_path, self.env, strict=self.strict, hooks=hooks)
            if self.docker:  # a job the files name may be a label job: the merge checks it
                loaded.diagnostics = soften_unknown_references(loaded.diagnostics)
            return loaded
        from .plugins import OfeliaHooks, build_plugin_manager, disabled_plugins

        hooks = hooks or OfeliaHooks(build_plugin_manager(disabled=disabled_plugins(self.env)))
        return LoadedConfig(Config(), [], hooks)

    def _labels_only(self) -> bool:
        explicit = bool((self.config_path or "").strip() or self.env.get(CONFIG_ENV_VAR, "").strip())
        return self.docker and not explicit and not os.path.exists(DEFAULT_CONFIG_PATH)

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
                "docker_labels": self._label_state,
                "written_at": time.time(),
            },
        )


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)  # readers never see a half-written file
