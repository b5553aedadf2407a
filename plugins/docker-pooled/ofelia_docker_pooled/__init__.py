"""ofelia's pooled Docker client driver (entry point ``ofelia.docker_client: pooled``).

Chosen by ``OFELIA_USE_OPTIMIZED_DOCKER_CLIENT=true`` (or ``OFELIA_DOCKER_CLIENT=pooled``,
or ``[drivers] docker-client = pooled``); unset the flag to roll back to the
baseline. It speaks the Engine API itself over kept-alive ``http.client``
connections (unix socket, TCP, TLS), with separate pools for control calls
and long-lived streams, a circuit breaker and a limit on requests in flight.
Settings: see :mod:`ofelia_docker_pooled.settings` and the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import DriverContext

if TYPE_CHECKING:
    from .client import PooledDockerClient


@hookimpl
def ofelia_make_docker_client(settings: Mapping[str, Any], context: DriverContext) -> PooledDockerClient:
    """Build the pooled driver; a bad setting raises ``ValueError`` naming it. Nothing is
    contacted here: the first call opens the first connection."""
    from .client import PooledDockerClient
    from .settings import parse_settings

    return PooledDockerClient(parse_settings(settings), clock=context.clock)


__all__ = ["ofelia_make_docker_client"]
