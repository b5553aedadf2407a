"""Driver selection: flags, name overrides, the drivers section, precedence, errors."""

from __future__ import annotations

import pytest

from ofelia_core.config.model import Location, Section
from ofelia_core.drivers.selection import choose_drivers, installed_drivers, parse_flag
from ofelia_core.drivers.table import BY_KEY, CONCERNS
from ofelia_core.errors import DriverSelectionError


def drivers_section(**values: str) -> Section:
    section = Section("drivers", None, Location("cfg.ini", line=1))
    for line, (key, value) in enumerate(values.items(), start=2):
        section.set(key.replace("_", "-"), value, Location("cfg.ini", line=line))
    return section


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "On", " true "])
def test_flag_true_spellings(text: str) -> None:
    assert parse_flag("X", text) is True


@pytest.mark.parametrize("text", ["false", "0", "no", "OFF"])
def test_flag_false_spellings(text: str) -> None:
    assert parse_flag("X", text) is False


@pytest.mark.parametrize("text", ["maybe", "2", "enabled", "t"])
def test_flag_rejects_anything_else_naming_the_variable(text: str) -> None:
    with pytest.raises(DriverSelectionError, match=rf"OFELIA_USE_ENHANCED_BUFFER_POOL={text!r}"):
        parse_flag("OFELIA_USE_ENHANCED_BUFFER_POOL", text)


def test_defaults_are_the_baselines() -> None:
    choices = choose_drivers(env={})
    assert {k: c.name for k, c in choices.items()} == {
        "docker-client": "baseline", "token-manager": "baseline", "buffer-pool": "baseline", "metrics": "noop",
    }
    assert all(c.source == "default" for c in choices.values())


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.key)
def test_flag_true_chooses_optimized_name(concern: object) -> None:
    c = BY_KEY[concern.key]  # type: ignore[attr-defined]
    choice = choose_drivers(env={c.flag: "true"}, check_installed=False)[c.key]
    assert choice.name == c.optimized
    assert c.flag in choice.source


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.key)
def test_optimized_flag_without_plugin_names_the_distribution(concern: object) -> None:
    c = BY_KEY[concern.key]  # type: ignore[attr-defined]
    if c.optimized in installed_drivers(c):
        pytest.skip(f"{c.optimized_distribution} is installed here")
    with pytest.raises(DriverSelectionError) as info:
        choose_drivers(env={c.flag: "true"})
    assert c.optimized_distribution in str(info.value)
    assert c.flag in str(info.value)


def test_override_beats_flag() -> None:
    env = {"OFELIA_USE_ENHANCED_BUFFER_POOL": "true", "OFELIA_BUFFER_POOL": "baseline"}
    choice = choose_drivers(env=env)["buffer-pool"]
    assert choice.name == "baseline"
    assert "OFELIA_BUFFER_POOL" in choice.source


def test_unknown_name_lists_available() -> None:
    with pytest.raises(DriverSelectionError, match=r"unknown token manager driver 'fancy'.*available: baseline"):
        choose_drivers(env={"OFELIA_TOKEN_MANAGER": "fancy"})


def test_file_section_is_used_when_environment_is_silent() -> None:
    choice = choose_drivers(env={}, file_drivers=drivers_section(metrics="noop"))["metrics"]
    assert choice.name == "noop"
    assert choice.source == "config file (cfg.ini:2)"


def test_environment_beats_file() -> None:
    file = drivers_section(buffer_pool="tiered")
    choice = choose_drivers(env={"OFELIA_USE_ENHANCED_BUFFER_POOL": "false"}, file_drivers=file)["buffer-pool"]
    assert choice.name == "baseline"
    assert "OFELIA_USE_ENHANCED_BUFFER_POOL=false" in choice.source


def test_command_line_beats_environment_and_file() -> None:
    file = drivers_section(buffer_pool="tiered")
    choice = choose_drivers(
        cli={"buffer-pool": "baseline"}, env={"OFELIA_BUFFER_POOL": "tiered"}, file_drivers=file
    )["buffer-pool"]
    assert choice.name == "baseline"
    assert choice.source.startswith("command line")


def test_empty_variable_counts_as_unset() -> None:
    assert choose_drivers(env={"OFELIA_USE_OPTIMIZED_DOCKER_CLIENT": ""})["docker-client"].is_default


def test_unknown_concern_on_command_line() -> None:
    with pytest.raises(DriverSelectionError, match="unknown concern buffers"):
        choose_drivers(cli={"buffers": "x"}, env={})


def test_file_value_must_be_one_name() -> None:
    section = drivers_section(metrics="noop")
    section.set("metrics", "performance", Location("cfg.ini", line=9))  # repeated key -> list
    with pytest.raises(DriverSelectionError, match=r"cfg.ini:2: \[drivers\] metrics must be one driver name"):
        choose_drivers(env={}, file_drivers=section)
