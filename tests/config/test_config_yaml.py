import textwrap

from ofelia_core.config.model import Diagnostic, Location, Section
from ofelia_core.config.yaml_source import read_yaml


def parse(
    text: str, env: dict[str, str] | None = None
) -> tuple[dict[tuple[str, str | None], Section], list[Diagnostic]]:
    sections, diagnostics = read_yaml(textwrap.dedent(text), "c.yaml", env or {})
    return {(s.kind, s.name): s for s in sections}, diagnostics


def test_schema_and_path_locations() -> None:
    sections, diagnostics = parse(
        """\
        global:
          save-folder: /tmp/o
        drivers:
          metrics: performance
        docker-client:
          max-connections: 50
        job-exec:
          backup:
            schedule: "@hourly"
            container: db
        webhook:
          ops:
            url: https://example.com/hook
        """
    )
    assert diagnostics == []
    assert sections[("global", None)].values == {"save-folder": "/tmp/o"}
    assert sections[("drivers", None)].values == {"metrics": "performance"}
    assert sections[("docker-client", None)].values == {"max-connections": 50}
    job = sections[("job-exec", "backup")]
    assert job.values == {"schedule": "@hourly", "container": "db"}
    assert job.where("schedule") == Location("c.yaml", 9, "job-exec.backup.schedule")
    assert job.location == Location("c.yaml", 8, "job-exec.backup")
    assert sections[("webhook", "ops")].values == {"url": "https://example.com/hook"}


def test_types_lists_and_case() -> None:
    sections, _ = parse(
        """\
        job-run:
          Report:
            Schedule: "@daily"
            tty: true
            history-limit: 5
            environment: [A=1, B=2]
            empty:
            date: 2020-01-01
        """
    )
    job = sections[("job-run", "Report")]
    assert job.values == {
        "schedule": "@daily",
        "tty": True,
        "history-limit": 5,
        "environment": ["A=1", "B=2"],
        "empty": "",
        "date": "2020-01-01",
    }


def test_substitution_only_in_strings() -> None:
    sections, diagnostics = parse(
        """\
        job-local:
          j:
            command: echo ${WHO:-world}
            environment: ["HOME=${HOME}", "X=${NOPE}"]
        """,
        {"HOME": "/h"},
    )
    assert sections[("job-local", "j")].values["environment"] == ["HOME=/h", "X="]
    assert sections[("job-local", "j")].values["command"] == "echo world"
    assert [(d.level, d.location.line, d.job, d.key) for d in diagnostics] == [("warning", 4, "j", "environment")]


def test_unknown_top_level_key_is_an_error_with_suggestion() -> None:
    _, diagnostics = parse("globl:\n  a: 1\n")
    assert len(diagnostics) == 1
    assert diagnostics[0].level == "error"
    assert diagnostics[0].suggestion == "global"
    assert diagnostics[0].location.line == 1


def test_extension_keys_hold_anchors() -> None:
    sections, diagnostics = parse(
        """\
        x-defaults: &defaults
          no-overlap: true
          schedule: "@daily"
        job-local:
          a:
            <<: *defaults
            schedule: "@hourly"
            command: date
        """
    )
    assert diagnostics == []
    assert sections[("job-local", "a")].values == {"no-overlap": True, "schedule": "@hourly", "command": "date"}


def test_nested_mapping_value_and_duplicate_key_are_errors() -> None:
    _, diagnostics = parse(
        """\
        job-local:
          a:
            command: date
            command: ls
            environment: {A: 1}
        """
    )
    messages = [(d.location.line, d.message) for d in diagnostics]
    assert any(line == 4 and "twice" in text for line, text in messages)
    assert any(line == 5 and "mapping" in text for line, text in messages)


def test_syntax_error_has_a_line() -> None:
    _, diagnostics = parse("global:\n  a: [1\n  b: 2\n")
    assert len(diagnostics) == 1
    assert diagnostics[0].level == "error"
    assert diagnostics[0].location.source == "c.yaml"
    assert diagnostics[0].location.line == 3
    assert "YAML syntax error" in diagnostics[0].message


def test_wrong_shapes() -> None:
    _, diagnostics = parse("- a\n- b\n")
    assert "top level" in diagnostics[0].message
    _, diagnostics = parse("job-exec: 3\n")
    assert "job name" in diagnostics[0].message


def test_empty_document_and_empty_job() -> None:
    assert read_yaml("", "c.yaml") == ([], [])
    sections, diagnostics = parse("job-local:\n  a:\n")
    assert diagnostics == []
    assert sections[("job-local", "a")].values == {}
