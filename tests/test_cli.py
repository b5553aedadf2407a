"""The command line, in-process through click's runner with a controlled environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ofelia_core import __version__
from ofelia_core.cli import cli
from ofelia_core.drivers.table import CONCERNS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    # Clear every OFELIA_* variable the developer may have set, then add the test's own.
    base = {c.flag: "" for c in CONCERNS} | {c.override: "" for c in CONCERNS}
    base |= {"OFELIA_CONFIG": "", "OFELIA_DISABLED_PLUGINS": ""}
    return CliRunner().invoke(cli, list(args), env=base | (env or {}), catch_exceptions=False)


@pytest.mark.parametrize("name", ["config.ini", "config.yaml"])
def test_validate_examples(name: str) -> None:
    result = run("validate", "--config", str(EXAMPLES / name))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK. Found ")
    assert result.stdout.rstrip().endswith(" jobs.")


def test_validate_reads_ofelia_config(tmp_path: Path) -> None:
    config = tmp_path / "c.ini"
    config.write_text('[job-local "a"]\nschedule = @hourly\ncommand = true\n'
                      '[job-local "b"]\nschedule = @daily\ncommand = true\n')
    result = run("validate", env={"OFELIA_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK. Found 2 jobs.\n"


def test_validate_failure_names_file_line_job_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.ini"
    config.write_text('[job-local "backup"]\nschedule = * * * * * * *\ncommand = true\n')
    result = run("validate", "--config", str(config))
    assert result.exit_code == 1
    assert f"{config}:2" in result.stderr
    assert 'job "backup"' in result.stderr
    assert "schedule" in result.stderr
    assert "OK." not in result.stdout


def test_validate_strict_turns_unknown_keys_into_errors(tmp_path: Path) -> None:
    config = tmp_path / "c.ini"
    config.write_text('[job-local "x"]\nschedule = @hourly\ncommand = true\nno-overlapp = true\n')
    relaxed = run("validate", "--config", str(config))
    assert relaxed.exit_code == 0
    assert "no-overlap" in relaxed.stderr  # the suggestion
    strict = run("validate", "--strict", "--config", str(config))
    assert strict.exit_code == 1
    assert "no-overlap" in strict.stderr


def test_validate_rejects_a_bad_flag_naming_the_variable(tmp_path: Path) -> None:
    result = run("validate", "--config", str(EXAMPLES / "config.ini"),
                 env={"OFELIA_USE_OPTIMIZED_TOKEN_MANAGER": "maybe"})
    assert result.exit_code == 1
    assert "OFELIA_USE_OPTIMIZED_TOKEN_MANAGER='maybe' is not a boolean" in result.stderr


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.key)
def test_optimized_flag_without_its_plugin_names_the_distribution(concern: object) -> None:
    c = concern
    from ofelia_core.drivers.selection import installed_drivers

    if c.optimized in installed_drivers(c):  # type: ignore[attr-defined]
        pytest.skip("installed here")
    result = run("plugins", env={c.flag: "true"})  # type: ignore[attr-defined]
    assert result.exit_code == 1
    assert c.optimized_distribution in result.stderr  # type: ignore[attr-defined]


def test_plugins_table_shows_choice_distribution_and_source() -> None:
    result = run("plugins", env={"OFELIA_USE_ENHANCED_BUFFER_POOL": "false"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["concern", "driver", "distribution", "version", "chosen", "by"]
    buffer_line = next(line for line in lines if line.startswith("buffer-pool"))
    assert buffer_line.split()[:4] == ["buffer-pool", "baseline", "ofelia", __version__]
    assert "environment (OFELIA_USE_ENHANCED_BUFFER_POOL=false)" in buffer_line
    assert "ofelia_core.jobtypes" in result.stdout


def test_plugins_json_and_command_line_precedence(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("drivers:\n  metrics: noop\njob-local:\n  x:\n    schedule: '@hourly'\n    command: 'true'\n")
    result = run("plugins", "--json", "--config", str(config), "--driver", "token-manager=baseline")
    assert result.exit_code == 0, result.output
    rows = {row["concern"]: row for row in json.loads(result.stdout)["drivers"]}
    assert rows["token-manager"]["source"] == "command line (--driver token-manager=baseline)"
    assert rows["metrics"]["source"].startswith(f"config file ({config}")
    assert rows["docker-client"]["source"] == "default"


def test_plugins_check_builds_each_driver_and_reports_stats() -> None:
    result = run("plugins", "--check", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["drivers"]
    assert {row["concern"] for row in rows} == {c.key for c in CONCERNS}
    assert all(isinstance(row["stats"], dict) for row in rows)


def test_plugins_bad_driver_option() -> None:
    result = run("plugins", "--driver", "buffer-pool")
    assert result.exit_code == 1
    assert "expected CONCERN=NAME" in result.stderr


def test_version() -> None:
    result = run("version")
    assert result.stdout.startswith(f"ofelia {__version__} (ofelia-hookspecs ")


def test_help_explains_commands_and_environment() -> None:
    result = run("--help")
    for command in ("validate", "plugins", "schedule", "version"):
        assert command in result.stdout
    assert "OFELIA_LOG_LEVEL" in result.stdout
    assert "OFELIA_CONFIG" in run("validate", "--help").stdout


def test_schedule_prints_next_times_in_the_job_zone_across_dst(tmp_path: Path) -> None:
    config = tmp_path / "c.ini"
    config.write_text('[job-local "nightly"]\nschedule = CRON_TZ=Europe/Berlin 30 2 * * *\ncommand = true\n'
                      '[job-local "manual"]\nschedule = @manual\ncommand = true\n')
    result = run("schedule", "--config", str(config), "-n", "3", "--from", "2026-03-28T12:00:00+00:00")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    nightly = lines[lines.index(next(x for x in lines if x.startswith("nightly"))) + 1:][:3]
    # 2026-03-29 02:30 does not exist in Berlin (clocks jump 02:00 -> 03:00): it fires once, at 03:00.
    assert [x.strip() for x in nightly] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert "never fires on a schedule" in result.stdout


def test_schedule_unknown_job(tmp_path: Path) -> None:
    result = run("schedule", "--config", str(EXAMPLES / "config.ini"), "nope")
    assert result.exit_code == 1
    assert "no job named nope" in result.stderr


def test_module_entry_point_runs() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ofelia_core", "version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("ofelia ")


def test_log_json_writes_one_json_object_per_line_naming_each_driver() -> None:
    result = run("--log-json", "plugins", "--check")
    assert result.exit_code == 0, result.output
    records = [json.loads(line)["record"] for line in result.stderr.splitlines() if line.strip()]
    messages = [r["message"] for r in records]
    assert any(m.startswith("driver buffer-pool: baseline (ofelia ") and m.endswith("chosen by default")
               for m in messages)
    assert all(r["level"]["name"] == "INFO" for r in records)


def test_log_level_filters() -> None:
    result = run("--log-level", "warning", "plugins", "--check")
    assert result.exit_code == 0
    assert "driver buffer-pool" not in result.stderr


def test_strict_in_the_global_section_turns_on_strict_mode(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("global:\n  strict: true\njob-local:\n  x:\n    schedule: '@hourly'\n    command: 'true'\n"
                      "    no-overlapp: true\n")
    result = run("validate", "--config", str(config))
    assert result.exit_code == 1
    assert "no-overlap" in result.stderr
