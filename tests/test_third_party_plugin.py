"""A third-party driver installed into a throwaway environment, chosen by its
override variable, and rolled back by unsetting it; a rogue general plugin is
refused at start-up until it is blocked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from throwaway_venv import REPO, ThrowawayVenv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ring_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayVenv]:
    env = ThrowawayVenv(tmp_path_factory.mktemp("ring") / "venv")
    env.install(REPO / "examples" / "plugin-ring-buffer")
    yield env


@pytest.fixture(scope="module")
def rogue_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayVenv]:
    env = ThrowawayVenv(tmp_path_factory.mktemp("rogue") / "venv")
    env.install(REPO / "tests" / "fixtures" / "rogue-factory-plugin")
    yield env


def buffer_pool_row(output: str) -> dict[str, object]:
    rows = {row["concern"]: row for row in json.loads(output)["drivers"]}
    return rows["buffer-pool"]


def test_override_variable_selects_the_installed_driver_and_it_answers(ring_env: ThrowawayVenv) -> None:
    result = ring_env.ofelia("plugins", "--check", "--json", env={"OFELIA_BUFFER_POOL": "ring"})
    assert result.returncode == 0, result.stderr
    row = buffer_pool_row(result.stdout)
    assert row["driver"] == "ring"
    assert row["distribution"] == "ofelia-example-ringbuffer"
    assert row["source"] == "environment (OFELIA_BUFFER_POOL=ring)"
    stats = row["stats"]
    assert isinstance(stats, dict)
    assert stats["driver"]["driver"] == "ring"  # the plugin's own stats, through instrumentation


def test_unsetting_the_variable_rolls_back_to_the_baseline(ring_env: ThrowawayVenv) -> None:
    result = ring_env.ofelia("plugins", "--check", "--json")
    assert result.returncode == 0, result.stderr
    row = buffer_pool_row(result.stdout)
    assert row["driver"] == "baseline"
    assert row["source"] == "default"
    assert "ring" in row["available"]


def test_drivers_section_in_a_config_file_selects_it(ring_env: ThrowawayVenv, tmp_path: Path) -> None:
    config = tmp_path / "c.ini"
    config.write_text('[drivers]\nbuffer-pool = ring\n[buffer-pool]\nidle-buffers = 3\n'
                      '[job-local "x"]\nschedule = @hourly\ncommand = true\n')
    result = ring_env.ofelia("plugins", "--check", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    row = buffer_pool_row(result.stdout)
    assert row["driver"] == "ring"
    assert row["source"] == f"config file ({config}:2)"


def test_shared_environment_does_not_have_it() -> None:
    from ofelia_core.drivers.selection import installed_drivers
    from ofelia_core.drivers.table import BY_KEY

    # Proves the install went to the throwaway environment, so test order cannot matter.
    assert "ring" not in installed_drivers(BY_KEY["buffer-pool"])


def test_example_plugin_passes_the_contract_kit(ring_env: ThrowawayVenv) -> None:
    import subprocess

    result = subprocess.run(
        [str(ring_env.python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(REPO / "examples" / "plugin-ring-buffer" / "tests")],
        capture_output=True, text=True, cwd=str(REPO / "examples" / "plugin-ring-buffer"), timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_rogue_general_plugin_is_refused_at_start_up(rogue_env: ThrowawayVenv) -> None:
    result = rogue_env.ofelia("plugins")
    assert result.returncode == 1
    assert "plugin 'rogue' implements ofelia_make_buffer_pool" in result.stderr


def test_blocking_the_rogue_plugin_lets_ofelia_start(rogue_env: ThrowawayVenv) -> None:
    result = rogue_env.ofelia("plugins", "--json", env={"OFELIA_DISABLED_PLUGINS": "rogue"})
    assert result.returncode == 0, result.stderr
    assert "rogue" not in json.loads(result.stdout)["plugins"]


def test_an_unchosen_driver_is_never_imported(ring_env: ThrowawayVenv) -> None:
    import subprocess

    script = (
        "import os, sys\n"
        "from ofelia_core.drivers.loading import default_context, start_drivers\n"
        "from ofelia_core.drivers.selection import choose_drivers\n"
        "from ofelia_core.plugins import build_plugin_manager\n"
        "active = start_drivers(build_plugin_manager(), choose_drivers(env=os.environ), {}, default_context())\n"
        "active.close()\n"
        "print('ofelia_example_ringbuffer' in sys.modules)\n"
    )
    for env, imported in (({}, "False"), ({"OFELIA_BUFFER_POOL": "ring"}, "True")):
        result = subprocess.run([str(ring_env.python), "-c", script], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", **env}, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == imported
