"""The buffer pool contract, run against every installed driver, bare and instrumented."""

from __future__ import annotations

from typing import Any

import pytest
from ofelia_hookspecs.contract.buffers import BufferPoolContract, MakeBufferPool
from ofelia_hookspecs.protocols import BufferPool

from ofelia_core.drivers.selection import installed_drivers
from ofelia_core.drivers.table import BY_KEY

from .drivers_under_test import build_as_the_daemon_does, own_stats, variants

KEY = "buffer-pool"
VARIANTS, IDS = variants(KEY)


@pytest.fixture(params=VARIANTS, ids=IDS)
def make_buffer_pool(request: pytest.FixtureRequest) -> MakeBufferPool:
    name, wrapped = request.param

    def make(settings: dict[str, Any]) -> BufferPool:
        driver: BufferPool = build_as_the_daemon_does(KEY, name, settings, wrapped=wrapped)
        return driver

    return make


def test_the_baseline_is_installed() -> None:
    assert "baseline" in installed_drivers(BY_KEY[KEY])


class TestBufferPoolContract(BufferPoolContract):
    def driver_stats(self, driver: BufferPool) -> dict[str, Any]:
        return own_stats(driver)
