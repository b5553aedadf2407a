"""A rollback never makes a valid config invalid: settings of drivers that are
not chosen are kept, and switching any flag off still validates and builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ofelia_core.cli import cli
from ofelia_core.drivers.selection import installed_drivers
from ofelia_core.drivers.table import CONCERNS, Concern

# Settings meant for the optimized drivers (and a third party's), which the
# baselines do not know.
CONFIG = """\
[drivers]
docker-client = pooled
token-manager = heap
buffer-pool = tiered
metrics = performance

[docker-client]
max-idle-conns = 100
max-idle-conns-per-host = 50
max-conns-per-host = 100
idle-conn-timeout = 90s
max-concurrent-requests = 200
breaker-failure-threshold = 10
breaker-open-timeout = 30s

[token-manager]
cleanup-batch-size = 100
cleanup-interval = 5m
max-tokens = 10000

[buffer-pool]
tiers = 1KiB,256KiB,2.5MiB,5MiB,10MiB
prewarm = 1
some-third-party-key = whatever

[metrics]
histogram-buckets = 0.001,0.01,0.1,1
prometheus = true

[job-local "tick"]
schedule = @every 10s
command = echo tick
"""

ALL_OFF = {c.flag: "false" for c in CONCERNS}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "optimized.ini"
    path.write_text(CONFIG)
    return path


def invoke(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    base = {c.override: "" for c in CONCERNS} | {"OFELIA_CONFIG": "", "OFELIA_DISABLED_PLUGINS": ""}
    result = CliRunner().invoke(cli, list(args), env=base | env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("strict", [False, True])
def test_every_flag_off_validates(config: Path, strict: bool) -> None:
    args = ["validate", "--config", str(config)] + (["--strict"] if strict else [])
    code, out, err = invoke(*args, env=ALL_OFF)
    assert code == 0, err
    assert out == "OK. Found 1 jobs.\n"


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.key)
def test_each_flag_off_alone_builds_the_baseline_with_foreign_settings(config: Path, concern: object) -> None:
    c = concern
    # The other concerns use their baselines by name so only this flag is under test.
    env = {other.override: other.baseline for other in CONCERNS if other is not c}
    env[c.flag] = "false"  # type: ignore[attr-defined]
    code, out, err = invoke("plugins", "--check", "--json", "--config", str(config), env=env)
    assert code == 0, err
    row = next(r for r in json.loads(out)["drivers"] if r["concern"] == c.key)  # type: ignore[attr-defined]
    assert row["driver"] == c.baseline  # type: ignore[attr-defined]
    assert isinstance(row["stats"], dict)


def test_without_flags_the_file_choice_stands(config: Path) -> None:
    # Proves the file really chose the optimized drivers, so the tests above switch them off.
    # Holds whichever optimized distributions are installed.
    no_flags = {c.flag: "" for c in CONCERNS}
    missing = [c for c in CONCERNS if c.optimized not in installed_drivers(c)]
    if missing:
        # A chosen driver that is not installed stops the start, naming the distribution to install.
        code, _, err = invoke("validate", "--config", str(config), env=no_flags)
        assert code == 1
        assert "not installed" in err
        assert any(c.optimized_distribution in err for c in missing), err
    # Every installed one is reported as the file's choice. A missing one is pinned to its
    # baseline by its name override (another concern's variable), so the command can run.
    pins = {c.override: c.baseline for c in missing}
    code, out, err = invoke("plugins", "--json", "--config", str(config), env=no_flags | pins)
    assert code == 0, err
    rows = {row["concern"]: row for row in json.loads(out)["drivers"]}
    for c in CONCERNS:
        row = rows[c.key]
        if c in missing:
            assert (row["driver"], row["source"]) == (c.baseline, f"environment ({c.override}={c.baseline})")
        else:
            assert row["driver"] == c.optimized
            assert row["source"].startswith(f"config file ({config}:"), row["source"]


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.key)
def test_the_flag_picks_the_installed_optimization_and_unsetting_it_rolls_back(
    tmp_path: Path, concern: Concern
) -> None:
    c = concern
    if c.optimized not in installed_drivers(c):
        pytest.skip(f"{c.optimized_distribution} is not installed")
    # The same settings without a [drivers] section: only the flag decides.
    config = tmp_path / "flags.ini"
    config.write_text(CONFIG[CONFIG.index("[docker-client]"):])
    others = {other.override: other.baseline for other in CONCERNS if other is not c}
    picked = {}
    for flag in ("true", ""):
        code, out, err = invoke("plugins", "--check", "--json", "--config", str(config),
                                env=others | {c.flag: flag})
        assert code == 0, err
        row = next(r for r in json.loads(out)["drivers"] if r["concern"] == c.key)
        assert row["stats"], row
        picked[flag] = row["driver"]
    assert picked == {"true": c.optimized, "": c.baseline}
