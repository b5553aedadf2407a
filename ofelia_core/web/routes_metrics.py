"""``/metrics`` (Prometheus text, or JSON on ``Accept: application/json``) and ``/api/metrics`` (JSON).

Both come from :func:`ofelia_core.metrics_feed.render_metrics`. With the no-op
metrics driver (the default) there is nothing to expose: ``/metrics`` answers
503 with how to turn metrics on, so a scrape fails visibly instead of looking
healthy and empty; ``/api/metrics`` answers 200 with ``enabled: false`` and the
same hint, since for the page (and scripts) metrics being off is a state, not
an error.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..metrics_feed import render_metrics
from .context import Ctx

DISABLED = "metrics are disabled: set OFELIA_ENABLE_PERFORMANCE_METRICS=true (and restart)"

#: ``/metrics`` alone: also what ``metrics-address`` serves.
scrape_router = APIRouter(tags=["metrics"])
#: ``/api/metrics``: behind the web login like the rest of the API.
api_router = APIRouter(tags=["metrics"])

_DISABLED_RESPONSES: dict[int | str, dict[str, str]] = {503: {"description": DISABLED}}


@scrape_router.get("/metrics", response_class=PlainTextResponse, responses=_DISABLED_RESPONSES)
def metrics(request: Request, ctx: Ctx) -> Response:
    """Prometheus text exposition; JSON when the request prefers ``application/json``."""
    fmt = "json" if _wants_json(request.headers.get("accept", "")) else "prometheus"
    return _render(ctx, fmt)


@api_router.get("/api/metrics")
def api_metrics(ctx: Ctx) -> dict[str, Any]:
    """``{"enabled": true, "metrics": <the driver's JSON>}``, or ``enabled: false`` with how to turn metrics on."""
    _, body = render_metrics(ctx.runtime, "json")
    if not body:
        return {"enabled": False, "detail": DISABLED, "metrics": None}
    return {"enabled": True, "detail": None, "metrics": json.loads(body)}


def _render(ctx: Ctx, fmt: str) -> Response:
    content_type, body = render_metrics(ctx.runtime, fmt)
    if not body:
        if fmt == "json":
            return JSONResponse({"enabled": False, "detail": DISABLED}, status_code=503)
        return PlainTextResponse(DISABLED + "\n", status_code=503)
    return Response(body, media_type=content_type)


def _wants_json(accept: str) -> bool:
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "application/json" in kinds and "text/plain" not in kinds[: kinds.index("application/json")]
