"""The baseline Docker client driver: the Docker SDK for Python with its defaults.

Entry point ``ofelia.docker_client: baseline``. It wraps the SDK's low-level
``docker.APIClient`` and maps its exceptions to the typed errors of
:mod:`ofelia_hookspecs.errors`; it holds no job logic.

Settings (``[docker-client]``, all optional; keys this driver does not know are
ignored, they may belong to another driver):

``base-url``
    The engine's address (``unix:///var/run/docker.sock``, ``tcp://host:2376``).
    Default: ``DOCKER_HOST``, else the SDK's default socket.
``timeout``
    Seconds a control call may take. Default 60. Long-lived streams (exec output,
    followed logs, events) and ``container_wait`` without a timeout have none.
``api-version``
    ``auto`` (negotiate with the engine) or a version such as ``1.41``.
    Default: ``DOCKER_API_VERSION``, else ``auto``.

TLS comes from ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``, as with the
``docker`` CLI. Settings are validated when the driver is built; the engine is
first contacted by the first call, so building never blocks.

Error mapping: 404 is ``NotFound``; 409 (a name in use, a stopped or paused
container) is ``Conflict``; a failed pull, and any server error about a registry
or DNS lookup, is ``PullFailed``; a refused connection, a broken stream or any
other 5xx is ``EngineUnavailable``, except the 5xx the engine uses for a bad
request (an unknown user, a working directory that is a file, an OCI runtime
error about the command, a node that is not a swarm manager), which are plain
``DockerError``; a read timeout is ``DockerTimeout``.

Threads: one ``APIClient`` (a ``requests`` session) is shared by every job
thread. Known limit of the baseline: the SDK keeps at most 10 connections per
engine; more concurrent calls open extra connections that are discarded after
use (urllib3 logs "Connection pool is full"), and each open stream (exec
output, followed logs, events) holds one of them while it lasts.

Streams returned by ``exec_start``, ``container_logs``, ``service_logs`` and
``events`` may be closed from another thread (``close()``); iteration then ends
without an error. They have no read timeout, so a silent job never times out.
When the connection breaks, exec output and events end quietly (the SDK's
behaviour; the next call reports the engine's state) and logs raise
``EngineUnavailable``. The events stream also ends when the engine restarts:
read it again with ``since=`` the last event's time.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import docker.errors
import docker.utils
import requests
import urllib3.exceptions
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.docker_wire import Stream, demux_frames, error_for_status
from ofelia_hookspecs.errors import DockerError, DockerTimeout, EngineUnavailable, PullFailed
from ofelia_hookspecs.types import ContainerSpec, DriverContext, ServiceSpec, StreamChunk

DRIVER_NAME = "baseline"
SECTION = "docker-client"
DEFAULT_TIMEOUT = 60.0
#: What the SDK uses when neither the settings nor DOCKER_HOST name an engine.
DEFAULT_BASE_URL = "unix:///var/run/docker.sock"
#: The SDK's own minimum.
MINIMUM_API_VERSION = (1, 24)

T = TypeVar("T")

# Local failures talking to the engine: it is not there or went away mid-call.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.NewConnectionError,
    http.client.HTTPException,
    ConnectionError,
    FileNotFoundError,
    OSError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (requests and urllib3 nest their causes)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested: list[Any] = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        nested.extend(current.args)
        todo.extend(item for item in nested if isinstance(item, BaseException))


def _api_message(exc: docker.errors.APIError) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc).strip()


def translate_error(exc: BaseException, operation: str, *, pull: bool = False) -> DockerError:
    """The typed error for a library exception raised by ``operation``."""
    if isinstance(exc, DockerError):
        return exc
    for cause in _causes(exc):
        if isinstance(cause, docker.errors.APIError) and cause.status_code is not None:
            return error_for_status(int(cause.status_code), _api_message(cause), operation, pull=pull)
    causes = list(_causes(exc))
    # A connect timeout means nothing answers: the engine is unavailable, not slow.
    if any(isinstance(c, requests.exceptions.ConnectTimeout) for c in causes):
        return EngineUnavailable(f"cannot connect to the engine: {exc}", operation=operation)
    if any(
        isinstance(c, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError | TimeoutError)
        for c in causes
    ):
        return DockerTimeout(f"the engine did not answer in time: {exc}", operation=operation)
    if any(isinstance(c, _CONNECTION_ERRORS) for c in causes):
        return EngineUnavailable(f"cannot reach the engine: {exc}", operation=operation)
    return DockerError(str(exc) or type(exc).__name__, operation=operation)


# --- settings -------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSettings:
    """Validated settings; ``base_url`` None means the SDK's default socket."""

    base_url: str | None
    timeout: float
    api_version: str
    tls: Any = None


def _setting(settings: Mapping[str, Any], key: str) -> Any:
    # Keys arrive lower-cased with dashes; accept underscores too (YAML authors type them).
    for name, value in settings.items():
        if str(name).strip().lower().replace("_", "-") == key:
            return value
    return None


def _check_api_version(value: Any, where: str) -> str:
    text = str(value).strip()
    if text.lower() == "auto":
        return "auto"
    match = re.fullmatch(r"v?(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"{where}: {value!r} is not an API version: use 'auto' or a version such as 1.41")
    if (int(match[1]), int(match[2])) < MINIMUM_API_VERSION:
        raise ValueError(f"{where}: API version {text} is too old; the Docker SDK needs 1.24 or later")
    return f"{int(match[1])}.{int(match[2])}"


def _check_base_url(value: Any, where: str, tls: bool) -> str:
    text = str(value).strip() if isinstance(value, str) else ""
    if not text:
        raise ValueError(f"{where}: must be an address such as unix:///var/run/docker.sock, got {value!r}")
    try:
        docker.utils.parse_host(text, False, tls=tls)
    except (docker.errors.DockerException, ValueError) as exc:
        raise ValueError(f"{where}: {value!r} is not a Docker engine address: {exc}") from exc
    return text


def _check_timeout(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number of seconds, got {value!r}")
    try:
        seconds = float(str(value).strip().removesuffix("s")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{where}: must be a positive number of seconds, got {value!r}")
    return seconds


def parse_settings(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> ClientSettings:
    """Validate the section and the environment; raise ``ValueError`` naming the key."""
    env = os.environ if environ is None else environ
    try:
        # kwargs_from_env reads os.environ when handed an empty mapping: only call it with content.
        env_kwargs: dict[str, Any] = docker.utils.kwargs_from_env(environment=env) if env else {}
    except docker.errors.DockerException as exc:
        raise ValueError(f"DOCKER_TLS_VERIFY/DOCKER_CERT_PATH: {exc}") from exc
    tls = env_kwargs.get("tls")

    base_url: str | None = None
    if env_kwargs.get("base_url"):
        base_url = _check_base_url(env_kwargs["base_url"], "DOCKER_HOST", bool(tls))
    raw = _setting(settings, "base-url")
    if raw is not None:
        base_url = _check_base_url(raw, f"[{SECTION}] base-url", bool(tls))

    raw = _setting(settings, "timeout")
    timeout = DEFAULT_TIMEOUT if raw is None else _check_timeout(raw, f"[{SECTION}] timeout")

    api_version = "auto"
    if env.get("DOCKER_API_VERSION", "").strip():
        api_version = _check_api_version(env["DOCKER_API_VERSION"], "DOCKER_API_VERSION")
    raw = _setting(settings, "api-version")
    if raw is not None:
        api_version = _check_api_version(raw, f"[{SECTION}] api-version")
    return ClientSettings(base_url=base_url, timeout=timeout, api_version=api_version, tls=tls)


# --- streams --------------------------------------------------------------------


def _response_socket(response: Any) -> socket.socket | None:
    """The socket under a streaming ``requests`` response, if it is still open."""
    try:
        fp = response.raw._fp.fp
    except AttributeError:
        return None
    raw = getattr(fp, "raw", fp)
    sock = getattr(raw, "_sock", None) or getattr(raw, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _shutdown_response(response: Any) -> None:
    # shutdown() wakes a thread blocked reading the socket; close() alone does not.
    sock = _response_socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()


def _raw_chunks(raw: Any) -> Iterator[StreamChunk]:
    """A tty's output is not multiplexed: everything is stdout."""
    while True:
        data = raw.read1(65536)
        if not data:
            return
        yield "stdout", data


def _exec_chunks(frames: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[StreamChunk]:
    for stdout, stderr in frames:
        if stdout:
            yield "stdout", stdout
        if stderr:
            yield "stderr", stderr


# --- the driver -----------------------------------------------------------------


class SdkDockerClient:
    """:class:`~ofelia_hookspecs.protocols.DockerClient` over ``docker.APIClient``."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._client: Any = None

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> SdkDockerClient:
        return cls(parse_settings(settings, environ))

    # -- plumbing

    def _api(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    # version="auto" asks the engine once, here, on first use: never in __init__.
                    api = docker.APIClient(
                        base_url=self._settings.base_url,
                        version=self._settings.api_version,
                        timeout=self._settings.timeout,
                        tls=self._settings.tls or False,
                    )
                    if api.base_url.startswith("http+docker://localhost"):
                        # A unix socket: proxies and .netrc never apply, and requests would
                        # otherwise scan the environment for them on every call (~1 ms a run).
                        api.trust_env = False
                    self._client = api
                client = self._client
        return client

    def _call(self, operation: str, fn: Callable[[Any], T]) -> T:
        try:
            return fn(self._api())
        except DockerError:
            raise
        except Exception as exc:
            raise translate_error(exc, operation) from exc

    def _log_stream(
        self, operation: str, path: str, ident: str, tty: bool, follow: bool
    ) -> Stream[StreamChunk]:
        """GET a logs endpoint and demultiplex it (the SDK's low-level logs merge the streams)."""

        def request(api: Any) -> Any:
            params = {"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 0, "tail": "all"}
            # A followed stream may stay silent for hours: no read timeout on it.
            response = api.get(api._url(path, ident), params=params, stream=True,
                               timeout=None if follow else self._settings.timeout)
            api._raise_for_status(response)
            return response

        response = self._call(operation, request)
        items = _raw_chunks(response.raw) if tty else demux_frames(response.raw)
        return Stream(operation, items, lambda: _shutdown_response(response), translate_error)

    # -- engine

    def ping(self) -> None:
        self._call("ping", lambda api: api.ping())

    def version(self) -> dict[str, Any]:
        return dict(self._call("version", lambda api: api.version()))

    # -- exec

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
        result = self._call(
            "exec_create",
            lambda api: api.exec_create(
                container,
                list(cmd),
                stdout=True,
                stderr=True,
                tty=tty,
                user=user or "",
                environment=dict(environment) if environment else None,
                workdir=workdir or None,
            ),
        )
        return str(result["Id"])

    def exec_start(self, exec_id: str, *, tty: bool = False) -> Iterator[StreamChunk]:
        frames = self._call(
            "exec_start", lambda api: api.exec_start(exec_id, tty=tty, stream=True, demux=True)
        )
        return Stream("exec_start", _exec_chunks(frames), frames.close, translate_error)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return dict(self._call("exec_inspect", lambda api: api.exec_inspect(exec_id)))

    # -- containers

    def container_create(self, spec: ContainerSpec) -> str:
        def create(api: Any) -> Any:
            binds = [v for v in spec.volumes if ":" in v]
            anonymous = [v for v in spec.volumes if ":" not in v]
            host_config = api.create_host_config(
                binds=binds or None,
                volumes_from=list(spec.volumes_from) or None,
                network_mode=spec.network or None,
            )
            return api.create_container(
                spec.image,
                command=list(spec.command) if spec.command is not None else None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                name=spec.name or None,
                user=spec.user or None,
                tty=spec.tty,
                environment=dict(spec.environment) or None,
                working_dir=spec.working_dir or None,
                hostname=spec.hostname or None,
                labels=dict(spec.labels) or None,
                volumes=anonymous or None,
                host_config=host_config,
            )

        return str(self._call("container_create", create)["Id"])

    def container_start(self, container_id: str) -> None:
        self._call("container_start", lambda api: api.start(container_id))

    def container_wait(self, container_id: str, timeout: float | None = None) -> int:
        result = self._call("container_wait", lambda api: api.wait(container_id, timeout=timeout))
        return int(result["StatusCode"])

    def container_logs(self, container_id: str, *, follow: bool = False) -> Iterator[StreamChunk]:
        tty = bool(self.container_inspect(container_id).get("Config", {}).get("Tty"))
        return self._log_stream("container_logs", "/containers/{0}/logs", container_id, tty, follow)

    def container_stop(self, container_id: str, timeout: float = 10) -> None:
        # The engine takes whole seconds.
        seconds = max(0, math.ceil(timeout))
        self._call("container_stop", lambda api: api.stop(container_id, timeout=seconds))

    def container_kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        self._call("container_kill", lambda api: api.kill(container_id, signal=signal))

    def container_remove(self, container_id: str, *, force: bool = False) -> None:
        self._call("container_remove", lambda api: api.remove_container(container_id, v=True, force=force))

    def container_inspect(self, container_id: str) -> dict[str, Any]:
        return dict(self._call("container_inspect", lambda api: api.inspect_container(container_id)))

    def container_list(
        self, *, filters: Mapping[str, Sequence[str]] | None = None, all: bool = False
    ) -> list[dict[str, Any]]:
        engine_filters = {key: list(values) for key, values in (filters or {}).items()}
        result = self._call(
            "container_list", lambda api: api.containers(all=all, filters=engine_filters or None)
        )
        return [dict(item) for item in result]

    # -- images

    def image_inspect(self, ref: str) -> dict[str, Any]:
        return dict(self._call("image_inspect", lambda api: api.inspect_image(ref)))

    def image_pull(self, ref: str) -> None:
        operation = "image_pull"
        try:
            # Errors after the pull started arrive inside a 200 stream, as {"error": ...}.
            for event in self._api().pull(ref, stream=True, decode=True):
                if isinstance(event, dict) and event.get("error"):
                    detail = event.get("errorDetail", {}).get("message") or event["error"]
                    raise PullFailed(f"pull of {ref} failed: {detail}", operation=operation)
        except DockerError:
            raise
        except Exception as exc:
            raise translate_error(exc, operation, pull=True) from exc

    # -- services

    def service_create(self, spec: ServiceSpec) -> str:
        def create(api: Any) -> Any:
            container_spec = docker.types.ContainerSpec(
                image=spec.image,
                # Like Ofelia: the command becomes the task's Command (it replaces the entrypoint).
                command=list(spec.command) if spec.command else None,
                env=dict(spec.environment) or None,
                user=spec.user or None,
                tty=spec.tty,
                labels=dict(spec.labels) or None,
            )
            template = docker.types.TaskTemplate(
                container_spec=container_spec,
                restart_policy=docker.types.RestartPolicy(condition="none"),
                networks=[spec.network] if spec.network else None,
            )
            return api.create_service(
                template,
                name=spec.name or None,
                labels=dict(spec.labels) or None,
                mode=docker.types.ServiceMode("replicated", replicas=1),
            )

        return str(self._call("service_create", create)["ID"])

    def service_inspect(self, service_id: str) -> dict[str, Any]:
        return dict(self._call("service_inspect", lambda api: api.inspect_service(service_id)))

    def service_tasks(self, service_id: str) -> list[dict[str, Any]]:
        result = self._call("service_tasks", lambda api: api.tasks(filters={"service": service_id}))
        return [dict(task) for task in result]

    def service_logs(self, service_id: str) -> Iterator[StreamChunk]:
        spec = self.service_inspect(service_id).get("Spec", {})
        tty = bool(spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("TTY"))
        return self._log_stream("service_logs", "/services/{0}/logs", service_id, tty, follow=False)

    def service_remove(self, service_id: str) -> None:
        self._call("service_remove", lambda api: api.remove_service(service_id))

    # -- events

    def events(
        self, *, since: float | None = None, filters: Mapping[str, Sequence[str]] | None = None
    ) -> Iterator[dict[str, Any]]:
        engine_filters = {key: list(values) for key, values in (filters or {}).items()}
        # The engine reads "seconds.nanoseconds"; a float's repr would lose or misplace digits.
        since_text = f"{since:.9f}" if since is not None else None
        events = self._call(
            "events", lambda api: api.events(since=since_text, filters=engine_filters or None, decode=True)
        )
        return Stream("events", iter(events), events.close, translate_error)

    # -- driver

    def stats(self) -> dict[str, Any]:
        client = self._client
        return {
            "driver": DRIVER_NAME,
            "base_url": self._settings.base_url or DEFAULT_BASE_URL,
            "api_version": client.api_version if client is not None else self._settings.api_version,
            "timeout": self._settings.timeout,
            "connected": client is not None,
            "max_pool_size": docker.constants.DEFAULT_MAX_POOL_SIZE,
        }

    def close(self) -> None:
        # A later call reconnects: closing only releases the pooled connections.
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


@hookimpl
def ofelia_make_docker_client(settings: Mapping[str, Any], context: DriverContext) -> SdkDockerClient:
    """Build the baseline driver; a bad setting raises ``ValueError`` naming it."""
    return SdkDockerClient.from_settings(settings)


__all__ = ["ClientSettings", "SdkDockerClient", "Stream", "ofelia_make_docker_client", "parse_settings",
           "translate_error"]
