"""``/health``, ``/ready``, ``/api/config`` (secrets redacted) and ``/api/plugins``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .context import Ctx
from .redact import effective_config

router = APIRouter()


@router.get("/health", tags=["status"])
def health() -> dict[str, str]:
    """Liveness: the web server answers."""
    return {"status": "ok"}


@router.get("/ready", tags=["status"], responses={503: {"description": "not started, or shutting down"}})
def ready(ctx: Ctx) -> JSONResponse:
    """Readiness: the config is loaded and the scheduler is running (not starting, not shutting down)."""
    daemon = ctx.daemon
    if daemon.stop_requested.is_set():
        return JSONResponse({"status": "shutting down"}, status_code=503)
    if daemon.runtime is None or daemon.scheduler is None or not daemon.started.is_set():
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "ready", "jobs": len(daemon.jobs), "disabled": len(daemon.disabled)})


@router.get("/api/config", tags=["status"])
def config(ctx: Ctx) -> dict[str, Any]:
    """The effective configuration (defaults filled in), with every secret replaced by ``<redacted>``."""
    return effective_config(ctx.runtime, ctx.daemon.jobs, ctx.settings)


@router.get("/api/plugins", tags=["status"])
def plugins(ctx: Ctx) -> dict[str, Any]:
    """The running daemon's drivers (who chose each, and its ``stats()``) and general plugins."""
    from ..drivers.report import describe_choices
    from ..plugins import general_plugins

    runtime = ctx.runtime
    active = runtime.drivers.by_concern()
    drivers = describe_choices(runtime.choices)
    for row in drivers:
        row["stats"] = active[row["concern"]].stats()
    general = {
        name: {"distribution": dist, "version": version}
        for name, (dist, version) in general_plugins(runtime.hooks.pm).items()
    }
    daemon = ctx.daemon
    core = {
        "scheduler": daemon.scheduler.stats() if daemon.scheduler is not None else None,
        "running": len(daemon.dispatcher.running()) if daemon.dispatcher is not None else 0,
        "queued": daemon.dispatcher.queued() if daemon.dispatcher is not None else 0,
    }
    return {"drivers": drivers, "plugins": general, "core": core}
