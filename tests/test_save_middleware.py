"""The save middleware: files per run, only-on-error, job vs global config, no secrets, retention."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from ofelia_hookspecs.types import ConfigKeys

from ofelia_core.config.model import Location, Section
from ofelia_core.jobs import Job, build_job
from ofelia_core.jobtypes import GLOBAL_KEYS, JOB_KEYS, JOB_TYPES
from ofelia_core.middlewares.save import SaveMiddleware, safe_name
from ofelia_core.runs import Run, RunState

SECRET_KEYS = frozenset(k.name for k in (*JOB_KEYS, *GLOBAL_KEYS) if k.secret)
START = time.mktime((2024, 3, 5, 14, 7, 9, 0, 0, -1))  # local time, as the file names are
STAMP = "20240305_140709"


def make_job(name: str = "backup", kind: str = "job-exec", **values: Any) -> Job:
    """A Job as the daemon builds it; ``job.explicit`` holds exactly the keys given here."""
    section = Section(kind, name, Location("test.ini"))
    section.values.update({"schedule": "@every 1m", "container": "db", "command": "pg_dump", **values})
    spec = next(t for t in JOB_TYPES if t.name == kind)
    return build_job(section, spec, [ConfigKeys("job", JOB_KEYS)])


def make_run(job: Job, state: RunState = RunState.SUCCESS, at: float = START, **changes: Any) -> Run:
    run = Run(job_name=job.name, job_type=job.type, started_at=at, ended_at=at + 2, state=state)
    run.exit_code = 0 if state == RunState.SUCCESS else 1
    run.stdout, run.stderr = b"dump ok\n", b"warning: x\n"
    for key, value in changes.items():
        setattr(run, key, value)
    return run


def saved(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    yield messages
    logger.remove(sink)


def test_writes_the_three_files_named_like_ofelia(tmp_path: Path) -> None:
    folder = tmp_path / "logs"  # created on first save
    job = make_job()
    run = make_run(job, RunState.FAILED, error="exit code 1")
    SaveMiddleware({"save-folder": str(folder)}, SECRET_KEYS).ofelia_observe_run_end(job, run)
    base = folder / f"{STAMP}_backup"
    assert saved(folder) == [f"{STAMP}_backup.json", f"{STAMP}_backup.stderr.log", f"{STAMP}_backup.stdout.log"]
    assert Path(f"{base}.stdout.log").read_bytes() == b"dump ok\n"
    assert Path(f"{base}.stderr.log").read_bytes() == b"warning: x\n"
    document = json.loads(Path(f"{base}.json").read_text())
    assert document["run"] == json.loads(json.dumps(run.summary()))
    assert document["job"]["name"] == "backup" and document["job"]["type"] == "job-exec"
    assert document["job"]["config"]["container"] == "db"
    assert document["job"]["config"]["command"] == "pg_dump"


def test_a_second_run_in_the_same_second_does_not_overwrite_the_first(tmp_path: Path) -> None:
    job = make_job()
    middleware = SaveMiddleware({"save-folder": str(tmp_path)}, SECRET_KEYS)
    first, second = make_run(job, stdout=b"first"), make_run(job, stdout=b"second")
    middleware.ofelia_observe_run_end(job, first)
    middleware.ofelia_observe_run_end(job, second)
    assert (tmp_path / f"{STAMP}_backup.stdout.log").read_bytes() == b"first"
    assert (tmp_path / f"{STAMP}_backup.{second.id}.stdout.log").read_bytes() == b"second"
    assert json.loads((tmp_path / f"{STAMP}_backup.{second.id}.json").read_text())["run"]["id"] == second.id
    assert len(saved(tmp_path)) == 6


def test_a_run_that_never_started_is_named_after_its_scheduled_time(tmp_path: Path) -> None:
    job = make_job()
    run = Run(job_name=job.name, job_type=job.type, scheduled_at=START, state=RunState.SKIPPED)
    SaveMiddleware({"save-folder": str(tmp_path)}, SECRET_KEYS).ofelia_observe_run_end(job, run)
    assert f"{STAMP}_backup.json" in saved(tmp_path)


@pytest.mark.parametrize(
    ("state", "kept"),
    [
        (RunState.SUCCESS, False),
        (RunState.SKIPPED, False),
        (RunState.MISSED, False),
        (RunState.FAILED, True),
        (RunState.TIMED_OUT, True),
        (RunState.CANCELLED, True),
    ],
)
def test_only_on_error_saves_failed_timed_out_and_cancelled_runs(tmp_path: Path, state: RunState, kept: bool) -> None:
    job = make_job()
    middleware = SaveMiddleware({"save-folder": str(tmp_path), "save-only-on-error": "true"}, SECRET_KEYS)
    middleware.ofelia_observe_run_end(job, make_run(job, state))
    assert bool(saved(tmp_path)) is kept


def test_without_only_on_error_every_final_state_is_saved(tmp_path: Path) -> None:
    job = make_job()
    middleware = SaveMiddleware({"save-folder": str(tmp_path)}, SECRET_KEYS)
    for index, state in enumerate((RunState.SUCCESS, RunState.SKIPPED, RunState.MISSED)):
        middleware.ofelia_observe_run_end(job, make_run(job, state, at=START + index))
    assert len([name for name in saved(tmp_path) if name.endswith(".json")]) == 3


def test_a_job_with_its_own_save_folder_uses_only_its_own_config(tmp_path: Path) -> None:
    global_folder, job_folder = tmp_path / "global", tmp_path / "job"
    job = make_job(**{"save-folder": str(job_folder)})
    middleware = SaveMiddleware({"save-folder": str(global_folder), "save-only-on-error": True}, SECRET_KEYS)
    # The global only-on-error does not apply either: the job's config replaces the global one.
    middleware.ofelia_observe_run_end(job, make_run(job, RunState.SUCCESS))
    assert len(saved(job_folder)) == 3
    assert not global_folder.exists()


def test_a_job_setting_any_save_key_drops_the_global_folder(tmp_path: Path) -> None:
    job = make_job(**{"save-only-on-error": "false"})
    middleware = SaveMiddleware({"save-folder": str(tmp_path / "global")}, SECRET_KEYS)
    middleware.ofelia_observe_run_end(job, make_run(job, RunState.FAILED))
    assert not (tmp_path / "global").exists()


def test_a_job_without_save_keys_uses_the_global_config(tmp_path: Path) -> None:
    job = make_job(**{"slack-only-on-error": "true"})
    SaveMiddleware({"save-folder": str(tmp_path)}, SECRET_KEYS).ofelia_observe_run_end(job, make_run(job))
    assert len(saved(tmp_path)) == 3


def test_no_secret_reaches_the_json(tmp_path: Path) -> None:
    secrets: dict[str, Any] = {
        "smtp-password": "hunter2-smtp",
        "slack-webhook": "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX",
        "webhooks": "ops-hook-name",
        "environment": ["DB_PASSWORD=pg-pass-123", "API_TOKEN=tok-456", "PLAIN=visible"],
    }
    job = make_job(**secrets, **{"smtp-user": "mailer"})
    SaveMiddleware({"save-folder": str(tmp_path)}, SECRET_KEYS).ofelia_observe_run_end(job, make_run(job))
    text = (tmp_path / f"{STAMP}_backup.json").read_text()
    for leaked in ("hunter2-smtp", "hooks.slack.com", "XXXXsecretXXXX", "ops-hook-name", "pg-pass-123", "tok-456"):
        assert leaked not in text
    config = json.loads(text)["job"]["config"]
    assert not {"smtp-password", "slack-webhook", "webhooks"} & set(config)
    assert config["smtp-user"] == "mailer"
    assert config["environment"] == ["DB_PASSWORD=<redacted>", "API_TOKEN=<redacted>", "PLAIN=visible"]


def test_keys_declared_secret_by_a_plugin_are_dropped_too(tmp_path: Path) -> None:
    job = make_job()
    middleware = SaveMiddleware({"save-folder": str(tmp_path)}, SECRET_KEYS | {"container"})
    middleware.ofelia_observe_run_end(job, make_run(job))
    assert "container" not in json.loads((tmp_path / f"{STAMP}_backup.json").read_text())["job"]["config"]


def test_retention_deletes_only_this_jobs_old_saved_files(tmp_path: Path) -> None:
    job = make_job()
    old = time.time() - 7200
    old_files = [
        "20200101_000000_backup.stdout.log",
        "20200101_000000_backup.stderr.log",
        "20200101_000000_backup.json",
        "20200101_000000_backup.0123456789ab.json",
    ]
    untouched = [
        "20200101_000000_backup-db.json",  # another job
        "20200101_000000_backup.daily.json",  # another job, with a dot
        "20200101_000000_backup.json.bak",  # not a name the middleware writes
        "notes_backup.json",
        "backup.json",
    ]
    for name in old_files + untouched:
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (old, old))
    recent_name = "20240101_000000_backup.json"
    (tmp_path / recent_name).write_text("x")
    os.utime(tmp_path / recent_name, (time.time() - 60, time.time() - 60))
    middleware = SaveMiddleware({"save-folder": str(tmp_path), "save-retention": "1h"}, SECRET_KEYS)
    middleware.ofelia_observe_run_end(job, make_run(job))
    assert saved(tmp_path) == sorted(
        [*untouched, recent_name, f"{STAMP}_backup.json", f"{STAMP}_backup.stderr.log", f"{STAMP}_backup.stdout.log"]
    )


def test_retention_also_runs_after_a_run_that_was_not_saved(tmp_path: Path) -> None:
    job = make_job()
    old_file = tmp_path / "20200101_000000_backup.json"
    old_file.write_text("x")
    os.utime(old_file, (0, 0))
    values = {"save-folder": str(tmp_path), "save-only-on-error": "true", "save-retention": "24h"}
    SaveMiddleware(values, SECRET_KEYS).ofelia_observe_run_end(job, make_run(job, RunState.SUCCESS))
    assert saved(tmp_path) == []


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    job = make_job()
    old_file = tmp_path / "20200101_000000_backup.json"
    old_file.write_text("x")
    os.utime(old_file, (0, 0))
    SaveMiddleware({"save-folder": str(tmp_path), "save-retention": "0"}, SECRET_KEYS).ofelia_observe_run_end(
        job, make_run(job)
    )
    assert old_file.exists()


def test_retention_lists_the_folder_at_most_once_a_minute_per_job(tmp_path: Path) -> None:
    clock = [time.time()]
    middleware = SaveMiddleware(
        {"save-folder": str(tmp_path), "save-retention": "1h"}, SECRET_KEYS, now=lambda: clock[0]
    )
    job = make_job()
    middleware.ofelia_observe_run_end(job, make_run(job))
    old_file = tmp_path / "20200101_000000_backup.json"
    old_file.write_text("x")
    os.utime(old_file, (0, 0))
    clock[0] += 30
    middleware.ofelia_observe_run_end(job, make_run(job, at=START + 1))
    assert old_file.exists()
    clock[0] += 31
    middleware.ofelia_observe_run_end(job, make_run(job, at=START + 2))
    assert not old_file.exists()


def test_a_slash_in_the_job_name_cannot_escape_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "saves"
    job = make_job("../../etc/cron")
    SaveMiddleware({"save-folder": str(folder)}, SECRET_KEYS).ofelia_observe_run_end(job, make_run(job))
    names = saved(folder)
    assert len(names) == 3
    assert all("/" not in name and name.startswith(f"{STAMP}_.._.._etc_cron~") for name in names)
    assert saved(tmp_path) == ["saves"]


def test_unsafe_names_stay_distinct_and_safe_names_are_unchanged() -> None:
    assert safe_name("backup-db_1.daily") == "backup-db_1.daily"
    assert safe_name("a/b") != safe_name("a_b") == "a_b"
    assert "/" not in safe_name("a/b")
    assert len(safe_name("x" * 500)) < 120


def test_an_unwritable_folder_is_logged_and_does_not_raise(
    tmp_path: Path, warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root ignores the mode: refuse the way the kernel would
        real_open = os.open

        def refuse(path: Any, *args: Any, **kwargs: Any) -> int:
            if Path(path).parent == folder:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    job = make_job()
    try:
        SaveMiddleware({"save-folder": str(folder)}, SECRET_KEYS).ofelia_observe_run_end(job, make_run(job))
    finally:
        folder.chmod(stat.S_IRWXU)
    assert saved(folder) == []
    assert any("cannot save the run" in message and "Permission denied" in message for message in warnings)


def test_a_folder_that_cannot_be_created_is_logged_and_does_not_raise(tmp_path: Path, warnings: list[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    job = make_job()
    run = make_run(job)
    SaveMiddleware({"save-folder": str(blocker / "sub")}, SECRET_KEYS).ofelia_observe_run_end(job, run)
    assert any("cannot save the run" in message and run.id in message for message in warnings)


def test_the_document_keeps_each_jobs_redacted_config_until_the_job_is_rebuilt() -> None:
    from types import SimpleNamespace

    from ofelia_core.middlewares.save import SaveMiddleware
    from ofelia_core.runs import Run

    middleware = SaveMiddleware({}, frozenset({"smtp-password"}))
    first = SimpleNamespace(name="j", type="job-local", options={"command": "a", "smtp-password": "pw"})
    run = Run(job_name="j", job_type="job-local")
    one, two = middleware.document(first, run), middleware.document(first, run)  # type: ignore[arg-type]
    assert one["job"]["config"] == {"command": "a"} == two["job"]["config"]
    one["job"]["config"]["command"] = "changed by a reader"  # each document has its own copy
    assert middleware.document(first, run)["job"]["config"] == {"command": "a"}  # type: ignore[arg-type]
    reloaded = SimpleNamespace(name="j", type="job-local", options={"command": "b"})
    assert middleware.document(reloaded, run)["job"]["config"] == {"command": "b"}  # type: ignore[arg-type]
