"""The page: one HTML file, its script and its style sheet (no build step), served from ``static/``."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


@cache
def _asset(name: str) -> bytes:
    return files("ofelia_core.web").joinpath("static", name).read_bytes()


@router.get("/")
def index() -> Response:
    return Response(_asset("index.html"), media_type=_TYPES["index.html"])


@router.get("/static/app.js")
def script() -> Response:
    return Response(_asset("app.js"), media_type=_TYPES["app.js"])


@router.get("/static/app.css")
def style() -> Response:
    return Response(_asset("app.css"), media_type=_TYPES["app.css"])
