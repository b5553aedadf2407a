"""The metrics recorder contract, run against every installed driver.

The recorder is the observer of the instrumentation layer and is not
instrumented itself, so it runs bare only.
"""

from __future__ import annotations

import time
from typing import Any

import ofelia_hookspecs.specs
import pluggy
import pytest
from ofelia_hookspecs.contract.metrics import MakeMetricsRecorder, MetricsRecorderContract
from ofelia_hookspecs.protocols import MetricsRecorder
from ofelia_hookspecs.types import DriverContext

from ofelia_core.drivers.loading import build_driver, register_drivers
from ofelia_core.drivers.selection import Choice, installed_drivers
from ofelia_core.drivers.table import BY_KEY

KEY = "metrics"
NAMES = installed_drivers(BY_KEY[KEY])


def build_as_the_daemon_does(name: str, settings: dict[str, Any]) -> MetricsRecorder:
    pm = pluggy.PluginManager("ofelia")
    pm.add_hookspecs(ofelia_hookspecs.specs)
    register_drivers(pm, {KEY: Choice(BY_KEY[KEY], name, "test")})
    driver: MetricsRecorder = build_driver(pm, KEY, settings, DriverContext(clock=time.monotonic))
    return driver


@pytest.fixture(params=NAMES)
def make_metrics_recorder(request: pytest.FixtureRequest) -> MakeMetricsRecorder:
    name: str = request.param

    def make(settings: dict[str, Any]) -> MetricsRecorder:
        return build_as_the_daemon_does(name, settings)

    return make


def test_the_baseline_is_installed() -> None:
    assert "noop" in NAMES


class TestMetricsRecorderContract(MetricsRecorderContract):
    pass
