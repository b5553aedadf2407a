"""The tiered pool against ofelia's buffer pool contract kit, built through its factory hook.

(ofelia's own suite also runs the kit over every installed driver, found by
entry point; this module is what the distribution ships for itself.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from ofelia_buffers_tiered import ofelia_make_buffer_pool
from ofelia_hookspecs.contract.buffers import BufferPoolContract, MakeBufferPool
from ofelia_hookspecs.protocols import BufferPool
from ofelia_hookspecs.types import DriverContext


def make(settings: Mapping[str, Any]) -> BufferPool:
    pool: BufferPool = ofelia_make_buffer_pool(settings=settings, context=DriverContext(clock=time.monotonic))
    return pool


class TestTieredContract(BufferPoolContract):
    @pytest.fixture
    def make_buffer_pool(self) -> MakeBufferPool:
        return make


class TestTieredContractSmallTiers(BufferPoolContract):
    """The same contract with tiny tiers and no adaptive start, so every test crosses tiers."""

    @pytest.fixture
    def make_buffer_pool(self) -> MakeBufferPool:
        def build(settings: dict[str, Any]) -> BufferPool:
            return make({"tiers": "16,100,4KiB,70KiB", "adaptive": "false", **settings})

        return build


class TestTieredContractNothingKept(BufferPoolContract):
    """With ``max-held = 0`` nothing is reused: every buffer is fresh."""

    @pytest.fixture
    def make_buffer_pool(self) -> MakeBufferPool:
        def build(settings: dict[str, Any]) -> BufferPool:
            return make({"max-held": "0", **settings})

        return build
