from pathlib import Path

from ofelia_core.config.loader import DEFAULT_CONFIG_PATH, config_paths, load_config
from ofelia_core.config.model import Location


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_config_paths_precedence() -> None:
    assert config_paths("/x/*.ini", {"OFELIA_CONFIG": "/env.ini"}) == ["/x/*.ini"]
    assert config_paths(None, {"OFELIA_CONFIG": "/env.ini"}) == ["/env.ini"]
    assert config_paths(None, {}) == [DEFAULT_CONFIG_PATH]
    assert config_paths("", {"OFELIA_CONFIG": " "}) == ["/etc/ofelia/config.ini"]


def test_glob_loads_sorted_files_and_merges(tmp_path: Path) -> None:
    write(tmp_path / "b.ini", '[global]\nsave-folder = /late\n[job-local "b"]\nschedule = @daily\ncommand = date\n')
    write(tmp_path / "a.ini", '[global]\nsave-folder = /early\nlog-level = debug\n[job-local "a"]\nschedule = @daily\n')
    config, diagnostics = load_config([str(tmp_path / "*.ini")], env={})
    assert diagnostics == []
    assert config.sources == [str(tmp_path / "a.ini"), str(tmp_path / "b.ini")]
    assert sorted(config.jobs) == ["a", "b"]
    # a later file overrides an earlier one's global key
    assert config.global_.values == {"save-folder": "/late", "log-level": "debug"}
    assert config.global_.where("save-folder") == Location(str(tmp_path / "b.ini"), 2)
    assert config.global_.location == Location(str(tmp_path / "a.ini"), 1)


def test_yaml_and_ini_by_extension(tmp_path: Path) -> None:
    ini = write(tmp_path / "jobs.conf", '[job-local "from-ini"]\nschedule = @daily\n')
    yml = write(tmp_path / "jobs.yml", "job-local:\n  from-yaml:\n    schedule: '@daily'\n")
    other = write(tmp_path / "jobs.txt", '[job-local "from-txt"]\nschedule = @daily\n')
    config, diagnostics = load_config([ini, yml, other], env={})
    assert diagnostics == []
    assert sorted(config.jobs) == ["from-ini", "from-txt", "from-yaml"]
    assert config.jobs["from-yaml"].where("schedule").path == "job-local.from-yaml.schedule"


def test_missing_file_and_empty_glob_are_errors(tmp_path: Path) -> None:
    config, diagnostics = load_config([str(tmp_path / "none.ini"), str(tmp_path / "*.yaml")], env={})
    assert config.jobs == {}
    assert [d.level for d in diagnostics] == ["error", "error"]
    assert diagnostics[0].location.source == str(tmp_path / "none.ini")
    assert "not found" in diagnostics[0].message
    assert diagnostics[1].location.source == str(tmp_path / "*.yaml")
    assert "matches" in diagnostics[1].message


def test_directory_is_an_error(tmp_path: Path) -> None:
    _, diagnostics = load_config([str(tmp_path)], env={})
    assert len(diagnostics) == 1
    assert "directory" in diagnostics[0].message


def test_same_job_twice_names_both_locations(tmp_path: Path) -> None:
    one = write(tmp_path / "1.ini", '[job-exec "dup"]\nschedule = @daily\n')
    two = write(tmp_path / "2.yaml", "job-run:\n  dup:\n    schedule: '@daily'\n")
    config, diagnostics = load_config([one, two], env={})
    assert config.jobs["dup"].kind == "job-exec"
    assert len(diagnostics) == 1
    error = diagnostics[0]
    assert error.level == "error"
    assert error.job == "dup"
    assert f"{one}:1" in error.message
    assert f"{two}:2" in error.message


def test_same_job_in_two_types_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.ini", '[job-exec "x"]\nschedule = @daily\n[job-local "x"]\nschedule = @daily\n')
    _, diagnostics = load_config([path], env={})
    assert [d.level for d in diagnostics] == ["error"]
    assert f"{path}:1" in diagnostics[0].message and f"{path}:3" in diagnostics[0].message


def test_sections_land_in_the_model(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.ini",
        "[drivers]\nmetrics = performance\n[buffer-pool]\nmax-bytes = 10\n"
        '[webhook "ops"]\nurl = https://x\n[job-service-run "s"]\nschedule = @daily\n',
    )
    config, diagnostics = load_config([path], env={})
    assert diagnostics == []
    assert config.drivers.values == {"metrics": "performance"}
    assert config.concern_settings("buffer-pool") == {"max-bytes": "10"}
    assert config.webhooks["ops"].values == {"url": "https://x"}
    assert config.jobs["s"].kind == "job-service-run"


def test_unknown_section_warns_and_unnamed_job_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "c.ini", '[globl]\na = 1\n[job-exec]\nschedule = @daily\n[global "x"]\n')
    config, diagnostics = load_config([path], env={})
    assert [(d.level, d.location.line) for d in diagnostics] == [("warning", 1), ("error", 3), ("error", 5)]
    assert diagnostics[0].suggestion == "global"
    assert config.jobs == {}


def test_env_is_passed_to_substitution(tmp_path: Path) -> None:
    path = write(tmp_path / "c.ini", '[job-local "j"]\nschedule = ${SCHED:-@daily}\ncommand = echo ${WHO}\n')
    config, diagnostics = load_config([path], env={"WHO": "me"})
    assert diagnostics == []
    assert config.jobs["j"].values == {"schedule": "@daily", "command": "echo me"}


def test_unreadable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bad.ini"
    path.write_bytes(b"[global]\nx = \xff\xfe\n")
    config, diagnostics = load_config([str(path)], env={})
    assert config.sources == []
    assert "UTF-8" in diagnostics[0].message
