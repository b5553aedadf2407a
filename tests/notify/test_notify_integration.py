"""Notifications through the real daemon's other faces: the web API's run history and
effective config, validation, the plugin loading path, retried runs, and history retention."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from notify_support import Started, smtp_global
from smtp_support import SmtpServer

from ofelia_core.config.loader import load_config
from ofelia_core.jobs import build_jobs
from ofelia_core.plugins import OfeliaHooks, build_plugin_manager
from ofelia_core.runs import Run, RunState
from ofelia_core.runtime import LoadedConfig, load_and_validate, secret_keys
from ofelia_core.web.app import build_app
from ofelia_core.web.settings import WebSettings

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

PASSWORD = "s3cr3t-Pa55-w0rd"
JOB = '[job-local "hello"]\nschedule = @manual\ncommand = echo hi\n'


def client_for(rig: Started) -> TestClient:
    assert rig.daemon.runtime is not None
    settings = WebSettings.from_values(rig.daemon.runtime.global_values, cli_enable=True)
    return TestClient(build_app(rig.daemon, settings))


@pytest.mark.slow
def test_the_run_history_api_lists_each_runs_notifications(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    rig = daemon(smtp_global(server.port, notify_cooldown="1h") + JOB)
    first, second = rig.run("hello"), rig.run("hello")
    rig.wait_notifications(first.id)
    rig.wait_notifications(second.id)
    response = client_for(rig).get("/api/jobs/hello/history")
    assert response.status_code == 200
    runs = {run["id"]: run for run in response.json()["runs"]}
    [sent] = runs[first.id]["notifications"]
    assert (sent["notifier"], sent["state"], sent["attempts"], sent["error"]) == ("mail", "sent", 1, None)
    [suppressed] = runs[second.id]["notifications"]
    assert (suppressed["notifier"], suppressed["state"], suppressed["attempts"]) == ("mail", "suppressed", 0)


def test_the_effective_config_redacts_the_smtp_password(daemon: Callable[[str], Started]) -> None:
    rig = daemon(smtp_global(2525, smtp_user="robot", smtp_password=PASSWORD)
                 + JOB + f"smtp-host = 127.0.0.1\nemail-to = a@example.com\nsmtp-password = {PASSWORD}\n")
    text = client_for(rig).get("/api/config").text
    assert PASSWORD not in text
    data = json.loads(text)
    assert data["global"]["smtp-password"] == "<redacted>"
    assert data["jobs"]["hello"]["options"]["smtp-password"] == "<redacted>"


def test_each_job_gets_its_notifiers_once_per_config_and_again_after_a_reload(
    tmp_path: Path, daemon: Callable[[str], Started]
) -> None:
    rig = daemon(smtp_global(2525) + JOB)
    runtime = rig.daemon.runtime
    assert runtime is not None
    [mail] = runtime.notifications.notifiers_of("hello")
    assert mail.name == "mail"
    assert runtime.notifications.notifiers_of("hello") == (mail,)  # the same object: built once, kept
    config = tmp_path / "ofelia0.ini"
    config.write_text(JOB)  # no mail keys left
    assert rig.daemon.reload("test")
    assert runtime.notifications.notifiers_of("hello") == ()


def test_a_run_that_will_be_retried_sends_nothing_and_its_last_attempt_sends(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    rig = daemon(smtp_global(server.port) + JOB)
    runtime = rig.daemon.runtime
    assert runtime is not None
    job = rig.daemon.jobs["hello"]
    attempt = Run("hello", "job-local", state=RunState.FAILED, started_at=1.0, ended_at=2.0, error="exit code 1")
    attempt.will_retry = True
    runtime.history.record(attempt, history_limit=0)
    runtime.notifications.ofelia_observe_run_end(job, attempt)
    last = Run("hello", "job-local", state=RunState.FAILED, started_at=3.0, ended_at=4.0, attempt=2)
    runtime.history.record(last, history_limit=0)
    runtime.notifications.ofelia_observe_run_end(job, last)
    [mail] = server.wait_messages(1)
    assert last.id in str(mail.attachments())
    rig.stop()
    assert len(server.messages) == 1
    assert rig.notifications(attempt.id) == []


def test_records_go_with_their_runs_when_history_limit_prunes_them(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    rig = daemon(smtp_global(server.port) + JOB + "history-limit = 1\n")
    first = rig.run("hello")
    rig.wait_notifications(first.id)
    second = rig.run("hello")
    rig.wait_notifications(second.id)
    assert rig.history.get(first.id) is None
    assert rig.notifications(first.id) == []  # pruned with its run
    # A late record for a run already pruned is not kept either.
    assert not rig.history.record_notification(run_id=first.id, job_name="hello", notifier="mail",
                                               state="sent", attempts=1, error=None, at=0.0)
    assert rig.notifications(first.id) == []


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.ini"
    path.write_text(text)
    return str(path)


def diagnostics(tmp_path: Path, text: str) -> list[str]:
    loaded = load_and_validate(write_config(tmp_path, text), {})
    return [str(d) for d in loaded.diagnostics]


def test_validation_accepts_the_mail_keys_everywhere_and_checks_their_kinds(tmp_path: Path) -> None:
    good = smtp_global(25, smtp_tls="starttls", smtp_timeout="10s", notify_cooldown="5m", notify_queue_size="10")
    assert diagnostics(tmp_path, good + JOB) == []
    own = "smtp-host = mail.example.com\nemail-to = a@example.com\nsmtp-tls = implicit\nmail-retry-delay = 1m\n"
    assert diagnostics(tmp_path, good + JOB + own) == []
    found = "\n".join(diagnostics(tmp_path, good + JOB + "smtp-tls = ssl\nsmtp-port = many\n"))
    assert "key 'smtp-tls': must be one of auto, none, starttls, implicit" in found
    assert "key 'smtp-port': expected a whole number" in found
    assert "key 'notify-cooldown'" in "\n".join(diagnostics(tmp_path, "[global]\nnotify-cooldown = 5\n" + JOB))


def test_validation_warns_when_mail_keys_are_set_but_nothing_can_be_sent(tmp_path: Path) -> None:
    found = diagnostics(tmp_path, "[global]\nemail-to = ops@example.com\nmail-only-on-error = true\n" + JOB)
    [warning] = [d for d in found if "mail:" in d]
    assert warning.startswith("warning:") and "smtp-host not: no mail is sent" in warning
    # A job's own mail key replaces every global one: say so when that leaves it without mail.
    found = diagnostics(tmp_path, smtp_global(25) + JOB + "mail-only-on-error = true\n")
    [warning] = [d for d in found if "mail" in d]
    assert 'job "hello"' in warning and "replaces" in warning
    # An explicitly empty key is the way to turn mail off for one job: no warning.
    assert diagnostics(tmp_path, smtp_global(25) + JOB + "email-to =\n") == []


def test_a_bad_port_is_an_error_naming_the_notifier(tmp_path: Path) -> None:
    found = diagnostics(tmp_path, smtp_global(70000) + JOB)
    assert any(d.startswith("error:") and "mail: smtp-port must be between 1 and 65535" in d for d in found)


def test_without_entry_points_there_are_no_notifiers_and_mail_keys_still_validate(tmp_path: Path) -> None:
    hooks = OfeliaHooks(build_plugin_manager(load_entrypoints=False))
    assert hooks.notifiers() == {}
    loaded = load_and_validate(write_config(tmp_path, smtp_global(25) + JOB), {}, hooks=hooks)
    assert loaded.errors == []  # Ofelia's keys are core keys; only smtp-tls & co. need the plugin
    assert "smtp-password" in secret_keys(hooks)


def test_the_mail_plugin_is_loaded_from_its_entry_point_and_can_be_disabled(tmp_path: Path) -> None:
    hooks = OfeliaHooks(build_plugin_manager())
    assert "mail" in hooks.notifiers()
    assert "mail" in hooks.plugin_names()
    blocked = OfeliaHooks(build_plugin_manager(disabled=["mail"]))
    assert "mail" not in blocked.notifiers()


def test_notifier_settings_follow_the_jobs_typed_options(tmp_path: Path) -> None:
    config, _ = load_config([write_config(tmp_path, smtp_global(2525, smtp_timeout="2s") + JOB)], env={})
    hooks = OfeliaHooks(build_plugin_manager())
    jobs = build_jobs(config, hooks.job_types(), hooks.config_keys())
    loaded = LoadedConfig(config, [], hooks)
    assert jobs["hello"].options["smtp-port"] == 25  # the mail spec's default, not from [global]
    assert loaded.config.global_.values["smtp-timeout"] == "2s"
