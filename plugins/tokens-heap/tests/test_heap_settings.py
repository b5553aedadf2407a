"""The ``[token-manager]`` settings of the heap driver, its environment overrides and its entry point."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import entry_points
from typing import Any

import ofelia_tokens_heap
import pytest
from ofelia_hookspecs.types import DriverContext
from ofelia_tokens_heap import HeapSettings, HeapTokenManager, build_manager, ofelia_make_token_manager
from ofelia_tokens_heap.settings import ENV_OVERRIDES, KEYS, parse_settings


def test_defaults() -> None:
    settings = parse_settings({})
    assert settings == HeapSettings()
    assert (settings.max_tokens, settings.cleanup_batch_size, settings.cleanup_interval) == (10_000, 100, 300.0)
    assert settings.describe() == {"max-tokens": 10_000, "cleanup-batch-size": 100, "cleanup-interval": "5m0s"}


def test_the_rollback_test_config_is_valid() -> None:
    # The [token-manager] section of ofelia's own rollback test, as INI delivers it.
    settings = parse_settings({"cleanup-batch-size": "100", "cleanup-interval": "5m", "max-tokens": "10000"})
    assert settings == HeapSettings()


def test_ini_strings() -> None:
    settings = parse_settings({"max-tokens": "500", "cleanup-batch-size": " 25 ", "cleanup-interval": "1m30s"})
    assert settings == HeapSettings(max_tokens=500, cleanup_batch_size=25, cleanup_interval=90.0)


def test_yaml_values_and_underscores() -> None:
    settings = parse_settings({"max_tokens": 7, "cleanup_batch_size": 3, "cleanup_interval": 0.05})
    assert settings == HeapSettings(max_tokens=7, cleanup_batch_size=3, cleanup_interval=0.05)


def test_the_dashed_spelling_wins_a_tie() -> None:
    assert parse_settings({"max_tokens": 7, "max-tokens": 9}).max_tokens == 9


@pytest.mark.parametrize(("value", "seconds"), [
    ("5m", 300.0), ("50ms", 0.05), ("1h30m", 5400.0), ("2.5s", 2.5), ("300", 300.0), ("0.5", 0.5),
    (".25", 0.25), (120, 120.0), (1.5, 1.5),
])
def test_interval_forms(value: Any, seconds: float) -> None:
    assert parse_settings({"cleanup-interval": value}).cleanup_interval == pytest.approx(seconds)


def test_unknown_keys_are_ignored() -> None:
    # Another driver's keys stay in the section after a switch; so do typos, as in every driver section.
    assert parse_settings({"session-store": "redis", "some-other-drivers-key": object()}) == HeapSettings()


@pytest.mark.parametrize(("settings", "key"), [
    ({"max-tokens": "lots"}, "max-tokens"),
    ({"max-tokens": 0}, "max-tokens"),
    ({"max-tokens": "-1"}, "max-tokens"),
    ({"max-tokens": True}, "max-tokens"),
    ({"max-tokens": 2.5}, "max-tokens"),
    ({"max_tokens": "1e4"}, "max-tokens"),
    ({"cleanup-batch-size": "0"}, "cleanup-batch-size"),
    ({"cleanup-batch-size": "many"}, "cleanup-batch-size"),
    ({"cleanup_batch_size": None}, "cleanup-batch-size"),
    ({"cleanup-interval": "0"}, "cleanup-interval"),
    ({"cleanup-interval": "0s"}, "cleanup-interval"),
    ({"cleanup-interval": "-5m"}, "cleanup-interval"),
    ({"cleanup-interval": "5 minutes"}, "cleanup-interval"),
    ({"cleanup-interval": "5"}, None),  # plain seconds are fine: not an error
    ({"cleanup-interval": ""}, "cleanup-interval"),
    ({"cleanup-interval": True}, "cleanup-interval"),
    ({"cleanup-interval": float("inf")}, "cleanup-interval"),
    ({"cleanup-interval": ["5m"]}, "cleanup-interval"),
])
def test_bad_values_name_the_section_and_key(settings: dict[str, Any], key: str | None) -> None:
    if key is None:
        parse_settings(settings)
        return
    with pytest.raises(ValueError, match=rf"^\[token-manager\] {key}: "):
        parse_settings(settings)


def test_a_bad_duration_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"^\[token-manager\] cleanup-interval: .*unknown unit 'minutes'"):
        parse_settings({"cleanup-interval": "5minutes"})


def test_the_factory_hook_rejects_a_bad_value() -> None:
    with pytest.raises(ValueError, match=r"^\[token-manager\] cleanup-batch-size"):
        ofelia_make_token_manager(settings={"cleanup-batch-size": "0"}, context=DriverContext(clock=time.monotonic))


def test_environment_overrides_win_over_the_file() -> None:
    env = {"OFELIA_TOKEN_MANAGER_CLEANUP_INTERVAL": "30s", "OFELIA_TOKEN_MANAGER_CLEANUP_BATCH_SIZE": "500"}
    settings = parse_settings({"cleanup-interval": "5m", "cleanup-batch-size": "100", "max-tokens": "20"}, env)
    assert (settings.cleanup_interval, settings.cleanup_batch_size, settings.max_tokens) == (30.0, 500, 20)


def test_max_tokens_has_no_override() -> None:
    # The baseline reads max-tokens from the file only: a rollback must keep the same cap.
    assert "max-tokens" not in ENV_OVERRIDES
    assert parse_settings({"max-tokens": "20"}, {"OFELIA_TOKEN_MANAGER_MAX_TOKENS": "5"}).max_tokens == 20


def test_an_empty_environment_variable_counts_as_unset() -> None:
    assert parse_settings({"cleanup-batch-size": "7"}, {"OFELIA_TOKEN_MANAGER_CLEANUP_BATCH_SIZE": "  "}) \
        .cleanup_batch_size == 7


def test_a_bad_environment_value_names_the_key_and_the_variable() -> None:
    with pytest.raises(
        ValueError,
        match=r"^\[token-manager\] cleanup-interval \(from OFELIA_TOKEN_MANAGER_CLEANUP_INTERVAL\): ",
    ):
        parse_settings({}, {"OFELIA_TOKEN_MANAGER_CLEANUP_INTERVAL": "soon"})


def test_every_override_is_named_after_its_key() -> None:
    for key, variable in ENV_OVERRIDES.items():
        assert variable == "OFELIA_TOKEN_MANAGER_" + key.upper().replace("-", "_")
    assert set(KEYS) == {"max-tokens", *ENV_OVERRIDES}


def test_the_factory_hook_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFELIA_TOKEN_MANAGER_CLEANUP_BATCH_SIZE", "9")
    manager = ofelia_make_token_manager(settings={"max-tokens": 50}, context=DriverContext(clock=time.monotonic))
    try:
        stats = manager.stats()
        assert (stats["cleanup_batch_size"], stats["max_tokens"]) == (9, 50)
    finally:
        manager.close()


def test_build_manager_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFELIA_TOKEN_MANAGER_CLEANUP_BATCH_SIZE", "9")
    manager = build_manager({}, time.monotonic)
    try:
        assert manager.stats()["cleanup_batch_size"] == 100
    finally:
        manager.close()


def test_entry_point_names_the_module_with_the_factory_hook() -> None:
    (found,) = [ep for ep in entry_points(group="ofelia.token_manager") if ep.name == "heap"]
    assert found.value == "ofelia_tokens_heap"
    assert found.dist is not None and found.dist.name == "ofelia-tokens-heap"
    module = found.load()
    assert module is ofelia_tokens_heap
    assert hasattr(module.ofelia_make_token_manager, "ofelia_impl")
    manager = module.ofelia_make_token_manager(settings={}, context=DriverContext(clock=time.monotonic))
    assert isinstance(manager, HeapTokenManager)
    manager.close()


def test_the_plugin_never_imports_ofelia_core() -> None:
    code = (
        "import sys, time, ofelia_tokens_heap as m\n"
        "from ofelia_hookspecs.types import DriverContext\n"
        "t = m.ofelia_make_token_manager(settings={'cleanup-interval': '10ms'},"
        " context=DriverContext(clock=time.monotonic))\n"
        "k = t.issue('alice', 60); assert t.validate(k) == 'alice'; t.revoke(k); t.cleanup_once()\n"
        "t.stats(); t.close()\n"
        "print(sorted(n for n in sys.modules if n.startswith('ofelia_core')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
