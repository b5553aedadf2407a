"""The baseline metrics driver (entry point ``ofelia.metrics: noop``).

Records nothing and exports nothing, so a deployment that does not ask for
metrics pays one empty method call per measurement. The ``performance``
driver (``ofelia-metrics-perf``) is the one that keeps figures. The
``[metrics]`` section is not read: its keys belong to that driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import DriverContext


class NoopMetricsRecorder:
    """A :class:`~ofelia_hookspecs.protocols.MetricsRecorder` that discards everything."""

    __slots__ = ()

    def observe_operation(self, concern: str, operation: str, seconds: float, error: str | None) -> None:
        pass

    def record_run(self, job_name: str, state: str, seconds: float) -> None:
        pass

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        pass

    def export(self, fmt: str) -> str:
        return ""

    def stats(self) -> dict[str, Any]:
        return {"driver": "noop"}

    def close(self) -> None:
        pass


@hookimpl
def ofelia_make_metrics_recorder(settings: Mapping[str, Any], context: DriverContext) -> NoopMetricsRecorder:
    """Build the no-op recorder; it takes no settings."""
    return NoopMetricsRecorder()
