"""Ofelia's save middleware: each finished run's output and summary as files.

For a run of job ``NAME`` started at ``STAMP`` (``YYYYMMDD_HHMMSS``, local
time) it writes ``<folder>/STAMP_NAME.stdout.log``, ``.stderr.log`` and
``.json``. Where this differs from Ofelia:

- a second run of the job started in the same second gets
  ``STAMP_NAME.<run id>.*`` instead of overwriting the first;
- a name with characters unsafe in a file name (``/``, spaces, ...) has them
  replaced by ``_`` plus ``~`` and a digest of the real name, so ``a/b`` and
  ``a_b`` never share (or prune) each other's files;
- ``save-retention`` deletes the job's saved files older than it, matching
  only names this middleware writes, so the folder may hold other files.

Which runs: every run with a final state, including skipped and missed ones
(as Ofelia's save middleware, which also runs for skipped executions). With
``save-only-on-error`` only failed, timed-out and cancelled runs are saved;
skipped and missed runs are not failures.

Files get the usual ``0666 & ~umask`` mode, as Ofelia's do: the folder is
the user's export. (The run history database is the private copy, 0600.)

Config: a job that sets any save key in its own section replaces the global
save config entirely (Ofelia's rule), so a job that sets only
``save-only-on-error`` and no ``save-folder`` saves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from ofelia_hookspecs import hookimpl

from ..config.values import to_bool, to_duration

if TYPE_CHECKING:
    from ..jobs import Job
    from ..runs import Run

SAVE_KEYS = frozenset({"save-folder", "save-only-on-error", "save-retention"})

#: A config key, or an ``environment`` variable, whose name contains one of
#: these never reaches the JSON file.
SENSITIVE_WORDS = ("password", "passwd", "secret", "token", "webhook", "credential", "api_key", "apikey")

SUFFIXES = (".stdout.log", ".stderr.log", ".json")

#: Deleting old files lists the folder; do it at most this often per job and folder.
DEFAULT_SWEEP_INTERVAL = 60.0

_UNSAFE = re.compile(r"[^\w.@+=-]")
_MAX_NAME = 100
_RUN_ID = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class SaveConfig:
    folder: Path | None
    only_on_error: bool = False
    #: Seconds; 0 keeps files forever.
    retention: float = 0.0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> SaveConfig:
        """From typed job options or raw ``[global]`` values (strings, YAML scalars)."""
        folder = values.get("save-folder")
        only = values.get("save-only-on-error")
        retention = values.get("save-retention")
        if isinstance(retention, int | float) and not isinstance(retention, bool):
            seconds = float(retention)  # already typed
        else:
            seconds = to_duration(retention) if retention not in (None, "") else 0.0
        return cls(
            folder=Path(str(folder)) if folder else None,
            only_on_error=to_bool(only) if only not in (None, "") else False,
            retention=seconds,
        )


class SaveMiddleware:
    """Registered as a plugin; thread-safe (runs end on many threads at once)."""

    PLUGIN_NAME = "ofelia_core.middlewares.save"

    def __init__(
        self,
        global_values: Mapping[str, Any],
        secret_keys: frozenset[str],
        *,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.global_config = SaveConfig.from_values(global_values)
        self.secret_keys = secret_keys
        self.sweep_interval = sweep_interval
        self.now = now
        self._last_sweep: dict[tuple[Path, str], float] = {}
        self._sweep_lock = threading.Lock()
        #: job name -> (the Job, its redacted config): a job's options never change (a reload
        #: builds new Job objects), and redacting them for every notified run cost most of
        #: building a notice (bench/bench_notify.py).
        self._redacted: dict[str, tuple[Job, dict[str, Any]]] = {}

    def config_for(self, job: Job) -> SaveConfig:
        if job.explicit & SAVE_KEYS:
            return SaveConfig.from_values(job.options)
        return self.global_config

    @hookimpl
    def ofelia_observe_run_end(self, job: Job, run: Run) -> None:
        # Failures are logged and never raised: a failed save never fails the run.
        prefix = f'[Job "{run.job_name}" ({run.id})]'
        try:
            config = self.config_for(job)
        except ValueError as exc:  # validation should have caught it
            logger.warning(f"{prefix} invalid save config: {exc}")
            return
        if config.folder is None:
            return
        if run.failed or not config.only_on_error:
            try:
                self.save(config.folder, job, run)
            except Exception as exc:
                logger.warning(f"{prefix} cannot save the run to {config.folder}: {exc}")
        # Also after a run that was not saved, or old files would stay until the next failure.
        if config.retention > 0:
            try:
                self.sweep(config.folder, job.name, config.retention)
            except Exception as exc:
                logger.warning(f"{prefix} cannot delete old saved files in {config.folder}: {exc}")

    def save(self, folder: Path, job: Job, run: Run) -> Path:
        """Write the three files; returns the path of the ``.json`` one."""
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(_run_time(run, self.now)))
        stem = f"{stamp}_{safe_name(job.name)}"
        json_path, fd = _claim(folder, stem, run.id)
        base = str(json_path)[: -len(".json")]
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            Path(base + ".stdout.log").write_bytes(run.stdout)
            Path(base + ".stderr.log").write_bytes(run.stderr)
            json.dump(self.document(job, run), out, indent=2, default=str)
            out.write("\n")
        return json_path

    def document(self, job: Job, run: Run) -> dict[str, Any]:
        """The JSON file's content: the run summary and the job's config without secrets."""
        cached = self._redacted.get(job.name)
        if cached is None or cached[0] is not job:
            cached = self._redacted[job.name] = (job, self.redact(job.options))
        return {
            "run": run.summary(),
            "job": {"name": job.name, "type": job.type, "config": dict(cached[1])},
        }

    def redact(self, options: Mapping[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for key, value in options.items():
            if key in self.secret_keys or _sensitive(key):
                continue
            if key == "environment" and isinstance(value, list):
                value = [_redact_variable(item) for item in value]
            config[key] = value
        return config

    def sweep(self, folder: Path, job_name: str, retention: float) -> int:
        """Delete the job's saved files older than ``retention``; returns how many."""
        now = self.now()
        with self._sweep_lock:
            last = self._last_sweep.get((folder, job_name))
            if last is not None and now - last < self.sweep_interval:
                return 0
            self._last_sweep[(folder, job_name)] = now
        pattern = saved_file_pattern(job_name)
        deleted = 0
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:  # nothing saved yet
            return 0
        for entry in entries:
            if not pattern.fullmatch(entry.name):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < now - retention:
                    os.unlink(entry.path)
                    deleted += 1
            except FileNotFoundError:  # another thread's sweep got there first
                pass
        return deleted


def safe_name(name: str) -> str:
    """``name`` as a file-name part: unchanged when already safe, else the unsafe
    characters replaced and a digest of the real name added so names stay distinct."""
    cleaned = _UNSAFE.sub("_", name)
    if cleaned == name and 0 < len(name.encode()) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{cleaned[:_MAX_NAME]}~{digest}"


def saved_file_pattern(job_name: str) -> re.Pattern[str]:
    """File names this middleware writes for ``job_name``, and nothing else."""
    suffixes = "|".join(re.escape(suffix) for suffix in SUFFIXES)
    return re.compile(rf"\d{{8}}_\d{{6}}_{re.escape(safe_name(job_name))}(?:\.[0-9a-f]{{12}})?(?:{suffixes})")


def _run_time(run: Run, now: Callable[[], float]) -> float:
    for at in (run.started_at, run.scheduled_at, run.ended_at):
        if at is not None:
            return at
    return now()


def _claim(folder: Path, stem: str, run_id: str) -> tuple[Path, int]:
    """Create ``stem.json`` exclusively, or ``stem.<id>.json`` if a run of the job
    that started in the same second has it: a save never overwrites another's."""
    suffix = run_id if _RUN_ID.fullmatch(run_id) else hashlib.sha256(run_id.encode()).hexdigest()[:12]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        path = folder / f"{stem}.json"
        return path, os.open(path, flags, 0o666)
    except FileExistsError:
        path = folder / f"{stem}.{suffix}.json"
        return path, os.open(path, flags, 0o666)


def _sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_WORDS)


def _redact_variable(item: Any) -> Any:
    """``NAME=value`` keeps its name but not its value when the name looks secret."""
    name, sep, _ = str(item).partition("=")
    return f"{name}=<redacted>" if sep and _sensitive(name) else item
