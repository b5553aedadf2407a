"""The ring buffer pool against ofelia's buffer pool contract kit, plus its own rules."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ofelia_example_ringbuffer import RingBufferPool, ofelia_make_buffer_pool
from ofelia_hookspecs.contract.buffers import BufferPoolContract, MakeBufferPool
from ofelia_hookspecs.types import DriverContext


class TestRingBufferPool(BufferPoolContract):
    @pytest.fixture
    def make_buffer_pool(self) -> MakeBufferPool:
        def make(settings: dict[str, Any]) -> RingBufferPool:
            return ofelia_make_buffer_pool(settings=settings, context=DriverContext(clock=time.monotonic))

        return make


def test_returned_buffers_are_reused_up_to_idle_buffers() -> None:
    pool = ofelia_make_buffer_pool(settings={"idle-buffers": "1"}, context=DriverContext(clock=time.monotonic))
    first, second = pool.get("a", "stdout"), pool.get("a", "stderr")
    pool.put(first)
    pool.put(second)  # the pool is full: dropped
    assert pool.get("b", "stdout") is first
    assert pool.stats()["hits"] == 1


def test_bad_idle_buffers_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"\[buffer-pool\] idle-buffers"):
        ofelia_make_buffer_pool(settings={"idle-buffers": "many"}, context=DriverContext(clock=time.monotonic))
