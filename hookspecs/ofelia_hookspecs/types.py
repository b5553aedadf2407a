"""Plain data shared by the core and plugins: specs handed to drivers, the
description of job types and config keys, and the read-only views of jobs
and runs that lifecycle hooks receive."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from .protocols import OutputBuffer

#: One chunk of demultiplexed output: ``("stdout" | "stderr", bytes)``.
StreamChunk = tuple[str, bytes]

KeyKind = Literal["str", "bool", "int", "duration", "list", "schedule"]


@dataclass(frozen=True)
class KeySpec:
    """One configuration key a job type, section or plugin accepts."""

    name: str
    kind: KeyKind = "str"
    default: Any = None
    required: bool = False
    description: str = ""
    #: Redacted wherever the effective config is shown or saved.
    secret: bool = False
    #: The values allowed (case-insensitive), when the key is an enumeration.
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigKeys:
    """Keys a plugin contributes to a section.

    ``section`` is ``"global"``, ``"job"`` (every job type), a job type such
    as ``"job-exec"``, or a concern's section such as ``"docker-client"``.
    """

    section: str
    keys: tuple[KeySpec, ...]


@dataclass(frozen=True)
class JobTypeSpec:
    """A job type: its INI section prefix, the keys it accepts and, once the
    scheduler runs it, the callable that executes one run."""

    name: str
    keys: tuple[KeySpec, ...]
    description: str = ""
    #: ``runner(job, run, drivers)``; ``None`` for a type that is only validated.
    runner: Callable[..., Any] | None = None


@dataclass(frozen=True)
class DriverContext:
    """What every driver factory receives besides its own settings."""

    #: Seconds, monotonic; injectable so tests control time.
    clock: Callable[[], float]
    #: The daemon's state directory, or None when there is none (validate).
    state_dir: Path | None = None
    #: The ``[global]`` section, read-only.
    global_settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ContainerSpec:
    """What ``container_create`` needs; the core builds it from a job's keys."""

    image: str
    command: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    name: str | None = None
    user: str = ""
    tty: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    hostname: str | None = None
    network: str | None = None
    volumes: Sequence[str] = ()
    volumes_from: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ServiceSpec:
    """What ``service_create`` needs; restart condition is always ``none``."""

    image: str
    name: str | None = None
    command: Sequence[str] | None = None
    user: str = ""
    tty: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)
    network: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class JobView(Protocol):
    """A configured job, as hooks see it."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def options(self) -> Mapping[str, Any]: ...


class RunView(Protocol):
    """One run of a job, as hooks see it. ``state`` is one of ``running``,
    ``success``, ``failed``, ``skipped``, ``missed``, ``timed_out``,
    ``cancelled``."""

    @property
    def id(self) -> str: ...

    @property
    def job_name(self) -> str: ...

    @property
    def state(self) -> str: ...


#: Run states as notices carry them.
RUN_STATES: frozenset[str] = frozenset({"success", "failed", "skipped", "missed", "timed_out", "cancelled"})
#: ``Notice.failed``: what the ``*-only-on-error`` keys send.
FAILED_STATES: frozenset[str] = frozenset({"failed", "timed_out", "cancelled"})
#: ``Notice.skipped``.
SKIPPED_STATES: frozenset[str] = frozenset({"skipped", "missed"})


@dataclass(frozen=True)
class Notice:
    """One finished run, as notifiers receive it: built once per run, after its last attempt
    (a run that will be retried sends nothing). Times are epoch seconds."""

    job_name: str
    job_type: str
    run_id: str
    #: ``success``, ``failed``, ``skipped``, ``missed``, ``timed_out`` or ``cancelled``.
    state: str
    trigger: str
    attempt: int
    scheduled_at: float | None
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    error: str | None
    stdout: bytes
    stderr: bytes
    #: The run's JSON document as the save middleware writes it (job options with secrets redacted).
    document: Mapping[str, Any]
    #: This machine's host name (``%`` in ``email-from`` becomes it).
    hostname: str
    #: Notices of this job to this notifier suppressed by ``notify-cooldown`` since the last one sent.
    suppressed: int = 0

    @property
    def duration(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return self.ended_at - self.started_at

    @property
    def failed(self) -> bool:
        """Failed, timed out or cancelled: what ``*-only-on-error`` keys send."""
        return self.state in FAILED_STATES

    @property
    def skipped(self) -> bool:
        return self.state in SKIPPED_STATES


@dataclass(frozen=True)
class NotifierContext:
    """What a notifier's ``build`` receives besides the job's effective settings."""

    #: ``[webhook "NAME"]`` sections (and their YAML and label forms), by name, keys lower-cased.
    webhooks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The ``[global]`` section, read-only.
    global_settings: Mapping[str, Any] = field(default_factory=dict)
    hostname: str = ""


@dataclass(frozen=True)
class NotifierSpec:
    """A notifier (mail, Slack, webhooks, ...): the keys it reads and how to build one for a job.

    ``keys`` are accepted in ``[global]`` and in every job's section. Ofelia's rule: a job
    that sets any of them replaces the global values of this notifier entirely, so
    ``build`` gets either the job's values for these keys or the global ones, never a mix.
    ``build(settings, context)`` returns the deliveries to make for that job's runs (an
    empty list when the notifier is not configured for it); the core calls it once per job
    and config (again after a reload), never per run. ``settings`` holds every key of
    ``keys``, typed by its kind (bool, int, seconds as float, list of str, str; ``None`` when
    unset and without default). ``build`` raises ``ValueError`` for settings it cannot use;
    it must not do network I/O (``ofelia validate`` calls it too).

    ``check(settings)``, optional, returns warnings about settings that are valid but send
    nothing (mail keys without ``smtp-host``); ``ofelia validate`` and the daemon show them.
    """

    name: str
    keys: tuple[KeySpec, ...]
    build: Callable[[Mapping[str, Any], NotifierContext], Sequence[Notifier]]
    description: str = ""
    check: Callable[[Mapping[str, Any]], Sequence[str]] | None = None


class Notifier(Protocol):
    """One destination for one job's notices (a mail config, a Slack webhook, one webhook).

    The core calls ``wants`` when the run ends, on the run's thread (keep it quick, no I/O:
    it only filters, so the delivery queue holds real deliveries), then ``send`` on its
    delivery worker, off the run's thread; a ``send`` that raises is retried
    ``retry_count`` times ``retry_delay`` seconds apart, then recorded as a failed delivery
    and logged. Its message must not contain secrets (passwords, webhook URLs or their
    tokens).

    Optional: a ``states`` attribute, the ``frozenset`` of run states (:data:`RUN_STATES`)
    whose notices it may want. When every notifier of a job has one, a run in none of them
    ends without a notice being built or ``wants`` asked (with ``*-only-on-error``, most
    runs); without it, ``wants`` is asked for every run.
    """

    #: For logs and delivery records: ``mail``, ``slack``, ``webhook:ops``. Never a URL.
    @property
    def name(self) -> str: ...

    @property
    def retry_count(self) -> int: ...

    @property
    def retry_delay(self) -> float: ...

    def wants(self, notice: Notice) -> bool:
        """Whether this notice is sent at all (``*-only-on-error``, a webhook's ``trigger``)."""
        ...

    def send(self, notice: Notice) -> None:
        """Deliver it; raise (any exception) when it was not delivered."""
        ...


@dataclass(frozen=True)
class MetricSample:
    """One value a plugin adds to the metrics exposition."""

    name: str
    value: float
    kind: Literal["gauge", "counter"] = "gauge"
    labels: Mapping[str, str] = field(default_factory=dict)
    help: str = ""


@dataclass
class RunContext:
    """Handed to ``JobTypeSpec.runner(job, run, context) -> int`` (the exit code).

    The runner writes output into ``stdout``/``stderr`` (buffers from the pool
    driver, capped, newest bytes kept); the executor copies them into the run
    and returns them to the pool. A runner raises
    :class:`~ofelia_hookspecs.errors.RunTimedOut` after stopping a run that passed
    ``max_runtime``, :class:`~ofelia_hookspecs.errors.RunCancelled` after stopping
    one because ``cancel`` was set (shutdown), and
    :class:`~ofelia_hookspecs.errors.RunError` when the run could not start.
    """

    stdout: OutputBuffer
    stderr: OutputBuffer
    #: Seconds the run may take; None for no limit.
    max_runtime: float | None = None
    #: Set when the daemon gives up waiting at shutdown: stop the run now.
    cancel: threading.Event = field(default_factory=threading.Event)
    #: The active drivers (``docker_client``, ``buffer_pool``, ``metrics``, ...); None where none are needed.
    drivers: Any = None
