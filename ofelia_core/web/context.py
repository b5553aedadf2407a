"""What every route reaches through ``request.app.state``: the daemon, the settings, the auth checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

from .auth import WebAuth
from .settings import WebSettings

if TYPE_CHECKING:
    from ..daemon import Daemon
    from ..runtime import Runtime


@dataclass
class WebContext:
    daemon: Daemon
    settings: WebSettings
    auth: WebAuth

    @property
    def runtime(self) -> Runtime:
        runtime = self.daemon.runtime
        if runtime is None:
            raise HTTPException(503, "the scheduler is not running")
        return runtime


def get_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.ctx
    return context


Ctx = Annotated[WebContext, Depends(get_context)]


def client_address(request: Request) -> str:
    """The caller's address (behind a proxy on loopback, the forwarded one: see docs/web.md)."""
    return request.client.host if request.client else "unknown"
