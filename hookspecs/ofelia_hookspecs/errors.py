"""Typed errors every Docker client driver raises.

Job logic in the core catches these, never a library's own exceptions, so any
driver can be swapped in without changing how a run reports a failure.
"""

from __future__ import annotations


class DockerError(Exception):
    """Base class of every error a Docker client driver raises."""

    #: True when the failure says the engine itself is unhealthy (counts
    #: towards a circuit breaker); False for a missing object, a conflict or a
    #: registry problem.
    engine_failure: bool = False

    def __init__(self, message: str, *, operation: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.status = status

    def __str__(self) -> str:
        prefix = f"{self.operation}: " if self.operation else ""
        return f"{prefix}{self.message}"


class NotFound(DockerError):
    """The container, exec, image or service does not exist (HTTP 404)."""


class Conflict(DockerError):
    """The object is in a state that forbids the operation (HTTP 409):
    a name already in use, a container that is not running, a paused container."""


class EngineUnavailable(DockerError):
    """The engine cannot be reached or answered with a server error of its own."""

    engine_failure = True


class PullFailed(DockerError):
    """An image is not present locally and pulling it failed (registry, DNS,
    authentication). Never an engine failure."""


class DockerTimeout(DockerError):
    """A control call did not answer within the driver's request timeout."""

    engine_failure = True


class RunError(Exception):
    """Raised by a job type's runner: the run failed before or without an exit code.
    The message is recorded as the run's error text."""


class RunTimedOut(RunError):
    """The run exceeded its ``max-runtime`` and was stopped."""


class RunCancelled(RunError):
    """The run was stopped because the daemon is shutting down."""


__all__ = [
    "Conflict",
    "DockerError",
    "DockerTimeout",
    "EngineUnavailable",
    "NotFound",
    "PullFailed",
    "RunCancelled",
    "RunError",
    "RunTimedOut",
]
