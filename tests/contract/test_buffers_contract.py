"""The buffer pool contract, run against every installed driver, bare and instrumented."""

from __future__ import annotations

import time
from typing import Any

import ofelia_hookspecs.specs
import pluggy
import pytest
from ofelia_hookspecs.contract.buffers import BufferPoolContract, MakeBufferPool
from ofelia_hookspecs.protocols import BufferPool
from ofelia_hookspecs.types import DriverContext

from ofelia_core.baseline.metrics_noop import NoopMetricsRecorder
from ofelia_core.drivers.instrumentation import InstrumentedDriver, instrument
from ofelia_core.drivers.loading import build_driver, register_drivers
from ofelia_core.drivers.selection import Choice, installed_drivers
from ofelia_core.drivers.table import BY_KEY

KEY = "buffer-pool"
VARIANTS = [(name, wrapped) for name in installed_drivers(BY_KEY[KEY]) for wrapped in (False, True)]


def build_as_the_daemon_does(name: str, settings: dict[str, Any]) -> BufferPool:
    pm = pluggy.PluginManager("ofelia")
    pm.add_hookspecs(ofelia_hookspecs.specs)
    register_drivers(pm, {KEY: Choice(BY_KEY[KEY], name, "test")})
    driver: BufferPool = build_driver(pm, KEY, settings, DriverContext(clock=time.monotonic))
    return driver


IDS = [f"{name}-instrumented" if wrapped else name for name, wrapped in VARIANTS]


@pytest.fixture(params=VARIANTS, ids=IDS)
def make_buffer_pool(request: pytest.FixtureRequest) -> MakeBufferPool:
    name, wrapped = request.param

    def make(settings: dict[str, Any]) -> BufferPool:
        driver = build_as_the_daemon_does(name, settings)
        return instrument(KEY, driver, NoopMetricsRecorder()) if wrapped else driver

    return make


def test_the_baseline_is_installed() -> None:
    assert "baseline" in installed_drivers(BY_KEY[KEY])


class TestBufferPoolContract(BufferPoolContract):
    def driver_stats(self, driver: BufferPool) -> dict[str, Any]:
        # The instrumented proxy nests the driver's figures beside its own.
        stats = driver.stats()
        if isinstance(driver, InstrumentedDriver):
            assert set(stats) >= {"driver", "operations"}
            inner: dict[str, Any] = stats["driver"]
            return inner
        return stats
