"""The token manager contract, run against every installed driver, bare and instrumented."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ofelia_hookspecs.specs
import pluggy
import pytest
from ofelia_hookspecs.contract.tokens import MakeTokenManager, TokenManagerContract
from ofelia_hookspecs.protocols import TokenManager
from ofelia_hookspecs.types import DriverContext

from ofelia_core.baseline.metrics_noop import NoopMetricsRecorder
from ofelia_core.drivers.instrumentation import InstrumentedDriver, instrument
from ofelia_core.drivers.loading import build_driver, register_drivers
from ofelia_core.drivers.selection import Choice, installed_drivers
from ofelia_core.drivers.table import BY_KEY

KEY = "token-manager"
VARIANTS = [(name, wrapped) for name in installed_drivers(BY_KEY[KEY]) for wrapped in (False, True)]


def build_as_the_daemon_does(name: str, settings: dict[str, Any], clock: Callable[[], float]) -> TokenManager:
    pm = pluggy.PluginManager("ofelia")
    pm.add_hookspecs(ofelia_hookspecs.specs)
    register_drivers(pm, {KEY: Choice(BY_KEY[KEY], name, "test")})
    driver: TokenManager = build_driver(pm, KEY, settings, DriverContext(clock=clock))
    return driver


IDS = [f"{name}-instrumented" if wrapped else name for name, wrapped in VARIANTS]


@pytest.fixture(params=VARIANTS, ids=IDS)
def make_token_manager(request: pytest.FixtureRequest) -> MakeTokenManager:
    name, wrapped = request.param

    def make(settings: dict[str, Any], clock: Callable[[], float]) -> TokenManager:
        driver = build_as_the_daemon_does(name, settings, clock)
        return instrument(KEY, driver, NoopMetricsRecorder()) if wrapped else driver

    return make


def test_the_baseline_is_installed() -> None:
    assert "baseline" in installed_drivers(BY_KEY[KEY])


class TestTokenManagerContract(TokenManagerContract):
    def driver_stats(self, driver: TokenManager) -> dict[str, Any]:
        # The instrumented proxy nests the driver's figures beside its own.
        stats = driver.stats()
        if isinstance(driver, InstrumentedDriver):
            assert set(stats) >= {"driver", "operations"}
            inner: dict[str, Any] = stats["driver"]
            return inner
        return stats
