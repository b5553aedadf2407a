"""The token manager contract, run against every installed driver, bare and instrumented."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ofelia_hookspecs.contract.tokens import MakeTokenManager, TokenManagerContract
from ofelia_hookspecs.protocols import TokenManager

from ofelia_core.drivers.selection import installed_drivers
from ofelia_core.drivers.table import BY_KEY

from .drivers_under_test import build_as_the_daemon_does, own_stats, variants

KEY = "token-manager"
VARIANTS, IDS = variants(KEY)


@pytest.fixture(params=VARIANTS, ids=IDS)
def make_token_manager(request: pytest.FixtureRequest) -> MakeTokenManager:
    name, wrapped = request.param

    def make(settings: dict[str, Any], clock: Callable[[], float]) -> TokenManager:
        driver: TokenManager = build_as_the_daemon_does(KEY, name, settings, wrapped=wrapped, clock=clock)
        return driver

    return make


def test_the_baseline_is_installed() -> None:
    assert "baseline" in installed_drivers(BY_KEY[KEY])


class TestTokenManagerContract(TokenManagerContract):
    def driver_stats(self, driver: TokenManager) -> dict[str, Any]:
        return own_stats(driver)
