"""What the core hands the metrics driver at each scrape, and the exposition it returns.

``render_metrics(runtime, fmt)`` is what ``/metrics`` and ``/api/metrics`` serve:
``fmt`` is ``"prometheus"`` or ``"json"``; it returns ``(content_type, body)``.
Before exporting, the core feeds the recorder what only the core knows at that
moment (the drivers' own ``stats()``, the plugins' samples from the
``ofelia_collect_metrics`` hook) through the Protocol's ``set_gauge``.
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPES = {
    "prometheus": "text/plain; version=0.0.4; charset=utf-8",
    "json": "application/json",
}


def render_metrics(runtime: Any, fmt: str) -> tuple[str, str]:
    """The chosen metrics driver's exposition; empty when it is the no-op driver."""
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown metrics format {fmt!r}: use prometheus or json")
    recorder = runtime.drivers.metrics
    return CONTENT_TYPES[fmt], recorder.export(fmt)


__all__ = ["CONTENT_TYPES", "render_metrics"]
