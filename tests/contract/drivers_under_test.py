"""Building the driver under test exactly as the daemon does, for every contract suite."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ofelia_hookspecs.specs
import pluggy
from ofelia_hookspecs.types import DriverContext

from ofelia_core.baseline.metrics_noop import NoopMetricsRecorder
from ofelia_core.drivers.instrumentation import InstrumentedDriver, instrument
from ofelia_core.drivers.loading import build_driver, register_drivers
from ofelia_core.drivers.selection import Choice, installed_drivers
from ofelia_core.drivers.table import BY_KEY


def variants(key: str, *, instrumented: bool = True) -> tuple[list[tuple[str, bool]], list[str]]:
    """Every installed driver of a concern, bare and (optionally) instrumented, with test ids."""
    wrapped = (False, True) if instrumented else (False,)
    pairs = [(name, wrap) for name in installed_drivers(BY_KEY[key]) for wrap in wrapped]
    return pairs, [f"{name}-instrumented" if wrap else name for name, wrap in pairs]


def build_as_the_daemon_does(
    key: str, name: str, settings: dict[str, Any], *, wrapped: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Load the driver by entry point, build it through its factory hook, optionally instrument it."""
    pm = pluggy.PluginManager("ofelia")
    pm.add_hookspecs(ofelia_hookspecs.specs)
    register_drivers(pm, {key: Choice(BY_KEY[key], name, "test")})
    driver = build_driver(pm, key, settings, DriverContext(clock=clock))
    return instrument(key, driver, NoopMetricsRecorder()) if wrapped else driver


def own_stats(driver: Any) -> dict[str, Any]:
    """The driver's own ``stats()``; the instrumented proxy nests them beside its own figures."""
    stats: dict[str, Any] = driver.stats()
    if isinstance(driver, InstrumentedDriver):
        assert set(stats) >= {"driver", "operations"}
        inner: dict[str, Any] = stats["driver"]
        return inner
    return stats
