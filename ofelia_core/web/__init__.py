"""The web UI and API (FastAPI, served by uvicorn from a thread of the daemon); see docs/web.md.

:func:`start_web` is all the daemon calls. FastAPI and uvicorn are imported
only when a web key asks for a server, so a daemon without one never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from ..daemon import Daemon
    from .server import WebServer, WebServers
    from .settings import WebSettings


def start_web(daemon: Daemon) -> WebServers | None:
    """Start the servers the settings ask for (``enable-web``, ``metrics-address``), or none.

    Every listener is bound before any starts: a bad address or a port in use
    raises :class:`~ofelia_core.errors.OfeliaError` naming the key, and nothing
    is left running.
    """
    from .settings import WebSettings

    assert daemon.runtime is not None
    settings = WebSettings.from_values(
        daemon.runtime.global_values, cli_enable=daemon.enable_web, cli_address=daemon.web_address
    )
    if not settings.enabled and settings.metrics_address is None:
        return None
    from .app import build_app, build_metrics_app
    from .server import WebServer, WebServers

    servers: list[WebServer] = []
    if settings.enabled:
        servers.append(WebServer(build_app(daemon, settings), settings.address, key=_address_key(daemon), name="web"))
    if settings.metrics_address is not None:
        metrics_app = build_metrics_app(daemon, settings)
        servers.append(WebServer(metrics_app, settings.metrics_address, key="metrics-address", name="metrics"))
    started = WebServers([])
    try:
        for server in servers:
            server.listen()
        for server in servers:
            server.start()
            started.servers.append(server)
    except BaseException:
        started.stop()
        for server in servers:
            server.stop()
        raise
    for server in servers:
        _log_started(server, settings)
    return started


def _address_key(daemon: Daemon) -> str:
    return "--web-address" if (daemon.web_address or "").strip() else "web-address"


def _log_started(server: WebServer, settings: WebSettings) -> None:
    if server.name == "metrics":
        guarded = "metrics-token required" if settings.metrics_token else "open"
        logger.info(f"web: serving /metrics on {server.url}/metrics ({guarded})")
        return
    auth = "authentication on" if settings.auth_enabled else "authentication off"
    logger.info(f"web: serving the UI and API on {server.url} ({auth})")
    if not settings.auth_enabled and not server.address.is_loopback:
        logger.warning(
            f"web: authentication is off and {server.address.text} is not a loopback address: anyone who can "
            "reach it can run and disable jobs; set web-auth-enabled, web-username and web-password-hash"
        )
