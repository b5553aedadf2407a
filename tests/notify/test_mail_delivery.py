"""The mail notifier end to end: a real Daemon runs job-local jobs and mails their results
to a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from notify_support import Started, smtp_global
from ofelia_hookspecs.types import Notice
from polling import wait_for
from smtp_support import SilentServer, SmtpServer

pytestmark = [
    pytest.mark.slow,
    # aiosmtpd's warning for the plain-text AUTH server these tests run on purpose (loopback only).
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

HOST = socket.gethostname()
PASSWORD = "s3cr3t-Pa55-w0rd"

JOBS = """
[job-local "hello"]
schedule = @manual
command = sh -c "echo out-line; echo err-line >&2"

[job-local "broken"]
schedule = @manual
command = sh -c "echo oops >&2; exit 3"
"""


def test_a_run_is_mailed_with_ofelias_subject_and_its_output_and_json_attached(
    tmp_path: Path, smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    save = tmp_path / "saved"
    rig = daemon(smtp_global(server.port, save_folder=str(save)) + JOBS)
    run = rig.run("hello")
    [mail] = server.wait_messages(1)
    assert re.fullmatch(r"\[Execution successful\] Job hello finished in \d+(\.\d+)?(ms|µs|s)", mail.message["Subject"])
    assert mail.message["From"] == f"ofelia@{HOST}"
    assert mail.rcpt_tos == ["ops@example.com"]
    files = mail.attachments()
    assert set(files) == {f"hello_{run.id}.stdout.log", f"hello_{run.id}.stderr.log", f"hello_{run.id}.json"}
    assert files[f"hello_{run.id}.stdout.log"] == b"out-line\n"
    assert files[f"hello_{run.id}.stderr.log"] == b"err-line\n"
    # The JSON is the save middleware's document, byte for byte.
    [saved] = save.glob("*_hello.json")
    assert files[f"hello_{run.id}.json"] == saved.read_bytes()
    assert json.loads(files[f"hello_{run.id}.json"])["run"]["id"] == run.id
    assert "Job <b>hello</b>, Execution <b>successful</b>" in mail.body("html")
    assert 'command: <pre>sh -c &quot;echo out-line; echo err-line &gt;&amp;2&quot;</pre>' in mail.body("html")
    [record] = rig.wait_notifications(run.id)
    assert (record.notifier, record.state, record.attempts, record.error) == ("mail", "sent", 1, None)


def test_a_failed_run_says_failed_and_an_empty_stream_is_not_attached(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    rig = daemon(smtp_global(server.port) + JOBS)
    run = rig.run("broken")
    assert run.state == "failed"
    [mail] = server.wait_messages(1)
    assert mail.message["Subject"].startswith("[Execution failed] Job broken finished in ")
    assert set(mail.attachments()) == {f"broken_{run.id}.stderr.log", f"broken_{run.id}.json"}
    assert "Error: exit code 3" in mail.body()


def test_mail_only_on_error_mails_the_failed_run_only(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    rig = daemon(smtp_global(server.port, mail_only_on_error="true") + JOBS)
    ok = rig.run("hello")
    failed = rig.run("broken")
    # One worker sends in order: had the success been queued, it would arrive first.
    [mail] = server.wait_messages(1)
    assert "Job broken" in mail.message["Subject"]
    rig.wait_notifications(failed.id)
    assert rig.notifications(ok.id) == []
    rig.stop()  # drains the queue: nothing else was waiting
    assert len(server.messages) == 1


def test_a_job_with_its_own_mail_keys_replaces_the_global_ones_entirely(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    jobs = f"""
[job-local "inherits"]
schedule = @manual
command = true

[job-local "own"]
schedule = @manual
command = true
smtp-host = 127.0.0.1
smtp-port = {server.port}
email-to = dev@example.com, qa@example.com

[job-local "partial"]
schedule = @manual
command = true
mail-only-on-error = false
"""
    rig = daemon(smtp_global(server.port, mail_only_on_error="false") + jobs)
    inherits, own, partial = rig.run("inherits"), rig.run("own"), rig.run("partial")
    mails = server.wait_messages(2)
    by_job = {m.message["Subject"].split()[3]: m for m in mails}
    assert by_job["inherits"].rcpt_tos == ["ops@example.com"]
    assert sorted(by_job["own"].rcpt_tos) == ["dev@example.com", "qa@example.com"]
    # email-from is a global key too, and "own" replaced all of them: the default sender.
    assert by_job["own"].message["From"] == f"ofelia@{HOST}"
    rig.wait_notifications(inherits.id)
    rig.wait_notifications(own.id)
    rig.stop()
    # "partial" set a mail key of its own, so no global mail key applies to it: no smtp-host, no mail.
    assert len(server.messages) == 2
    assert rig.notifications(partial.id) == []


def test_login_with_the_right_password_over_plain_smtp_on_loopback(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp(auth=("robot", PASSWORD))
    rig = daemon(smtp_global(server.port, smtp_user="robot", smtp_password=PASSWORD) + JOBS)
    run = rig.run("hello")
    [mail] = server.wait_messages(1)
    assert mail.login == "robot"
    assert not mail.tls
    attached = mail.attachments()[f"hello_{run.id}.json"]
    assert PASSWORD.encode() not in attached
    assert "smtp-password" not in json.loads(attached)["job"]["config"]


def test_a_refused_login_leaves_the_run_a_success_and_is_recorded_and_logged_without_the_password(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started], log_lines: list[str]
) -> None:
    server = smtp(auth=("robot", "another-password"))
    rig = daemon(smtp_global(server.port, smtp_user="robot", smtp_password=PASSWORD, mail_retry_count="1") + JOBS)
    run = rig.run("hello")
    assert run.state == "success"
    [record] = rig.wait_notifications(run.id)
    assert (record.notifier, record.state, record.attempts) == ("mail", "failed", 2)
    assert record.error is not None and "535" in record.error
    assert server.authenticator is not None and server.authenticator.attempts >= 2  # smtplib tries PLAIN, LOGIN
    assert server.messages == []
    warning = [line for line in log_lines if line.startswith("WARNING") and "not delivered" in line]
    assert len(warning) == 1
    assert f'[Job "hello" ({run.id})]' in warning[0] and "'mail'" in warning[0]
    assert not [line for line in log_lines if PASSWORD in line]
    assert rig.history.get(run.id).state == "success"  # type: ignore[union-attr]


def test_refused_recipients_are_a_failed_delivery(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp(refuse_rcpt=True)
    rig = daemon(smtp_global(server.port, mail_retry_count="0") + JOBS)
    run = rig.run("hello")
    [record] = rig.wait_notifications(run.id)
    assert (record.state, record.attempts) == ("failed", 1)
    assert record.error is not None and "550" in record.error


def test_starttls_with_login_when_the_server_offers_it(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp(tls="starttls", require_tls=True, auth=("robot", PASSWORD))
    rig = daemon(smtp_global(server.port, smtp_user="robot", smtp_password=PASSWORD,
                             smtp_tls_skip_verify="true") + JOBS)
    rig.run("hello")
    [mail] = server.wait_messages(1)
    assert mail.tls and mail.login == "robot"


def test_the_certificate_is_verified_unless_skip_verify_is_set(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp(tls="starttls", require_tls=True)
    rig = daemon(smtp_global(server.port, mail_retry_count="0") + JOBS)
    run = rig.run("hello")
    [record] = rig.wait_notifications(run.id)
    assert record.state == "failed"
    assert record.error is not None and "CERTIFICATE_VERIFY_FAILED" in record.error
    assert server.messages == []


def test_implicit_tls(smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]) -> None:
    server = smtp(tls="implicit")
    rig = daemon(smtp_global(server.port, smtp_tls="implicit", smtp_tls_skip_verify="true") + JOBS)
    rig.run("hello")
    [mail] = server.wait_messages(1)
    assert mail.tls


def test_smtp_tls_starttls_fails_against_a_server_without_it(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    rig = daemon(smtp_global(server.port, smtp_tls="starttls", mail_retry_count="0") + JOBS)
    run = rig.run("hello")
    [record] = rig.wait_notifications(run.id)
    assert record.state == "failed" and "does not offer STARTTLS" in (record.error or "")
    assert server.messages == []


def test_a_hung_server_never_holds_up_the_schedule_and_a_full_queue_drops_with_a_record(
    daemon: Callable[[str], Started], silent_server: SilentServer, log_lines: list[str]
) -> None:
    # (daemon before silent_server: the server closes first at teardown, so the drain is quick.)
    jobs = '[job-local "tick"]\nschedule = @every 1s\ncommand = true\n'
    rig = daemon(smtp_global(silent_server.port, smtp_timeout="30s", notify_queue_size="1",
                             mail_retry_count="0") + jobs)
    # The worker is stuck on the first mail (the server never answers) and the queue holds one
    # more: runs keep coming at their schedule and the rest are dropped, each recorded.
    assert wait_for(lambda: len(rig.history.recent("tick", 50)) >= 4, 30)
    runs = rig.history.recent("tick", 50)
    assert all(run.state in ("success", "running") for run in runs)
    records = rig.history.notifications(run.id for run in runs)
    dropped = [r for rs in records.values() for r in rs if r.state == "dropped"]
    assert dropped and all("queue is full" in (r.error or "") for r in dropped)
    assert any("dropped" in line and line.startswith("WARNING") and '[Job "tick"' in line and "'mail'" in line
               for line in log_lines)


def test_cooldown_suppresses_and_the_next_mail_says_how_many(
    smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    rig = daemon(smtp_global(server.port, notify_cooldown="4s") + JOBS)
    first = rig.run("hello")
    second, third = rig.run("hello"), rig.run("hello")
    server.wait_messages(1)
    assert [r.state for r in rig.wait_notifications(second.id)] == ["suppressed"]
    assert [r.state for r in rig.wait_notifications(third.id)] == ["suppressed"]
    assert [r.state for r in rig.wait_notifications(first.id)] == ["sent"]
    # Another job has its own cooldown.
    rig.run("broken")
    server.wait_messages(2)
    assert wait_for(lambda: (rig.daemon.clock.time() - (first.ended_at or 0)) > 4.5, 10)
    fourth = rig.run("hello")
    mails = server.wait_messages(3)
    assert "2 earlier notification(s) of this job were suppressed" in mails[-1].body()
    assert [r.state for r in rig.wait_notifications(fourth.id)] == ["sent"]


def test_mails_to_one_server_share_a_connection_and_a_closed_one_is_replaced(tmp_path: Path) -> None:
    from ofelia_core.notifiers import mail

    server = SmtpServer(tmp_path, auth=("robot", "s3cret"))
    settings = mail.MailSettings(host="127.0.0.1", port=server.port, to=("ops@example.com",), sender="ofelia@%",
                                 user="robot", password="s3cret", tls="none", timeout=10.0)
    notifier = mail.MailNotifier(settings)
    for run_id in ("aaaaaaaaaaa1", "aaaaaaaaaaa2", "aaaaaaaaaaa3"):
        notifier.send(unit_notice(run_id))
    assert [m.message["Subject"] for m in server.wait_messages(3)] == [
        "[Execution failed] Job nightly finished in 2s"] * 3
    assert server.recorder.ehlos == 1 and {m.login for m in server.messages} == {"robot"}  # one login too

    # The server goes away and comes back on the same port: the kept connection is dead, and the
    # next mail goes over a new one rather than failing.
    port = server.port
    server.stop()  # its handler ends the kept connection
    again = SmtpServer(tmp_path, auth=("robot", "s3cret"), port=port)
    try:
        notifier.send(unit_notice("aaaaaaaaaaa4"))
        [resent] = again.wait_messages(1)
        assert resent.message["Subject"] == "[Execution failed] Job nightly finished in 2s"
        assert again.recorder.ehlos == 1
    finally:
        mail._sessions.close_all()
        again.stop()


def unit_notice(run_id: str) -> Notice:
    return Notice(job_name="nightly", job_type="job-local", run_id=run_id, state="failed", trigger="schedule",
                  attempt=1, scheduled_at=None, started_at=10.0, ended_at=12.0, exit_code=1, error="exit code 1",
                  stdout=b"out", stderr=b"", document={"run": {"id": run_id}}, hostname="box")
