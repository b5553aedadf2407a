"""The metrics recorder contract, run against every installed driver.

The recorder is the observer of the instrumentation layer and is not
instrumented itself, so it runs bare only.
"""

from __future__ import annotations

from typing import Any

import pytest
from ofelia_hookspecs.contract.metrics import MakeMetricsRecorder, MetricsRecorderContract
from ofelia_hookspecs.protocols import MetricsRecorder

from ofelia_core.drivers.selection import installed_drivers
from ofelia_core.drivers.table import BY_KEY

from .drivers_under_test import build_as_the_daemon_does

KEY = "metrics"
NAMES = installed_drivers(BY_KEY[KEY])


@pytest.fixture(params=NAMES)
def make_metrics_recorder(request: pytest.FixtureRequest) -> MakeMetricsRecorder:
    name: str = request.param

    def make(settings: dict[str, Any]) -> MetricsRecorder:
        recorder: MetricsRecorder = build_as_the_daemon_does(KEY, name, settings)
        return recorder

    return make


def test_the_baseline_is_installed() -> None:
    assert "noop" in NAMES


class TestMetricsRecorderContract(MetricsRecorderContract):
    pass
