"""uvicorn in a thread of the daemon, its own signal handling off.

The daemon owns SIGTERM, SIGINT and SIGHUP (graceful shutdown, reload): the
server never installs handlers (:meth:`_ThreadServer.capture_signals` is a
no-op; uvicorn would only do so in the main thread anyway). The socket is
bound before the thread starts, so an address in use or a bad host is an
error at start-up naming the key, not a log line from a dead thread.
uvicorn's own log lines go to loguru (its access log at DEBUG).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import uvicorn
from loguru import logger
from starlette.types import ASGIApp

from ..errors import OfeliaError
from .settings import Address

#: Seconds the server waits for requests in flight when it stops.
GRACEFUL_SECONDS = 5
STARTUP_WAIT = 10.0


class _ThreadServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon's handlers stay in place


class WebServer:
    """One listener: ``listen()`` (binds, may raise), ``start()``, ``stop()``."""

    def __init__(self, app: ASGIApp, address: Address, *, key: str, name: str) -> None:
        self.address = address
        self.key = key
        self.name = name
        _route_uvicorn_logs()
        config = uvicorn.Config(
            app, log_config=None, access_log=True, lifespan="off", loop="asyncio", ws="none",
            server_header=False, timeout_graceful_shutdown=GRACEFUL_SECONDS,
        )
        self._server = _ThreadServer(config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (the one chosen when the address says port 0)."""
        assert self._socket is not None, "listen() first"
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = self.address.host or "0.0.0.0"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def listen(self) -> None:
        self._socket = bind(self.address, self.key)

    def start(self) -> None:
        assert self._socket is not None, "listen() first"
        sock = self._socket
        self._thread = threading.Thread(target=self._serve, args=(sock,), name=f"ofelia-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_WAIT
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise OfeliaError(f"the {self.name} server on {self.key} = {self.address.text} did not start; see the log")

    def stop(self, timeout: float = GRACEFUL_SECONDS + 5) -> None:
        """Stop accepting, let requests in flight finish (a few seconds at most), end the thread."""
        self._server.should_exit = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(2.0)
        if self._socket is not None:
            self._socket.close()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self._server.run(sockets=[sock])
        except BaseException:  # SystemExit from uvicorn included: log it, never end the process from here
            logger.exception(f"web: the {self.name} server failed")


class WebServers:
    """The listeners the daemon started; ``stop()`` stops them all."""

    def __init__(self, servers: Sequence[WebServer]) -> None:
        self.servers = list(servers)

    def get(self, name: str) -> WebServer | None:
        return next((server for server in self.servers if server.name == name), None)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def bind(address: Address, key: str) -> socket.socket:
    """A listening TCP socket for ``address``; an :class:`OfeliaError` naming ``key`` when that fails."""
    try:
        if not address.host:  # every address: IPv6 and IPv4 together where the system allows
            if socket.has_dualstack_ipv6():
                sock = socket.create_server(("", address.port), family=socket.AF_INET6, dualstack_ipv6=True)
            else:
                sock = socket.create_server(("0.0.0.0", address.port))
        else:
            infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, sockaddr = infos[0]
            sock = socket.create_server(sockaddr[:2], family=family)
    except OSError as exc:  # socket.gaierror is one too
        reason = exc.strerror or str(exc)
        raise OfeliaError(f"{key} = {address.text}: cannot listen there: {reason}") from None
    return _tcp_proto(sock)


def _tcp_proto(sock: socket.socket) -> socket.socket:
    """``sock`` with ``proto`` saying TCP. asyncio sets TCP_NODELAY only on accepted sockets whose proto is
    IPPROTO_TCP, and they inherit it from the listener; ``create_server`` leaves it 0. Without NODELAY,
    uvicorn's separate writes of headers and body meet Nagle and the client's delayed ACK: about 40 ms
    a response on a keep-alive connection (bench/bench_web.py)."""
    if sock.proto == socket.IPPROTO_TCP:
        return sock
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


class _ToLoguru(logging.Handler):
    """uvicorn's stdlib log records into loguru; routine ones (access lines, start/stop) at DEBUG."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "DEBUG" if record.levelno <= logging.INFO else record.levelname
        logger.opt(exception=record.exc_info).log(level, f"web: {record.getMessage()}")


_routed = False


def _route_uvicorn_logs() -> None:
    global _routed
    if _routed:
        return
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        log = logging.getLogger(name)
        log.handlers = [_ToLoguru()] if name == "uvicorn" else []
        log.propagate = name != "uvicorn"
        log.setLevel(logging.INFO)
    _routed = True
