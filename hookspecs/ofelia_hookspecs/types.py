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
