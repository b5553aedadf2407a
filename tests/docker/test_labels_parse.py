"""Ofelia's label rules: records shaped like the engine's (list entries and inspect
documents) through the parser and the merge with the files' config, then a few
against real containers read through the baseline driver."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import pytest
from ofelia_hookspecs.types import ConfigKeys

from ofelia_core.config.model import Config, Location, Section
from ofelia_core.jobs import build_jobs
from ofelia_core.jobtypes import GLOBAL_KEYS, JOB_KEYS, JOB_TYPES
from ofelia_core.labels.merge import MergedConfig, merge_labels
from ofelia_core.labels.parse import (
    LabelConfig,
    container_from_record,
    engine_filters,
    parse_containers,
)

TYPES = {spec.name: spec for spec in JOB_TYPES}
EXTRA = [ConfigKeys("job", JOB_KEYS), ConfigKeys("global", GLOBAL_KEYS)]
GLOBAL_NAMES = {key.name for key in GLOBAL_KEYS}


def record(name: str, labels: Mapping[str, str], *, created: int = 100, enabled: bool = True) -> dict[str, Any]:
    """A container list entry as the engine returns it."""
    full = {"ofelia.enabled": "true", **labels} if enabled else dict(labels)
    return {"Id": secrets.token_hex(32), "Names": [f"/{name}"], "Labels": full, "Created": created,
            "State": "running"}


def service(labels: Mapping[str, str], name: str = "ofelia", created: int = 50) -> dict[str, Any]:
    return record(name, {"ofelia.service": "true", **labels}, created=created)


def parse(*records: dict[str, Any]) -> LabelConfig:
    return parse_containers(records, global_keys=GLOBAL_NAMES)


def merge(labels: LabelConfig, files: Config | None = None, *, strict: bool = False) -> MergedConfig:
    return merge_labels(files or Config(), labels, TYPES, EXTRA, strict=strict)


def messages(items: Any) -> list[str]:
    return [str(d) for d in items]


EXEC = {"ofelia.job-exec.backup.schedule": "@every 1m", "ofelia.job-exec.backup.command": "echo hi"}


# --- which containers and labels are read -----------------------------------------------


def test_no_labels_gives_nothing() -> None:
    labels = parse(record("plain", {}, enabled=False), record("other", {"com.example": "x"}, enabled=False))
    assert labels.jobs == {} and labels.global_.values == {} and labels.diagnostics == []
    assert labels.containers == []


@pytest.mark.parametrize("enabled", [None, "false", "True", "1", ""])
def test_a_container_not_labelled_ofelia_enabled_true_is_not_read(enabled: str | None) -> None:
    labels = dict(EXEC)
    if enabled is not None:
        labels["ofelia.enabled"] = enabled
    parsed = parse(record("db", labels, enabled=False))
    assert parsed.jobs == {} and parsed.containers == []


def test_job_exec_on_any_container_runs_in_that_container() -> None:
    parsed = parse(record("db", EXEC))
    job = parsed.jobs["backup"]
    assert (job.kind, job.values) == ("job-exec", {"schedule": "@every 1m", "command": "echo hi", "container": "db"})
    assert parsed.diagnostics == []
    assert str(job.where("schedule")) == "label ofelia.job-exec.backup.schedule on container 'db'"


def test_a_container_label_on_an_app_container_is_overridden_with_a_warning() -> None:
    parsed = parse(record("db", {**EXEC, "ofelia.job-exec.backup.container": "elsewhere"}))
    assert parsed.jobs["backup"].values["container"] == "db"
    (warning,) = parsed.diagnostics
    assert warning.level == "warning" and warning.job == "backup" and warning.key == "container"
    assert "'db' is used" in warning.message


def test_job_exec_on_the_service_container_honours_its_container_label() -> None:
    parsed = parse(service({**EXEC, "ofelia.job-exec.backup.container": "db"}),
                   service({"ofelia.job-exec.self.schedule": "@daily", "ofelia.job-exec.self.command": "true"},
                           name="ofelia2", created=60))
    assert parsed.jobs["backup"].values["container"] == "db"
    assert parsed.jobs["self"].values["container"] == "ofelia2"  # none given: its own container


@pytest.mark.parametrize("kind", ["job-local", "job-run", "job-service-run"])
def test_other_job_types_are_read_only_from_the_service_container(kind: str) -> None:
    labels = {f"ofelia.{kind}.nightly.schedule": "@daily", f"ofelia.{kind}.nightly.command": "date",
              f"ofelia.{kind}.nightly.image": "busybox"}
    ignored = parse(record("app", labels))
    assert ignored.jobs == {}
    (warning,) = ignored.diagnostics
    assert warning.level == "warning" and warning.job == "nightly"
    assert "app" in str(warning.location) and "ofelia.service=true" in warning.message
    accepted = parse(service(labels))
    assert accepted.jobs["nightly"].kind == kind and accepted.diagnostics == []


def test_service_false_is_not_the_service_container() -> None:
    parsed = parse(record("app", {"ofelia.service": "false", "ofelia.job-local.x.schedule": "@daily"}))
    assert parsed.jobs == {}


@pytest.mark.parametrize("key", ["volume", "environment", "volumes-from"])
def test_list_keys_take_a_json_array(key: str) -> None:
    parsed = parse(service({"ofelia.job-run.r.schedule": "@daily", "ofelia.job-run.r.image": "busybox",
                            f"ofelia.job-run.r.{key}": '["a:/a", "b:/b"]'}))
    assert parsed.jobs["r"].values[key] == ["a:/a", "b:/b"]
    assert parsed.diagnostics == []
    jobs = build_jobs(merge(parsed).config, TYPES, EXTRA)
    assert jobs["r"].options[key] == ["a:/a", "b:/b"]


def test_a_single_string_stays_one_value_and_a_bad_array_warns() -> None:
    parsed = parse(service({"ofelia.job-run.r.schedule": "@daily", "ofelia.job-run.r.image": "busybox",
                            "ofelia.job-run.r.volume": "/data:/data",
                            "ofelia.job-run.r.environment": '["A=1", 2]',
                            "ofelia.job-run.r.command": '["not", "a", "list", "key"]'}))
    values = parsed.jobs["r"].values
    assert values["volume"] == "/data:/data"
    assert values["environment"] == '["A=1", 2]'
    assert values["command"] == '["not", "a", "list", "key"]'
    (warning,) = parsed.diagnostics
    assert warning.key == "environment" and "JSON array" in warning.message


def test_global_keys_come_from_the_service_container_only() -> None:
    parsed = parse(service({"ofelia.save-folder": "/var/log/ofelia", "ofelia.max-runtime": "2h"}),
                   record("app", {"ofelia.slack-webhook": "https://hooks.example/x", "ofelia.test": "mine"}))
    assert parsed.global_.values == {"save-folder": "/var/log/ofelia", "max-runtime": "2h"}
    (warning,) = parsed.diagnostics  # a known global key on an app container; its own labels are left alone
    assert warning.key == "slack-webhook" and "app" in str(warning.location)
    merged = merge(parsed)
    assert merged.config.global_.values["save-folder"] == "/var/log/ofelia"


def test_keys_that_decide_how_labels_are_read_cannot_come_from_a_label() -> None:
    parsed = parse(service({"ofelia.docker-filter": "x=y", "ofelia.state-dir": "/tmp"}))
    assert parsed.global_.values == {}
    assert sorted(d.key or "" for d in parsed.diagnostics) == ["docker-filter", "state-dir"]


def test_a_dotted_job_name_is_rejected() -> None:
    parsed = parse(record("db", {**EXEC, "ofelia.job-exec.my.backup.schedule": "@daily",
                                 "ofelia.job-exec.my.backup.command": "true"}))
    assert list(parsed.jobs) == ["backup"]
    (error,) = parsed.diagnostics
    assert error.level == "error" and error.job == "my.backup"
    assert "cannot contain a dot" in error.message and "container 'db'" in str(error)
    assert "ofelia.job-exec.my.backup.command" in str(error)
    assert parsed.rejected == ["my.backup"]


def test_a_label_without_key_or_name_is_an_error_and_odd_labels_warn() -> None:
    parsed = parse(service({"ofelia.job-exec.backup": "x", "ofelia.hook.w.url": "http://x",
                            "ofelia.job-exce.b.schedule": "@daily"}))
    assert parsed.jobs == {"b": parsed.jobs["b"]}  # an unknown job-* type reaches validation
    text = "\n".join(messages(parsed.diagnostics))
    assert "error: label ofelia.job-exec.backup on container 'ofelia'" in text
    assert "label ofelia.hook.w.url on container 'ofelia': is not an ofelia label" in text
    merged = merge(parsed)
    assert merged.rejected == ["b"]
    assert any("unknown job type 'job-exce'" in m and "did you mean 'job-exec'" in m
               for m in messages(merged.diagnostics))


def test_the_older_container_keeps_a_contested_job_name() -> None:
    newer = record("newer", {**EXEC, "ofelia.job-exec.backup.command": "echo newer"}, created=200)
    older = record("older", EXEC, created=100)
    parsed = parse(newer, older)
    assert parsed.jobs["backup"].values["container"] == "older"
    (error,) = parsed.diagnostics
    assert error.job == "backup" and "'older'" in error.message and "newer" in str(error.location)
    assert parsed.rejected == []  # the job itself runs


def test_inspect_documents_read_like_list_entries() -> None:
    inspect = {"Id": "f" * 64, "Name": "/db", "Created": "2026-01-02T03:04:05.123456789Z",
               "Config": {"Labels": {"ofelia.enabled": "true", **EXEC}}, "State": {"Running": True}}
    container = container_from_record(inspect)
    assert container.name == "db" and container.enabled and not container.is_service
    assert container.created == pytest.approx(1767323045.123456)
    assert parse(inspect).jobs["backup"].values["container"] == "db"


def test_engine_filters() -> None:
    assert engine_filters([]) == {"label": ["ofelia.enabled=true"]}
    assert engine_filters(["ofelia.test=abc", "label=com.docker.compose.project=web", "name=db"]) == {
        "label": ["ofelia.enabled=true", "ofelia.test=abc", "com.docker.compose.project=web"],
        "name": ["db"],
    }
    with pytest.raises(ValueError, match="expected key=value"):
        engine_filters(["novalue"])


def test_the_fingerprint_follows_the_content() -> None:
    first, same = parse(record("db", EXEC)), parse(record("db", EXEC))
    assert first.fingerprint() == same.fingerprint()
    assert parse(record("db", {**EXEC, "ofelia.job-exec.backup.user": "nobody"})).fingerprint() != first.fingerprint()
    assert parse(record("db2", EXEC)).fingerprint() != first.fingerprint()


# --- validation: a bad label rejects its job only -------------------------------------------


def test_a_bad_value_rejects_that_job_only_and_names_container_label_job_and_key() -> None:
    parsed = parse(record("db", {**EXEC, "ofelia.job-exec.broken.schedule": "every now and then",
                                 "ofelia.job-exec.broken.command": "true",
                                 "ofelia.job-exec.flaky.schedule": "@hourly",
                                 "ofelia.job-exec.flaky.command": "true",
                                 "ofelia.job-exec.flaky.no-overlap": "perhaps"}))
    merged = merge(parsed)
    assert merged.label_jobs == ["backup"] and merged.rejected == ["broken", "flaky"]
    assert set(merged.config.jobs) == {"backup"}
    errors = [str(d) for d in merged.diagnostics if d.level == "error"]
    assert any(e.startswith("error: label ofelia.job-exec.broken.schedule on container 'db': job \"broken\": "
                            "key 'schedule':") for e in errors), errors
    assert any(e.startswith("error: label ofelia.job-exec.flaky.no-overlap on container 'db': job \"flaky\": "
                            "key 'no-overlap':") and "boolean" in e for e in errors), errors


def test_a_missing_required_key_names_the_job_labels() -> None:
    merged = merge(parse(record("db", {"ofelia.job-exec.nocmd.schedule": "@daily"})))
    (error,) = [d for d in merged.diagnostics if d.level == "error"]
    assert str(error) == ("error: labels ofelia.job-exec.nocmd.* on container 'db': job \"nocmd\": "
                          "key 'command': is required for job-exec jobs but missing")


def test_strings_are_converted_by_validation() -> None:
    parsed = parse(record("db", {**EXEC, "ofelia.job-exec.backup.no-overlap": "true",
                                 "ofelia.job-exec.backup.history-limit": "5",
                                 "ofelia.job-exec.backup.max-runtime": "90s",
                                 "ofelia.job-exec.backup.tty": "0"}))
    job = build_jobs(merge(parsed).config, TYPES, EXTRA)["backup"]
    assert job.no_overlap is True and job.history_limit == 5 and job.max_runtime == 90.0
    assert job.options["tty"] is False


def test_an_unknown_key_warns_and_rejects_the_job_when_strict() -> None:
    parsed = parse(record("db", {**EXEC, "ofelia.job-exec.backup.comand": "oops"}))
    lenient = merge(parsed)
    assert lenient.label_jobs == ["backup"]
    (warning,) = lenient.diagnostics
    assert warning.level == "warning" and "did you mean 'command'" in str(warning)
    strict = merge(parsed, strict=True)
    assert strict.rejected == ["backup"] and "backup" not in strict.config.jobs


def test_a_bad_global_label_is_dropped_alone() -> None:
    parsed = parse(service({"ofelia.max-runtime": "forever", "ofelia.save-folder": "/x"}), record("db", EXEC))
    merged = merge(parsed)
    assert merged.config.global_.values == {"save-folder": "/x"}
    assert merged.label_jobs == ["backup"]
    (error,) = [d for d in merged.diagnostics if d.level == "error"]
    assert "label ofelia.max-runtime on container 'ofelia'" in str(error) and error.key == "max-runtime"


# --- the files win -------------------------------------------------------------------------


def file_config() -> Config:
    config = Config(sources=["/etc/ofelia/config.ini"])
    where = Location("/etc/ofelia/config.ini", line=3)
    job = Section("job-local", "backup", where)
    job.set("schedule", "@daily", where)
    job.set("command", "true", where)
    config.jobs["backup"] = job
    config.global_.set("save-folder", "/from/file", Location("/etc/ofelia/config.ini", line=2))
    return config


def test_a_file_job_of_the_same_name_wins_with_a_warning() -> None:
    files = file_config()
    merged = merge(parse(record("db", EXEC), service({"ofelia.save-folder": "/from/label",
                                                      "ofelia.save-only-on-error": "true"})), files)
    assert merged.config.jobs["backup"].kind == "job-local" and merged.label_jobs == []
    assert merged.config.global_.values == {"save-folder": "/from/file", "save-only-on-error": "true"}
    text = "\n".join(messages(merged.diagnostics))
    assert "job \"backup\": a job with this name is defined at /etc/ofelia/config.ini:3 too: the file's job is used" \
        in text
    assert "label ofelia.save-folder on container 'ofelia': key 'save-folder': is set at " \
        "/etc/ofelia/config.ini:2 too: the file's value is used" in text
    assert files.global_.values == {"save-folder": "/from/file"}  # the files' config is not touched
    assert list(files.jobs) == ["backup"] and merged.config.sources[-1] == "docker labels"


def test_a_depends_on_cycle_through_labels_drops_a_label_job() -> None:
    files = file_config()
    where = Location("/etc/ofelia/config.ini", line=3)
    files.jobs["backup"].set("depends-on", "prepare", where)
    parsed = parse(record("db", {"ofelia.job-exec.prepare.schedule": "@daily",
                                 "ofelia.job-exec.prepare.command": "true",
                                 "ofelia.job-exec.prepare.depends-on": "backup"}))
    merged = merge(parsed, files)
    assert merged.rejected == ["prepare"] and "prepare" not in merged.config.jobs
    assert any("depends-on forms a cycle" in m for m in messages(merged.diagnostics))


# --- real containers, read through the baseline driver -------------------------------------


@pytest.mark.docker
def test_real_containers_list_and_inspect(containers: Any, docker_drivers: Any) -> None:
    tag = secrets.token_hex(4)
    name = f"lbl-parse-{tag}"
    labels = {"ofelia.enabled": "true", "ofelia.labels-test": tag, **EXEC,
              "ofelia.job-exec.backup.environment": '["A=1", "B=two words"]',
              "ofelia.job-local.local.schedule": "@daily", "ofelia.job-local.local.command": "true"}
    cid = containers.create(["sleep", "300"], name=name, labels=labels)
    containers.create(["sleep", "300"], name=f"{name}-off", labels={**labels, "ofelia.enabled": "false"})
    client = docker_drivers.docker_client
    listed = client.container_list(filters=engine_filters([f"ofelia.labels-test={tag}"]))
    assert [c["Id"] for c in listed] == [cid]
    for records in (listed, [client.container_inspect(cid)]):
        parsed = parse(*records)
        assert parsed.containers == [name]
        assert parsed.jobs["backup"].values == {"schedule": "@every 1m", "command": "echo hi", "container": name,
                                                "environment": ["A=1", "B=two words"]}
        assert "local" not in parsed.jobs
        assert [d.job for d in parsed.diagnostics] == ["local"]


@pytest.mark.docker
def test_only_running_containers_are_listed(containers: Any, docker_drivers: Any) -> None:
    tag = secrets.token_hex(4)
    labels = {"ofelia.enabled": "true", "ofelia.labels-test": tag, **EXEC}
    containers.create(["sleep", "300"], name=f"lbl-created-{tag}", labels=labels, start=False)
    filters = engine_filters([f"ofelia.labels-test={tag}"])
    assert docker_drivers.docker_client.container_list(filters=filters) == []
    assert len(docker_drivers.docker_client.container_list(filters=filters, all=True)) == 1
