"""Freezing the daemon's long-lived heap after start-up, and again (rate-limited) after reloads."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ofelia_core import gc_tuning


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc_tuning._last = 0.0


def test_a_pass_freezes_what_lives_and_frees_cycles_frozen_before() -> None:
    kept = Node()
    assert gc_tuning.freeze_long_lived(reason="test")
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert gc.get_threshold() == gc_tuning.THRESHOLDS != (700, 10, 10)
    assert not any(o is kept for o in gc.get_objects(generation=2))  # moved out of the generations the collector walks

    garbage = Node()
    gc_tuning.freeze_long_lived(reason="test")  # frozen while still referenced
    dead = weakref.ref(garbage)
    del garbage
    gc.collect()
    assert dead() is not None  # frozen: a collection does not free the cycle
    assert gc_tuning.freeze_long_lived(reason="test")  # unfreeze, collect, freeze
    assert dead() is None


def test_reload_passes_are_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(gc_tuning.time, "monotonic", lambda: clock[0])
    assert gc_tuning.freeze_long_lived(reason="start-up")
    clock[0] += gc_tuning.REFREEZE_INTERVAL - 1
    assert not gc_tuning.freeze_long_lived(reason="reloaded", force=False)
    clock[0] += 2
    assert gc_tuning.freeze_long_lived(reason="reloaded", force=False)
    assert gc_tuning.freeze_long_lived(reason="start-up")  # a start always runs
