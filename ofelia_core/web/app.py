"""The FastAPI application (and the ``/metrics``-only one ``metrics-address`` serves)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI
from ofelia_hookspecs.protocols import TokenManager

from .. import __version__
from . import routes_auth, routes_jobs, routes_metrics, routes_page, routes_status
from .auth import WebAuth
from .context import WebContext
from .guard import Guard
from .settings import WebSettings

if TYPE_CHECKING:
    from ..daemon import Daemon

DESCRIPTION = (
    "The ofelia daemon's API. With web-auth-enabled, log in with POST /api/login and send "
    "`Authorization: Bearer <token>`, or use the cookie it sets plus the `X-CSRF-Token` header "
    "on state-changing requests. See docs/web.md."
)


def build_app(
    daemon: Daemon,
    settings: WebSettings,
    *,
    tokens: TokenManager | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The whole app for ``daemon``. ``tokens`` defaults to the daemon's token manager driver;
    ``clock`` drives the login rate limit (tests pass their own for both)."""
    app = FastAPI(
        title="ofelia", version=__version__, description=DESCRIPTION,
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",
    )
    auth = WebAuth(settings, tokens or _token_manager(daemon), clock=clock)
    app.state.ctx = WebContext(daemon, settings, auth)
    for router in (
        routes_page.router, routes_status.router, routes_auth.router, routes_jobs.router,
        routes_metrics.scrape_router, routes_metrics.api_router,
    ):
        app.include_router(router)
    app.add_middleware(Guard, auth=auth, metrics_token=settings.metrics_token)
    return app


def build_metrics_app(daemon: Daemon, settings: WebSettings) -> FastAPI:
    """Only ``/metrics`` (guarded by ``metrics-token`` when set), for ``metrics-address``."""
    app = FastAPI(title="ofelia metrics", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = WebContext(daemon, settings, WebAuth(settings, _token_manager(daemon)))
    app.include_router(routes_metrics.scrape_router)
    app.add_middleware(Guard, auth=None, metrics_token=settings.metrics_token)
    return app


def _token_manager(daemon: Daemon) -> TokenManager:
    assert daemon.runtime is not None, "the web app is built once the daemon's runtime exists"
    return daemon.runtime.drivers.token_manager
