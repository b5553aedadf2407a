"""Validation of job references: unknown names and loops are errors that spell the chain
out and name the file, line, job and key; label jobs are checked together with the files."""

from __future__ import annotations

from pathlib import Path

from ofelia_core import jobtypes
from ofelia_core.config.loader import load_config
from ofelia_core.config.model import Diagnostic, Location, Section
from ofelia_core.config.validate import soften_unknown_references, validate_config
from ofelia_core.labels.merge import merge_labels
from ofelia_core.labels.parse import LabelConfig

JOB_TYPES = {spec.name: spec for spec in jobtypes.ofelia_register_job_types()}
EXTRA = jobtypes.ofelia_add_config_keys()


def check(tmp_path: Path, text: str) -> list[Diagnostic]:
    path = tmp_path / "c.ini"
    path.write_text(text)
    config, diagnostics = load_config([str(path)], env={})
    assert diagnostics == []
    return validate_config(config, JOB_TYPES, EXTRA, strict=False)


def job(name: str, **keys: str) -> str:
    extra = "".join(f"{k.replace('_', '-')} = {v}\n" for k, v in keys.items())
    return f'[job-local "{name}"]\nschedule = @daily\ncommand = true\n{extra}'


def test_trigger_loop_is_an_error_spelling_the_chain(tmp_path: Path) -> None:
    text = job("a", on_success="b") + job("b", on_failure="c") + job("c", on_success="a")
    [found] = check(tmp_path, text)
    assert (found.level, found.job, found.key) == ("error", "a", "on-success")
    assert found.location == Location(str(tmp_path / "c.ini"), 4)
    assert "a -> b -> c -> a" in found.message
    assert "(a on-success b, b on-failure c, c on-success a)" in found.message
    assert str(found).startswith(f"error: {tmp_path / 'c.ini'}:4: job \"a\": key 'on-success':")


def test_on_failure_loop_is_refused_too(tmp_path: Path) -> None:
    # While both keep failing, each would start the other for ever.
    [found] = check(tmp_path, job("a", on_failure="b") + job("b", on_failure="a"))
    assert found.level == "error" and "a -> b -> a" in found.message and "max-retries" in found.message


def test_chains_without_a_loop_and_mixed_with_depends_on_are_fine(tmp_path: Path) -> None:
    text = (job("a", on_success="b, c", on_failure="d") + job("b", on_success="c")
            + job("c", depends_on="a") + job("d"))
    assert check(tmp_path, text) == []


def test_depends_on_cycle_is_still_an_error(tmp_path: Path) -> None:
    [found] = check(tmp_path, job("a", depends_on="b") + job("b", depends_on="a"))
    assert (found.level, found.key) == ("error", "depends-on") and "a -> b -> a" in found.message


def test_unknown_job_names_are_errors_naming_the_place(tmp_path: Path) -> None:
    found = check(tmp_path, job("a", depends_on="report", on_success="repot") + job("report"))
    assert [(d.level, d.job, d.key, d.location.line, d.suggestion) for d in found] == [
        ("error", "a", "on-success", 5, "report")
    ]
    assert found[0].message == "no job named 'repot'; jobs: a, report"


def test_unknown_names_are_warnings_when_labels_may_define_them(tmp_path: Path) -> None:
    text = "[global]\ndocker = true\n" + job("a", on_failure="from-labels")
    [found] = check(tmp_path, text)
    assert found.level == "warning" and "Docker labels" in found.message
    # The daemon's --docker softens the same errors for the files alone.
    [error] = check(tmp_path, job("a", on_failure="from-labels"))
    assert [d.level for d in soften_unknown_references([error])] == ["warning"]


def test_retry_on_takes_known_outcomes(tmp_path: Path) -> None:
    assert check(tmp_path, job("a", retry_on="failed, timed-out")) == []
    [found] = check(tmp_path, job("a", retry_on="failed, timeot"))
    assert (found.level, found.key, found.suggestion) == ("error", "retry-on", "timed-out")


def label_job(name: str, **keys: str) -> Section:
    location = Location(f"labels ofelia.job-exec.{name}.* on container 'app'")
    section = Section("job-exec", name, location)
    for key, value in {"schedule": "@daily", "container": "app", "command": "true", **keys}.items():
        key = key.replace("_", "-")
        section.set(key, value, Location(f"label ofelia.job-exec.{name}.{key} on container 'app'"))
    return section


def test_label_and_file_jobs_reference_each_other_and_a_loop_drops_the_label_job(tmp_path: Path) -> None:
    path = tmp_path / "c.ini"
    path.write_text(job("nightly", on_success="report"))
    files, _ = load_config([str(path)], env={})
    labels = LabelConfig(jobs={"report": label_job("report", depends_on="nightly")})
    merged = merge_labels(files, labels, JOB_TYPES, EXTRA, strict=False)
    assert sorted(merged.config.jobs) == ["nightly", "report"] and merged.diagnostics == []

    # A label job closing a trigger loop through a file job is rejected, never the file's job.
    labels = LabelConfig(jobs={"report": label_job("report", on_failure="nightly")})
    merged = merge_labels(files, labels, JOB_TYPES, EXTRA, strict=False)
    assert sorted(merged.config.jobs) == ["nightly"] and merged.rejected == ["report"]
    [found] = [d for d in merged.diagnostics if d.level == "error"]
    assert found.job == "report" and "nightly -> report -> nightly" in found.message
    assert found.location.source == "label ofelia.job-exec.report.on-failure on container 'app'"

    # And a label job naming a job that exists nowhere is rejected with the name.
    labels = LabelConfig(jobs={"report": label_job("report", depends_on="nope")})
    merged = merge_labels(files, labels, JOB_TYPES, EXTRA, strict=False)
    assert merged.rejected == ["report"]
    assert any("no job named 'nope'" in d.message for d in merged.diagnostics)
