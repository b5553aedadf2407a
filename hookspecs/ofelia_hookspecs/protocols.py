"""The contract a driver of each swappable concern satisfies.

A driver is any object with these methods; nothing needs to inherit from
them. The contract test kit in :mod:`ofelia_hookspecs.contract` checks the
behaviour the core relies on, for the baseline and every other driver alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .types import ContainerSpec, ServiceSpec, StreamChunk


@runtime_checkable
class DockerClient(Protocol):
    """Low-level Docker engine operations. A driver only moves bytes: it
    raises the typed errors of :mod:`ofelia_hookspecs.errors` and never
    decides what a job means by them."""

    def ping(self) -> None:
        """Return when the engine answers; raise ``EngineUnavailable`` otherwise."""

    def version(self) -> dict[str, Any]:
        """The engine's version document."""

    # exec
    def exec_create(
        self,
        container: str,
        cmd: Sequence[str],
        *,
        user: str = "",
        tty: bool = False,
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> str:
        """Create an exec in a running container; return its id."""

    def exec_start(self, exec_id: str, *, tty: bool = False) -> Iterator[StreamChunk]:
        """Start an exec and stream its demultiplexed output until it ends."""

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        """The exec's state: ``Running``, ``ExitCode``, ``Pid``."""

    # containers
    def container_create(self, spec: ContainerSpec) -> str:
        """Create a container; return its id. ``NotFound`` when the image is missing."""

    def container_start(self, container_id: str) -> None:
        """Start a created or stopped container."""

    def container_wait(self, container_id: str, timeout: float | None = None) -> int:
        """Block until the container exits; return its exit code.
        ``DockerTimeout`` when ``timeout`` seconds pass first."""

    def container_logs(self, container_id: str, *, follow: bool = False) -> Iterator[StreamChunk]:
        """The container's output, demultiplexed; ``follow`` streams until it exits."""

    def container_stop(self, container_id: str, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""

    def container_kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        """Send a signal to the container's main process."""

    def container_remove(self, container_id: str, *, force: bool = False) -> None:
        """Remove the container (and its anonymous volumes)."""

    def container_inspect(self, container_id: str) -> dict[str, Any]:
        """The container's inspect document."""

    def container_list(
        self, *, filters: Mapping[str, Sequence[str]] | None = None, all: bool = False
    ) -> list[dict[str, Any]]:
        """Containers matching the engine-side ``filters`` (for example labels)."""

    # images
    def image_inspect(self, ref: str) -> dict[str, Any]:
        """The local image's inspect document; ``NotFound`` when absent."""

    def image_pull(self, ref: str) -> None:
        """Pull an image; ``PullFailed`` on any registry failure."""

    # services
    def service_create(self, spec: ServiceSpec) -> str:
        """Create a swarm service with restart condition none; return its id."""

    def service_inspect(self, service_id: str) -> dict[str, Any]:
        """The service's inspect document."""

    def service_tasks(self, service_id: str) -> list[dict[str, Any]]:
        """The service's tasks with their status."""

    def service_logs(self, service_id: str) -> Iterator[StreamChunk]:
        """The service's output, demultiplexed."""

    def service_remove(self, service_id: str) -> None:
        """Remove the service."""

    # events
    def events(
        self, *, since: float | None = None, filters: Mapping[str, Sequence[str]] | None = None
    ) -> Iterator[dict[str, Any]]:
        """A long-lived stream of engine events; closing the iterator ends it."""

    def stats(self) -> dict[str, Any]:
        """The driver's own figures (pool usage, breaker state, ...)."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class TokenManager(Protocol):
    """Opaque bearer tokens for the web UI."""

    def issue(self, subject: str, expires_in: float) -> str:
        """A new random token for ``subject`` valid for ``expires_in`` seconds."""

    def validate(self, token: str) -> str | None:
        """The token's subject when it is known and unexpired, else ``None``."""

    def revoke(self, token: str) -> bool:
        """Forget the token; ``True`` when it was known."""

    def stats(self) -> dict[str, Any]:
        """Figures such as active and issued tokens."""

    def close(self) -> None:
        """Stop background work, if any."""


@runtime_checkable
class OutputBuffer(Protocol):
    """Captured output of one stream of one run, capped at the pool's maximum;
    past the cap the newest bytes are kept."""

    def write(self, data: bytes) -> int:
        """Append ``data``; return ``len(data)``."""

    def getvalue(self) -> bytes:
        """The bytes kept so far."""

    def __len__(self) -> int:
        """Number of bytes kept."""

    @property
    def truncated(self) -> bool:
        """True when older bytes were dropped to respect the cap."""


@runtime_checkable
class BufferPool(Protocol):
    """Hands out output buffers and takes them back."""

    def get(self, job_name: str, stream: str) -> OutputBuffer:
        """An empty buffer for ``stream`` (``stdout`` or ``stderr``) of a run of ``job_name``."""

    def put(self, buffer: OutputBuffer) -> None:
        """Return a buffer; the caller must not use it afterwards."""

    def stats(self) -> dict[str, Any]:
        """Figures such as gets, puts, hits and bytes held."""

    def close(self) -> None:
        """Drop whatever the pool holds."""


@runtime_checkable
class MetricsRecorder(Protocol):
    """Receives measurements from the core and exposes them."""

    def observe_operation(self, concern: str, operation: str, seconds: float, error: str | None) -> None:
        """One driver call: its concern, operation, latency and error type (or ``None``)."""

    def record_run(self, job_name: str, state: str, seconds: float) -> None:
        """One finished run of a job."""

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Set a gauge, such as concurrent jobs."""

    def export(self, fmt: str) -> str:
        """The metrics as text: ``"prometheus"`` or ``"json"``; empty when disabled."""

    def stats(self) -> dict[str, Any]:
        """The recorder's own figures."""

    def close(self) -> None:
        """Stop background sampling, if any."""


__all__ = ["BufferPool", "DockerClient", "MetricsRecorder", "OutputBuffer", "TokenManager"]
