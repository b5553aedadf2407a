"""Jobs as the scheduler runs them: a validated config section with typed values."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ofelia_hookspecs.types import ConfigKeys, JobTypeSpec, KeySpec

from .config.model import Config, Location, Section
from .config.schedule import Schedule, parse_schedule
from .config.validate import job_keys
from .config.values import coerce, to_list

#: Ofelia's cap on a run, used when neither the job nor [global] sets max-runtime.
DEFAULT_MAX_RUNTIME = 24 * 3600.0
#: A run due longer ago than this is recorded as missed instead of started late.
DEFAULT_MISSED_RUN_GRACE = 60.0
#: Pause before the first retry (``retry-delay``), and the cap on the doubled pauses (``retry-max-delay``).
DEFAULT_RETRY_DELAY = 5.0
DEFAULT_RETRY_MAX_DELAY = 300.0
#: ``retry-on`` words and the run state each names.
RETRY_ON_WORDS = {"failed": "failed", "timed-out": "timed_out", "timed_out": "timed_out", "timeout": "timed_out"}


@dataclass(frozen=True)
class Job:
    """One job. ``options`` holds every key of its type, typed, defaults filled in."""

    name: str
    type: str
    options: Mapping[str, Any]
    schedule: Schedule
    spec: JobTypeSpec = field(compare=False, repr=False)
    location: Location | None = field(default=None, compare=False)
    #: Keys set in the job's own section (the rest are defaults or from [global]).
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.options.get(key)
        return default if value is None else value

    @property
    def identity(self) -> str:
        """A digest of the type and every key: a reload replaces a job whose identity changed."""
        text = json.dumps([self.type, sorted(self.options.items())], default=str, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def max_runtime(self) -> float | None:
        """Seconds a run may take; ``None`` when unlimited (``max-runtime = 0``)."""
        seconds = float(self.get("max-runtime", DEFAULT_MAX_RUNTIME))
        return seconds or None

    @property
    def no_overlap(self) -> bool:
        return bool(self.get("no-overlap", False))

    @property
    def history_limit(self) -> int:
        return int(self.get("history-limit", 10))

    @property
    def run_on_startup(self) -> bool:
        return bool(self.get("run-on-startup", False))

    @property
    def missed_run_grace(self) -> float:
        return float(self.get("missed-run-grace", DEFAULT_MISSED_RUN_GRACE))

    # --- run policies (read once per reload by the policy engine, never per run) ---

    @property
    def max_retries(self) -> int:
        return int(self.get("max-retries", 0))

    @property
    def retry_delay(self) -> float:
        return float(self.get("retry-delay", DEFAULT_RETRY_DELAY))

    @property
    def retry_max_delay(self) -> float:
        return float(self.get("retry-max-delay", DEFAULT_RETRY_MAX_DELAY))

    @property
    def retry_exponential(self) -> bool:
        return bool(self.get("retry-exponential", True))

    @property
    def retry_on(self) -> frozenset[str]:
        """Outcomes retried, as run states (``failed``, ``timed_out``)."""
        words = to_list(self.get("retry-on", "failed,timed-out"), split_commas=True)
        return frozenset(RETRY_ON_WORDS[word.lower()] for word in words if word.lower() in RETRY_ON_WORDS)

    @property
    def on_success(self) -> tuple[str, ...]:
        return self._names("on-success")

    @property
    def on_failure(self) -> tuple[str, ...]:
        return self._names("on-failure")

    @property
    def depends_on(self) -> tuple[str, ...]:
        return self._names("depends-on")

    def _names(self, key: str) -> tuple[str, ...]:
        value = self.options.get(key)
        if not value:
            return ()
        return tuple(dict.fromkeys(to_list(value, split_commas=True)))


def build_job(
    section: Section,
    spec: JobTypeSpec,
    extra_keys: Sequence[ConfigKeys],
    global_values: Mapping[str, Any] | None = None,
) -> Job:
    """A Job from a section that validated; raises ``ValueError`` otherwise.

    ``[global]`` values fill in keys every job takes when the job leaves them
    unset (``max-runtime``, ``missed-run-grace``, ...); a job's own value wins.
    """
    assert section.name is not None
    table: dict[str, KeySpec] = job_keys(spec, extra_keys)
    global_values = global_values or {}
    options: dict[str, Any] = {}
    for key, key_spec in table.items():
        raw = section.values.get(key)
        if raw is None and key in INHERITED_FROM_GLOBAL:
            raw = global_values.get(key)
        if raw is None and key == "user" and spec.name in DEFAULT_USER_TYPES:
            # [global] default-user; empty means the key's own default (root, as in Ofelia).
            raw = global_values.get("default-user") or None
        if raw is None:
            raw = key_spec.default
        options[key] = None if raw is None else coerce(key_spec, raw)
    zone = options.get("timezone")
    schedule, _ = parse_schedule(str(options.get("schedule") or ""), timezone=zone or None)
    return Job(section.name, section.kind, options, schedule, spec, section.location, frozenset(section.values))


#: Keys a job takes from [global] when it does not set them itself.
INHERITED_FROM_GLOBAL = frozenset({"max-runtime", "missed-run-grace"})
#: Job types whose unset ``user`` comes from [global] ``default-user`` (container jobs, not job-local).
DEFAULT_USER_TYPES = frozenset({"job-exec", "job-run", "job-service-run"})


def build_jobs(
    config: Config, job_types: Mapping[str, JobTypeSpec], extra_keys: Sequence[ConfigKeys]
) -> dict[str, Job]:
    """Every job of a validated config."""
    return {
        name: build_job(section, job_types[section.kind], extra_keys, config.global_.values)
        for name, section in config.jobs.items()
    }
