"""The ``[buffer-pool]`` settings of the tiered driver, its environment overrides and its entry point."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import entry_points
from typing import Any

import ofelia_buffers_tiered
import pytest
from ofelia_buffers_tiered import TieredBufferPool, TieredSettings, build_pool, ofelia_make_buffer_pool
from ofelia_buffers_tiered.settings import DEFAULT_TIERS, ENV_OVERRIDES, parse_settings
from ofelia_hookspecs.types import DriverContext

KiB, MiB = 1024, 1024 * 1024


def test_defaults() -> None:
    settings = parse_settings({})
    assert settings == TieredSettings()
    assert settings.max_size == 10 * MiB
    assert settings.tiers == DEFAULT_TIERS == (1 * KiB, 256 * KiB, 2621440, 5 * MiB, 10 * MiB)
    assert settings.max_held == 256 * MiB
    assert settings.prewarm == 0
    assert (settings.adaptive, settings.adaptive_window, settings.adaptive_max_jobs) == (True, 5, 10_000)


def test_ini_strings() -> None:
    settings = parse_settings({
        "max-size": "3MiB", "tiers": "1KiB, 64KiB,1MiB", "max-held": "100MiB", "prewarm": "2",
        "adaptive": "no", "adaptive-window": "9", "adaptive-max-jobs": "50",
    })
    assert settings == TieredSettings(
        max_size=3 * MiB, tiers=(1 * KiB, 64 * KiB, 1 * MiB), max_held=100 * MiB, prewarm=2,
        adaptive=False, adaptive_window=9, adaptive_max_jobs=50,
    )


def test_yaml_values_and_underscores() -> None:
    settings = parse_settings({
        "max_size": 2 * MiB, "tiers": ["4KiB", 65536, "1MiB,512KiB"], "max_held": 0, "prewarm": True,
        "prewarm_per_tier": 7, "adaptive": False, "adaptive_window": 2,
    })
    assert settings.max_size == 2 * MiB
    assert settings.tiers == (4 * KiB, 64 * KiB, 512 * KiB, 1 * MiB)
    assert settings.max_held == 0
    assert settings.prewarm == 7
    assert settings.adaptive is False
    assert settings.adaptive_window == 2


def test_the_rollback_test_config_is_valid() -> None:
    # The [buffer-pool] section of ofelia's own rollback test.
    settings = parse_settings({"tiers": "1KiB,256KiB,2.5MiB,5MiB,10MiB", "prewarm": "50",
                               "some-third-party-key": "whatever"})
    assert settings.tiers == DEFAULT_TIERS
    assert settings.prewarm == 50


@pytest.mark.parametrize(("value", "expected"), [
    ("false", 0), ("off", 0), ("no", 0), ("", 0), (False, 0), ("0", 0), (0, 0),
    ("true", 50), ("on", 50), ("YES", 50), (True, 50), ("1", 1), (3, 3), ("120", 120),
])
def test_prewarm_forms(value: Any, expected: int) -> None:
    assert parse_settings({"prewarm": value}).prewarm == expected


def test_unknown_keys_are_ignored() -> None:
    assert parse_settings({"idle-buffers": "lots", "some-other-drivers-key": object()}) == TieredSettings()


@pytest.mark.parametrize(("settings", "key"), [
    ({"max-size": "lots"}, "max-size"),
    ({"max-size": 0}, "max-size"),
    ({"max_size": "-1"}, "max-size"),
    ({"tiers": "1KiB,big"}, "tiers"),
    ({"tiers": ""}, "tiers"),
    ({"tiers": " , "}, "tiers"),
    ({"max-held": "much"}, "max-held"),
    ({"max-held": True}, "max-held"),
    ({"prewarm": "maybe"}, "prewarm"),
    ({"prewarm": -1}, "prewarm"),
    ({"prewarm-per-tier": "x"}, "prewarm-per-tier"),
    ({"adaptive": "sometimes"}, "adaptive"),
    ({"adaptive-window": "0"}, "adaptive-window"),
    ({"adaptive-window": 2.5}, "adaptive-window"),
    ({"adaptive_max_jobs": "none"}, "adaptive-max-jobs"),
])
def test_bad_values_name_the_section_and_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=rf"^\[buffer-pool\] {key}: "):
        parse_settings(settings)


def test_factory_hook_rejects_a_bad_value() -> None:
    with pytest.raises(ValueError, match=r"\[buffer-pool\] max-held"):
        ofelia_make_buffer_pool(settings={"max-held": "lots"}, context=DriverContext(clock=time.monotonic))


def test_environment_overrides_win_over_the_file() -> None:
    env = {"OFELIA_BUFFER_POOL_PREWARM": "4", "OFELIA_BUFFER_POOL_MAX_HELD": "64MiB",
           "OFELIA_BUFFER_POOL_ADAPTIVE": "off", "OFELIA_BUFFER_POOL_TIERS": "2KiB,1MiB"}
    settings = parse_settings({"prewarm": "false", "max-held": "1GiB", "max-size": "5MiB"}, env)
    assert (settings.prewarm, settings.max_held, settings.adaptive) == (4, 64 * MiB, False)
    assert settings.tiers == (2 * KiB, 1 * MiB)
    assert settings.max_size == 5 * MiB  # no override: the baseline reads the cap from the file only


def test_an_empty_environment_variable_counts_as_unset() -> None:
    assert parse_settings({"prewarm": "3"}, {"OFELIA_BUFFER_POOL_PREWARM": " "}).prewarm == 3


def test_a_bad_environment_value_names_the_key_and_the_variable() -> None:
    with pytest.raises(ValueError, match=r"^\[buffer-pool\] prewarm \(from OFELIA_BUFFER_POOL_PREWARM\): "):
        parse_settings({}, {"OFELIA_BUFFER_POOL_PREWARM": "lots"})


def test_every_override_is_named_after_its_key() -> None:
    for key, variable in ENV_OVERRIDES.items():
        assert variable == "OFELIA_BUFFER_POOL_" + key.upper().replace("-", "_")
    assert "max-size" not in ENV_OVERRIDES


def test_the_factory_hook_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFELIA_BUFFER_POOL_MAX_HELD", "0")
    pool = ofelia_make_buffer_pool(settings={}, context=DriverContext(clock=time.monotonic))
    try:
        assert pool.stats()["max_held"] == 0
    finally:
        pool.close()


def test_build_pool_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFELIA_BUFFER_POOL_MAX_HELD", "0")
    pool = build_pool({})
    assert pool.stats()["max_held"] == 256 * MiB
    pool.close()


def test_entry_point_names_the_module_with_the_factory_hook() -> None:
    (found,) = [ep for ep in entry_points(group="ofelia.buffer_pool") if ep.name == "tiered"]
    assert found.value == "ofelia_buffers_tiered"
    assert found.dist is not None and found.dist.name == "ofelia-buffers-tiered"
    module = found.load()
    assert module is ofelia_buffers_tiered
    assert hasattr(module.ofelia_make_buffer_pool, "ofelia_impl")
    assert isinstance(module.ofelia_make_buffer_pool(settings={}, context=DriverContext(clock=time.monotonic)),
                      TieredBufferPool)


def test_the_plugin_never_imports_ofelia_core() -> None:
    code = (
        "import sys, time, ofelia_buffers_tiered as m\n"
        "from ofelia_hookspecs.types import DriverContext\n"
        "p = m.ofelia_make_buffer_pool(settings={'prewarm': '1', 'max-size': '64KiB'},"
        " context=DriverContext(clock=time.monotonic))\n"
        "b = p.get('j', 'stdout'); b.write(b'x' * 5000); p.put(b); p.wait_prewarmed(30); p.stats(); p.close()\n"
        "print(sorted(n for n in sys.modules if n.startswith('ofelia_core')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
