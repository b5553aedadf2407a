from pathlib import Path

import pytest
from ofelia_hookspecs.types import ConfigKeys, JobTypeSpec, KeySpec

from ofelia_core import jobtypes
from ofelia_core.config.loader import load_config
from ofelia_core.config.model import Diagnostic, Location
from ofelia_core.config.validate import validate_config

JOB_TYPES = {spec.name: spec for spec in jobtypes.ofelia_register_job_types()}
EXTRA = jobtypes.ofelia_add_config_keys()


def check(
    tmp_path: Path,
    text: str,
    *,
    strict: bool = False,
    name: str = "c.ini",
    job_types: dict[str, JobTypeSpec] | None = None,
    extra: list[ConfigKeys] | None = None,
) -> list[Diagnostic]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    config, diagnostics = load_config([str(path)], env={})
    assert diagnostics == []
    return validate_config(config, job_types or JOB_TYPES, EXTRA + (extra or []), strict=strict)


def only(diagnostics: list[Diagnostic]) -> Diagnostic:
    assert len(diagnostics) == 1, [str(d) for d in diagnostics]
    return diagnostics[0]


def test_a_valid_config_has_no_findings(tmp_path: Path) -> None:
    text = """
[global]
save-folder = /tmp/ofelia
smtp-port = 25
web-token-expiry = 12
docker-filter = label=a
docker-filter = label=b

[job-exec "backup"]
schedule = 0 3 * * *
container = db
command = pg_dump app
tty = yes
environment = A=1
environment = B=2

[job-run "report"]
schedule = @every 1h30m
image = alpine
volume = /a:/a
max-runtime = 2h
history-limit = 3

[job-local "ls"]
schedule = @daily
command = ls
timezone = Europe/Berlin
depends-on = report, backup

[job-service-run "svc"]
schedule = @manual
image = busybox
"""
    assert check(tmp_path, text) == []


def test_unknown_job_type_lists_known_and_suggests(tmp_path: Path) -> None:
    found = only(check(tmp_path, '[job-exce "a"]\nschedule = @daily\n'))
    assert (found.level, found.job, found.location) == ("error", "a", Location(str(tmp_path / "c.ini"), 1))
    assert "job-exec, job-local, job-run, job-service-run" in found.message
    assert found.suggestion == "job-exec"


def test_unknown_key_warns_or_errors_with_suggestion(tmp_path: Path) -> None:
    text = '[job-local "a"]\nschedule = @daily\ncommand = ls\ncomand = ls\n'
    warning = only(check(tmp_path, text))
    assert (warning.level, warning.job, warning.key, warning.suggestion) == ("warning", "a", "comand", "command")
    assert warning.location.line == 4
    error = only(check(tmp_path, text, strict=True))
    assert (error.level, error.key) == ("error", "comand")
    assert str(error).startswith(f"error: {tmp_path / 'c.ini'}:4: job \"a\": key 'comand':")
    assert str(error).endswith("(did you mean 'command'?)")


def test_keys_of_other_types_are_unknown(tmp_path: Path) -> None:
    found = only(check(tmp_path, '[job-local "a"]\nschedule = @daily\ncommand = ls\nimage = alpine\n'))
    assert found.key == "image"


@pytest.mark.parametrize(
    ("section", "missing"),
    [
        ('[job-exec "a"]\nschedule = @daily\ncommand = ls\n', "container"),
        ('[job-exec "a"]\nschedule = @daily\ncontainer = c\n', "command"),
        ('[job-local "a"]\nschedule = @daily\n', "command"),
        ('[job-service-run "a"]\nschedule = @daily\n', "image"),
        ('[job-local "a"]\ncommand = ls\n', "schedule"),
    ],
)
def test_required_keys(tmp_path: Path, section: str, missing: str) -> None:
    found = only(check(tmp_path, section))
    assert (found.level, found.job, found.key) == ("error", "a", missing)
    assert "missing" in found.message
    assert found.location.line == 1


def test_required_key_empty(tmp_path: Path) -> None:
    found = only(check(tmp_path, '[job-exec "a"]\nschedule = @daily\ncommand = ls\ncontainer =\n'))
    assert (found.key, found.location.line) == ("container", 4)
    assert "empty" in found.message


def test_job_run_needs_image_or_container(tmp_path: Path) -> None:
    found = only(check(tmp_path, '[job-run "a"]\nschedule = @daily\n'))
    assert (found.level, found.job) == ("error", "a")
    assert "'image' or 'container'" in found.message
    assert check(tmp_path, '[job-run "a"]\nschedule = @daily\ncontainer = existing\n') == []


@pytest.mark.parametrize(
    ("line", "key", "text"),
    [
        ("tty = maybe", "tty", "boolean"),
        ("history-limit = ten", "history-limit", "whole number"),
        ("history-limit = -1", "history-limit", ">= 0"),
        ("max-runtime = 300", "max-runtime", "did you mean '300s'"),
        ("max-runtime = 5 minutes", "max-runtime", "invalid duration"),
        ("schedule = * * * * * * *", "schedule", "7 fields"),
    ],
)
def test_value_kinds(tmp_path: Path, line: str, key: str, text: str) -> None:
    body = f'[job-exec "a"]\ncontainer = c\ncommand = ls\nschedule = @daily\n{line}\n'
    if key == "schedule":
        body = f'[job-exec "a"]\ncontainer = c\ncommand = ls\n{line}\n'
    found = only(check(tmp_path, body))
    assert (found.level, found.job, found.key) == ("error", "a", key)
    assert text in found.message
    assert found.location.line == (4 if key == "schedule" else 5)


@pytest.mark.parametrize("word", ["true", "FALSE", "1", "0", "Yes", "no", "ON", "off"])
def test_bool_words(tmp_path: Path, word: str) -> None:
    assert check(tmp_path, f'[job-local "a"]\nschedule = @daily\ncommand = ls\nno-overlap = {word}\n') == []


def test_empty_schedule_is_one_error(tmp_path: Path) -> None:
    found = only(check(tmp_path, '[job-local "a"]\nschedule =\ncommand = ls\n'))
    assert (found.key, found.location.line) == ("schedule", 2)
    assert "empty" in found.message


def test_repeated_single_key_is_an_error(tmp_path: Path) -> None:
    found = only(check(tmp_path, '[job-local "a"]\nschedule = @daily\nschedule = @hourly\ncommand = ls\n'))
    assert (found.level, found.key) == ("error", "schedule")
    assert "2 times" in found.message


def test_schedule_warning_and_job_timezone(tmp_path: Path) -> None:
    found = only(check(tmp_path, '[job-local "a"]\nschedule = * * * * * *\ncommand = ls\n'))
    assert (found.level, found.key) == ("warning", "schedule")
    assert "every second" in found.message
    bad_zone = only(check(tmp_path, '[job-local "a"]\nschedule = @daily\ncommand = ls\ntimezone = Europe/Berln\n'))
    assert (bad_zone.level, bad_zone.key, bad_zone.location.line) == ("error", "timezone", 4)
    assert "Europe/Berlin" in bad_zone.message


def test_global_keys_checked(tmp_path: Path) -> None:
    findings = check(tmp_path, "[global]\nsave-foldr = /x\nweb-token-expiry = soon\nweb-address = 0.0.0.0:8081\n")
    assert [(d.level, d.key, d.job) for d in findings] == [
        ("warning", "save-foldr", None),
        ("error", "web-token-expiry", None),
    ]
    assert findings[0].suggestion == "save-folder"


def test_secret_values_are_not_echoed(tmp_path: Path) -> None:
    extra = [ConfigKeys("job", (KeySpec("api-token", "int", secret=True),))]
    text = '[job-local "a"]\nschedule = @daily\ncommand = ls\napi-token = hunter2\n'
    found = only(check(tmp_path, text, extra=extra))
    assert "hunter2" not in str(found)


def test_drivers_keys_must_be_concerns_and_concern_sections_are_free(tmp_path: Path) -> None:
    text = "[drivers]\ndocker_client = pooled\nmetrics = anything\n[docker-client]\nwhatever = 1\n[metrics]\nx = y\n"
    found = only(check(tmp_path, text))
    assert (found.level, found.key, found.suggestion) == ("error", "docker_client", "docker-client")


def test_webhook_sections(tmp_path: Path) -> None:
    ok = '[webhook "ops"]\nurl = https://x\ntimeout = 5s\nretry-count = 2\n'
    assert check(tmp_path, ok) == []
    findings = check(tmp_path, '[webhook "ops"]\nurl = https://x\ntimeout = 5\nurls = y\n', strict=True)
    assert [(d.level, d.key) for d in findings] == [("error", "timeout"), ("error", "urls")]
    assert findings[1].suggestion == "url"
    missing = only(check(tmp_path, '[webhook "ops"]\ntimeout = 5s\n'))
    assert missing.key == "url"


def test_references(tmp_path: Path) -> None:
    base = '[webhook "ops"]\nurl = https://x\n'
    text = base + (
        '[job-local "a"]\nschedule = @daily\ncommand = ls\ndepends-on = b\non-failure = bb\nwebhooks = ops, opz\n'
        '[job-local "b"]\nschedule = @daily\ncommand = ls\n'
    )
    findings = check(tmp_path, text)
    # An unknown job is an error (run policies would silently do nothing) ...
    assert [(d.level, d.key, d.suggestion) for d in findings] == [
        ("error", "on-failure", "b"),
        ("warning", "webhooks", "ops"),
    ]
    assert findings[0].location.line == 7 and "no job named 'bb'; jobs: a, b" in findings[0].message
    # ... unless Docker labels are read: it may be a label job (the merge checks it again).
    findings = check(tmp_path, "[global]\ndocker = true\n" + text)
    assert [(d.level, d.key) for d in findings] == [("warning", "on-failure"), ("warning", "webhooks")]


def test_self_reference_and_cycles(tmp_path: Path) -> None:
    me = only(check(tmp_path, '[job-local "a"]\nschedule = @daily\ncommand = ls\non-success = a\n'))
    assert (me.level, me.key) == ("error", "on-success")
    text = (
        '[job-local "a"]\nschedule = @daily\ncommand = ls\ndepends-on = b\n'
        '[job-local "b"]\nschedule = @daily\ncommand = ls\ndepends-on = c\n'
        '[job-local "c"]\nschedule = @daily\ncommand = ls\ndepends-on = a\n'
    )
    cycle = only(check(tmp_path, text))
    assert (cycle.level, cycle.key) == ("error", "depends-on")
    assert "a -> b -> c -> a" in cycle.message


def test_plugin_job_types_and_keys(tmp_path: Path) -> None:
    custom = JobTypeSpec("job-k8s", (KeySpec("namespace", required=True),))
    extra = [ConfigKeys("job-k8s", (KeySpec("replicas", "int"),)), ConfigKeys("job", (KeySpec("team"),))]
    text = '[job-k8s "a"]\nschedule = @daily\nnamespace = ci\nreplicas = 2\nteam = ops\n'
    assert check(tmp_path, text, job_types={**JOB_TYPES, "job-k8s": custom}, extra=extra) == []
    # the type-specific key is not valid elsewhere; the common one is
    other = '[job-local "b"]\nschedule = @daily\ncommand = ls\nreplicas = 2\nteam = ops\n'
    found = only(check(tmp_path, other, job_types={**JOB_TYPES, "job-k8s": custom}, extra=extra))
    assert found.key == "replicas"


def test_yaml_diagnostics_carry_paths(tmp_path: Path) -> None:
    text = "job-local:\n  a:\n    schedule: '@daily'\n    command: ls\n    history-limit: many\n"
    found = only(check(tmp_path, text, name="c.yaml"))
    assert found.location == Location(str(tmp_path / "c.yaml"), 5, "job-local.a.history-limit")
    assert (found.job, found.key) == ("a", "history-limit")


def test_yaml_typed_values_validate(tmp_path: Path) -> None:
    text = (
        "job-run:\n  r:\n    schedule: '@hourly'\n    image: alpine\n    tty: true\n    delete: false\n"
        "    history-limit: 4\n    environment: [A=1]\n    volume: /a:/b\n"
    )
    assert check(tmp_path, text, name="c.yaml") == []
