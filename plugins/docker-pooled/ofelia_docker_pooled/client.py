"""The pooled Docker client: the Engine API over kept-alive ``http.client`` connections,
behind a circuit breaker and a limit on requests in flight."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from ofelia_hookspecs.docker_wire import Stream, demux_frames, error_for_status
from ofelia_hookspecs.errors import DockerError, DockerTimeout, EngineUnavailable, PullFailed
from ofelia_hookspecs.types import ContainerSpec, ServiceSpec, StreamChunk

from . import bodies
from .breaker import CircuitBreaker
from .limiter import STARTS_WORK, Overloaded, RequestLimiter
from .settings import PooledSettings
from .transport import ConnectionPool, IdleBudget, PoolTimeout, connection_factory

DRIVER_NAME = "pooled"
_JSON = {"Content-Type": "application/json"}
#: A reused connection that fails like this was closed by the engine while idle: send again.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, http.client.BadStatusLine)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        return text
    return str(document.get("message", text)) if isinstance(document, dict) else text


def translate(exc: BaseException, operation: str) -> DockerError:
    """The typed error for a failure below HTTP (the engine answered nothing usable)."""
    if isinstance(exc, DockerError):
        return exc
    if isinstance(exc, TimeoutError):
        return DockerTimeout(f"the engine did not answer in time: {exc or 'timed out'}", operation=operation)
    return EngineUnavailable(f"cannot reach the engine: {type(exc).__name__}: {exc}", operation=operation)


def _path(template: str, *idents: str) -> str:
    return template.format(*(quote(ident, safe="") for ident in idents))


def _query(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    items = {key: value for key, value in params.items() if value is not None}
    return "?" + urlencode(items, quote_via=quote) if items else ""


def _filters(filters: Mapping[str, Sequence[str]] | None) -> str | None:
    engine = {key: list(values) for key, values in (filters or {}).items()}
    return json.dumps(engine) if engine else None


class _Lease:
    """A stream's connection, given back exactly once: reusable at a clean end,
    closed when the stream is closed early or breaks."""

    def __init__(self, pool: ConnectionPool, conn: http.client.HTTPConnection,
                 response: http.client.HTTPResponse, release_slot: Callable[[], None] = lambda: None) -> None:
        self._pool = pool
        self._conn = conn
        self._response = response
        #: Gives back the request slot the stream holds until its first bytes (idempotent).
        self.release_slot = release_slot
        self._lock = threading.Lock()
        self._done = False

    def _take(self) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    def finish(self) -> None:
        self.release_slot()
        if self._take():
            response = self._response
            reusable = response.isclosed() and not response.will_close
            if not reusable:
                self._conn.close()
            self._pool.release(self._conn, reusable=reusable)

    def abort(self) -> None:
        self.release_slot()
        if self._take():
            sock = self._conn.sock
            if sock is not None:
                # shutdown() wakes a thread blocked reading; close() alone does not.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._conn.close()
            self._pool.release(self._conn, reusable=False)


def _raw_chunks(response: http.client.HTTPResponse) -> Iterator[StreamChunk]:
    """A tty's output is not multiplexed: everything is stdout."""
    while True:
        data = response.read1(65536)
        if not data:
            return
        yield "stdout", data


def _json_documents(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """Concatenated JSON objects (events, pull progress), however the chunks split them."""
    decoder = json.JSONDecoder()
    pending = ""
    while True:
        data = response.read1(65536)
        if not data:
            return
        pending += data.decode("utf-8", "replace")
        while True:
            pending = pending.lstrip()
            if not pending:
                break
            try:
                document, end = decoder.raw_decode(pending)
            except ValueError:
                break  # incomplete: wait for more bytes
            pending = pending[end:]
            if isinstance(document, dict):
                yield document


class PooledDockerClient:
    """:class:`~ofelia_hookspecs.protocols.DockerClient` with pools, a breaker and a limiter."""

    def __init__(self, settings: PooledSettings, *, clock: Callable[[], float]) -> None:
        self._settings = settings
        factory = connection_factory(settings.endpoint, settings.connect_timeout, settings.tls)
        budget = IdleBudget(settings.max_idle_conns)
        self._control = ConnectionPool(
            "control", factory, max_open=settings.max_conns_per_host,
            # As in Go: more idle connections than may be open is meaningless.
            max_idle=min(settings.max_idle_conns_per_host, settings.max_conns_per_host),
            idle_timeout=settings.idle_conn_timeout, budget=budget, clock=clock,
        )
        self._streams = ConnectionPool(
            "stream", factory, max_open=None, max_idle=settings.max_idle_conns_per_host,
            idle_timeout=settings.idle_conn_timeout, budget=budget, clock=clock,
        )
        self._breaker = CircuitBreaker(
            failure_threshold=settings.breaker_failure_threshold,
            open_timeout=settings.breaker_open_timeout,
            half_open_max_calls=settings.breaker_half_open_max_calls,
            clock=clock,
        )
        self._limiter = RequestLimiter(settings.max_concurrent_requests, settings.request_queue_timeout,
                                       settings.stream_slot_hold)
        self._prefix = "" if settings.api_version == "auto" else f"/v{settings.api_version}"
        self._version_lock = threading.Lock()

    # -- plumbing

    def _api(self, path: str, operation: str) -> str:
        """The versioned path; ``auto`` asks the engine its version once, on first use
        (on behalf of ``operation``, which any error names)."""
        if not self._prefix:
            with self._version_lock:
                if not self._prefix:
                    answer = self._request(operation, "GET", "/version", versioned=False)
                    version = (answer.json() or {}).get("ApiVersion")
                    if not isinstance(version, str) or not version:
                        raise DockerError("the engine's /version names no ApiVersion", operation=operation)
                    self._prefix = f"/v{version}"
        return self._prefix + path

    def _exchange(
        self, pool: ConnectionPool, operation: str, method: str, url: str, body: bytes | None,
        timeout: float | None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request and read its status line and headers; the connection stays checked out."""
        try:
            conn, reused = pool.acquire(self._settings.request_queue_timeout, starts_work=operation in STARTS_WORK)
        except PoolTimeout as exc:
            raise Overloaded(f"{exc} ([docker-client] max-conns-per-host)", operation=operation) from None
        headers = _JSON if body is not None else {}
        while True:
            try:
                if conn.sock is None:
                    conn.connect()  # under the connect timeout
                assert conn.sock is not None
                conn.sock.settimeout(timeout)
                conn.request(method, url, body=body, headers=headers)
                return conn, conn.getresponse()
            except _STALE:
                conn.close()
                if reused:
                    reused = False
                    continue
                pool.release(conn, reusable=False)
                raise
            except BaseException:
                conn.close()
                pool.release(conn, reusable=False)
                raise

    def _request(
        self, operation: str, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        body: Any = None, versioned: bool = True, pull: bool = False, extra_time: float = 0.0,
    ) -> Answer:
        """A control call: admitted by the breaker, holding a request slot until its answer is read."""
        url = (self._api(path, operation) if versioned else path) + _query(params)
        payload = json.dumps(body).encode() if body is not None else None
        trial = self._breaker.before_call(operation)
        engine_failure, error_text = True, ""
        try:
            self._limiter.acquire(operation)
            try:
                conn, response = self._exchange(self._control, operation, method, url, payload,
                                                self._settings.timeout + extra_time)
                try:
                    data = response.read()
                except BaseException:
                    conn.close()
                    self._control.release(conn, reusable=False)
                    raise
                self._control.release(conn, reusable=not response.will_close)
            finally:
                self._limiter.release()
            answer = Answer(response.status, data)
            if answer.status >= 400:
                error = error_for_status(answer.status, _message(data), operation, pull=pull)
                engine_failure, error_text = error.engine_failure, str(error)
                raise error
            engine_failure = False
            return answer
        except DockerError as exc:
            engine_failure, error_text = exc.engine_failure, str(exc)
            raise
        except Exception as exc:
            error = translate(exc, operation)
            engine_failure, error_text = error.engine_failure, str(error)
            raise error from exc
        finally:
            self._breaker.record(engine_failure=engine_failure, trial=trial, error=error_text)

    def _open_stream(
        self, operation: str, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        body: Any = None, timeout: float | None = None, pull: bool = False, limited: bool = True,
    ) -> tuple[http.client.HTTPResponse, _Lease]:
        """Open a long-lived response on the stream pool; its body is read by the caller.

        A ``limited`` stream keeps its request slot until its first bytes arrive (or the
        ``stream-slot-hold`` runs out): only then has the engine done the work the
        request asked for. After that it never counts as a request in flight.
        """
        url = self._api(path, operation) + _query(params)
        payload = json.dumps(body).encode() if body is not None else None
        trial = self._breaker.before_call(operation)
        engine_failure, error_text = True, ""
        try:
            if limited:
                self._limiter.acquire(operation)
            try:
                conn, response = self._exchange(self._streams, operation, method, url, payload, timeout)
            except BaseException:
                if limited:
                    self._limiter.release()
                raise
            release_slot: Callable[[], None] = lambda: None  # noqa: E731 - the unlimited case
            if limited:
                token = self._limiter.hold()
                release_slot = functools.partial(self._limiter.release_hold, token)
            lease = _Lease(self._streams, conn, response, release_slot)
            if response.status >= 400:
                try:
                    data = response.read()
                finally:
                    lease.finish()
                error = error_for_status(response.status, _message(data), operation, pull=pull)
                engine_failure, error_text = error.engine_failure, str(error)
                raise error
            engine_failure = False
            return response, lease
        except DockerError as exc:
            engine_failure, error_text = exc.engine_failure, str(exc)
            raise
        except Exception as exc:
            error = translate(exc, operation)
            engine_failure, error_text = error.engine_failure, str(error)
            raise error from exc
        finally:
            self._breaker.record(engine_failure=engine_failure, trial=trial, error=error_text)

    def _stream(
        self, operation: str, response: http.client.HTTPResponse, lease: _Lease,
        items: Callable[[http.client.HTTPResponse], Iterator[Any]],
    ) -> Stream[Any]:
        def body() -> Iterator[Any]:
            chunks = items(response)
            for chunk in chunks:
                lease.release_slot()  # the first bytes are here: the engine did the work
                yield chunk
                yield from chunks
            lease.finish()

        return Stream(operation, body(), lease.abort, translate)

    # -- engine

    def ping(self) -> None:
        self._request("ping", "GET", "/_ping", versioned=False)

    def version(self) -> dict[str, Any]:
        return dict(self._request("version", "GET", "/version").json())

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
        body = bodies.exec_create(cmd, user=user, tty=tty, environment=environment, workdir=workdir)
        answer = self._request("exec_create", "POST", _path("/containers/{0}/exec", container), body=body)
        return str(answer.json()["Id"])

    def exec_start(self, exec_id: str, *, tty: bool = False) -> Iterator[StreamChunk]:
        # No read timeout: a job may print nothing for hours.
        response, lease = self._open_stream(
            "exec_start", "POST", _path("/exec/{0}/start", exec_id), body={"Detach": False, "Tty": tty}
        )
        return self._stream("exec_start", response, lease, _raw_chunks if tty else demux_frames)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return dict(self._request("exec_inspect", "GET", _path("/exec/{0}/json", exec_id)).json())

    # -- containers

    def container_create(self, spec: ContainerSpec) -> str:
        answer = self._request("container_create", "POST", "/containers/create",
                               params={"name": spec.name or None}, body=bodies.container_create(spec))
        return str(answer.json()["Id"])

    def container_start(self, container_id: str) -> None:
        self._request("container_start", "POST", _path("/containers/{0}/start", container_id))

    def container_wait(self, container_id: str, timeout: float | None = None) -> int:
        operation = "container_wait"
        # A wait lasts as long as the job: it uses the stream pool and holds no request slot.
        response, lease = self._open_stream(operation, "POST", _path("/containers/{0}/wait", container_id),
                                            timeout=timeout, limited=False)
        try:
            data = response.read()
        except TimeoutError:
            lease.abort()
            raise DockerTimeout(f"container {container_id[:12]} did not exit within {timeout:g} s",
                                operation=operation) from None
        except Exception as exc:
            lease.abort()
            raise translate(exc, operation) from exc
        lease.finish()
        return int(json.loads(data)["StatusCode"])

    def container_logs(self, container_id: str, *, follow: bool = False) -> Iterator[StreamChunk]:
        tty = bool(self.container_inspect(container_id).get("Config", {}).get("Tty"))
        return self._logs("container_logs", "/containers/{0}/logs", container_id, tty, follow)

    def _logs(self, operation: str, template: str, ident: str, tty: bool, follow: bool) -> Stream[StreamChunk]:
        params = {"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 0, "tail": "all"}
        # A followed stream may stay silent for hours: no read timeout on it.
        response, lease = self._open_stream(operation, "GET", _path(template, ident), params=params,
                                            timeout=None if follow else self._settings.timeout)
        return self._stream(operation, response, lease, _raw_chunks if tty else demux_frames)

    def container_stop(self, container_id: str, timeout: float = 10) -> None:
        # The engine takes whole seconds; the call lasts up to that long, so the read timeout grows too.
        seconds = max(0, int(-(-timeout // 1)))
        self._request("container_stop", "POST", _path("/containers/{0}/stop", container_id), params={"t": seconds},
                      extra_time=seconds)

    def container_kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        self._request("container_kill", "POST", _path("/containers/{0}/kill", container_id),
                      params={"signal": signal})

    def container_remove(self, container_id: str, *, force: bool = False) -> None:
        self._request("container_remove", "DELETE", _path("/containers/{0}", container_id),
                      params={"v": "true", "force": "true" if force else "false"})

    def container_inspect(self, container_id: str) -> dict[str, Any]:
        return dict(self._request("container_inspect", "GET", _path("/containers/{0}/json", container_id)).json())

    def container_list(
        self, *, filters: Mapping[str, Sequence[str]] | None = None, all: bool = False
    ) -> list[dict[str, Any]]:
        answer = self._request("container_list", "GET", "/containers/json",
                               params={"all": "1" if all else "0", "filters": _filters(filters)})
        return [dict(item) for item in answer.json()]

    # -- images

    def image_inspect(self, ref: str) -> dict[str, Any]:
        return dict(self._request("image_inspect", "GET", _path("/images/{0}/json", ref)).json())

    def image_pull(self, ref: str) -> None:
        operation = "image_pull"
        name, tag = ref, None
        if "@" not in ref:
            head, _, tail = ref.rpartition(":")
            if head and "/" not in tail:
                name, tag = head, tail
        response, lease = self._open_stream(operation, "POST", "/images/create",
                                            params={"fromImage": name, "tag": tag or "latest"},
                                            timeout=self._settings.timeout, pull=True)
        try:
            # Errors after the pull started arrive inside the 200 stream, as {"error": ...}.
            for event in _json_documents(response):
                if event.get("error"):
                    detail = (event.get("errorDetail") or {}).get("message") or event["error"]
                    raise PullFailed(f"pull of {ref} failed: {detail}", operation=operation)
        except DockerError:
            lease.abort()
            raise
        except Exception as exc:
            lease.abort()
            raise translate(exc, operation) from exc
        lease.finish()

    # -- services

    def service_create(self, spec: ServiceSpec) -> str:
        answer = self._request("service_create", "POST", "/services/create", body=bodies.service_create(spec))
        return str(answer.json()["ID"])

    def service_inspect(self, service_id: str) -> dict[str, Any]:
        return dict(self._request("service_inspect", "GET", _path("/services/{0}", service_id)).json())

    def service_tasks(self, service_id: str) -> list[dict[str, Any]]:
        answer = self._request("service_tasks", "GET", "/tasks",
                               params={"filters": _filters({"service": [service_id]})})
        return [dict(task) for task in answer.json()]

    def service_logs(self, service_id: str) -> Iterator[StreamChunk]:
        spec = self.service_inspect(service_id).get("Spec", {})
        tty = bool(spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("TTY"))
        return self._logs("service_logs", "/services/{0}/logs", service_id, tty, follow=False)

    def service_remove(self, service_id: str) -> None:
        self._request("service_remove", "DELETE", _path("/services/{0}", service_id))

    # -- events

    def events(
        self, *, since: float | None = None, filters: Mapping[str, Sequence[str]] | None = None
    ) -> Iterator[dict[str, Any]]:
        # The engine reads "seconds.nanoseconds"; a float's repr would lose or misplace digits.
        params = {"since": f"{since:.9f}" if since is not None else None, "filters": _filters(filters)}
        response, lease = self._open_stream("events", "GET", "/events", params=params, timeout=None)
        return self._stream("events", response, lease, _json_documents)

    # -- driver

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def stats(self) -> dict[str, Any]:
        settings = self._settings
        return {
            "driver": DRIVER_NAME,
            "base_url": settings.endpoint.describe(),
            "api_version": self._prefix.removeprefix("/v") or settings.api_version,
            "timeout": settings.timeout,
            "connect_timeout": settings.connect_timeout,
            "breaker": self._breaker.stats(),
            "requests": self._limiter.stats(),
            "pools": {"control": self._control.stats(), "stream": self._streams.stats()},
        }

    def close(self) -> None:
        # A later call reconnects: closing only releases the idle connections.
        self._control.close_idle()
        self._streams.close_idle()


__all__ = ["DRIVER_NAME", "PooledDockerClient", "translate"]
