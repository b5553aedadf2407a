"""``ofelia daemon``'s label options reach the daemon (flags and OFELIA_* variables);
``ofelia validate`` never loads the label code."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner

import ofelia_core.daemon
from ofelia_core.cli import cli


class FakeDaemon:
    seen: dict[str, Any] = {}

    def __init__(self, config_path: str | None, **options: Any) -> None:
        FakeDaemon.seen = {"config_path": config_path, **options}

    def run(self) -> int:
        return 0


@pytest.mark.parametrize(
    ("args", "env", "docker", "filters"),
    [
        ([], {}, False, ()),
        (["--docker", "--docker-filter", "team=ops", "--docker-filter", "name=db"], {}, True, ("team=ops", "name=db")),
        (["-d", "-f", "label=a=b"], {}, True, ("label=a=b",)),
        ([], {"OFELIA_DOCKER": "true", "OFELIA_DOCKER_FILTER": "team=ops label=a=b"}, True,
         ("team=ops", "label=a=b")),
    ],
)
def test_daemon_label_options(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str],
                              docker: bool, filters: tuple[str, ...]) -> None:
    monkeypatch.setattr(ofelia_core.daemon, "Daemon", FakeDaemon)
    base = {"OFELIA_DOCKER": "", "OFELIA_DOCKER_FILTER": "", "OFELIA_CONFIG": ""}
    result = CliRunner().invoke(cli, ["daemon", *args], env=base | env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert FakeDaemon.seen["docker"] is docker
    assert tuple(FakeDaemon.seen["docker_filters"]) == filters


def test_validate_does_not_import_the_label_code(tmp_path: Any) -> None:
    config = tmp_path / "c.ini"
    config.write_text('[job-local "a"]\nschedule = @hourly\ncommand = true\n')
    code = (
        "import sys\n"
        "from ofelia_core.cli import main\n"
        f"sys.argv = ['ofelia', 'validate', '--config', {str(config)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('ofelia_core.labels')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"


def test_label_settings_from_yaml_global_and_command_line(tmp_path: Any) -> None:
    from ofelia_core.labels.source import LabelSettings
    from ofelia_core.runtime import load_and_validate

    config = tmp_path / "c.yaml"
    config.write_text("global:\n  docker: true\n  docker-filter: [team=ops, label=a=b]\n"
                      "  docker-poll-interval: 30s\n  docker-startup-retries: 3\n  docker-startup-interval: 500ms\n")
    loaded = load_and_validate(str(config), {})
    assert loaded.errors == []
    values = loaded.config.global_.values
    assert LabelSettings.from_config(values) == LabelSettings(True, ("team=ops", "label=a=b"), 30.0, 3, 0.5)
    assert LabelSettings.from_config(values, cli_filters=["name=db"]).filters == ("name=db",)
    assert LabelSettings.from_config({}) == LabelSettings(False)
    assert LabelSettings.from_config({}, cli_docker=True).enabled
