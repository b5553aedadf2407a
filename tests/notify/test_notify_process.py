"""The notification process (``notify-process``): sends made in a child Python process, its
answers, its log lines, its end, and the fall-back to the daemon's own thread. Real child
processes; the notifiers (process_notifiers.py) write their process id to a file."""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from notify_support import Started, smtp_global
from polling import wait_for
from process_notifiers import DaemonOnly, Hanging, Logging, PidFile, Unpicklable, lines
from smtp_support import SmtpServer
from test_notify_units import notice

from ofelia_core.notify.process import MESSAGE_BYTES, NotLoadable, RemoteFailure, SenderProcess
from ofelia_core.notify.queue import Delivery, describe
from ofelia_core.notify.service import Notifications
from ofelia_core.plugins import OfeliaHooks, build_plugin_manager


@pytest.fixture
def sender() -> Iterator[SenderProcess]:
    process = SenderProcess()
    yield process
    process.close()


def ended(pid: int) -> bool:
    """The process is gone (exited and reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def blob(notifier: object) -> bytes:
    return pickle.dumps(notifier, pickle.HIGHEST_PROTOCOL)


def test_sends_run_in_one_child_process_that_keeps_the_notifier(sender: SenderProcess, tmp_path: Path) -> None:
    path = tmp_path / "sent"
    notifier = blob(PidFile(path))
    sender.send(notifier, notice(run_id="r1"))
    sender.send(notifier, notice(run_id="r2"))
    child = sender.pid
    assert child is not None and child != os.getpid()
    # One child for both; the notifier unpickled once (its count goes on), not per send.
    assert lines(path) == [(child, "r1", 1), (child, "r2", 2)]


def test_a_failed_send_raises_with_the_childs_exception_text(sender: SenderProcess, tmp_path: Path) -> None:
    with pytest.raises(RemoteFailure) as caught:
        sender.send(blob(PidFile(tmp_path / "sent", fail="refused by https://hooks.example/TOKEN123")),
                    notice(run_id="r1"))
    assert str(caught.value) == "ConnectionError: refused by https://hooks.example/TOKEN123"
    # The delivery error reads as it does from the daemon's thread, secrets scrubbed.
    assert describe(caught.value, ["https://hooks.example/TOKEN123"]) == "ConnectionError: refused by <redacted>"
    sender.send(blob(PidFile(tmp_path / "after")), notice(run_id="r2"))  # the child serves on
    assert [run for _, run, _ in lines(tmp_path / "after")] == ["r2"]


def test_a_batch_is_one_exchange_with_an_outcome_per_item_in_order(sender: SenderProcess, tmp_path: Path) -> None:
    path = tmp_path / "sent"
    outcomes = sender.send_many([
        (blob(PidFile(path)), notice(run_id="r1")),
        (blob(PidFile(path, fail="boom")), notice(run_id="r2")),
        (blob(DaemonOnly(path)), notice(run_id="r3")),
        (blob(PidFile(path)), notice(run_id="r4")),
    ])
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], RemoteFailure) and str(outcomes[1]) == "ConnectionError: boom"
    assert isinstance(outcomes[2], NotLoadable)
    # Sent in the order given, by one child; the unloadable one was never called.
    assert [(pid, run) for pid, run, _ in lines(path)] == [(sender.pid, "r1"), (sender.pid, "r2"), (sender.pid, "r4")]


def test_a_batch_of_large_notices_is_split_into_messages_and_all_arrive(sender: SenderProcess, tmp_path: Path) -> None:
    path = tmp_path / "sent"
    output = b"x" * (3 * 1024 * 1024)  # four of them exceed one message (8 MB)
    items = [(blob(PidFile(path)), notice(run_id=f"r{i}", stdout=output)) for i in range(4)]
    assert sum(len(pickle.dumps(item)) for item in items) > MESSAGE_BYTES
    assert sender.send_many(items) == [None] * 4
    assert [run for _, run, _ in lines(path)] == ["r0", "r1", "r2", "r3"]


def test_messages_hold_at_most_the_limit_and_a_larger_part_goes_alone() -> None:
    from ofelia_core.notify.process import _chunks

    parts = [b"a" * 4, b"b" * 4, b"c" * 12, b"d" * 2, b"e" * 2]
    assert list(_chunks(parts, 10)) == [[b"a" * 4, b"b" * 4], [b"c" * 12], [b"d" * 2, b"e" * 2]]


def test_log_lines_of_the_child_reach_the_daemons_log(
    sender: SenderProcess, tmp_path: Path, log_lines: list[str]
) -> None:
    sender.send(blob(Logging(tmp_path / "sent")), notice(run_id="r1"))
    assert "WARNING loguru line from r1\n" in log_lines
    assert "ERROR stdlib line from r1\n" in log_lines


def hang_in_child(sender: SenderProcess, path: Path) -> tuple[threading.Thread, list[BaseException], int]:
    """A send that does not return, started on a thread: the thread, what it raises, the child's pid."""
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sender.send(blob(Hanging(path)), notice(run_id="r1"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    assert wait_for(lambda: lines(path))
    [(child, _, _)] = lines(path)
    return thread, errors, child


def test_the_child_forwards_from_the_daemons_log_level_up(
    tmp_path: Path, log_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ofelia_core import logs

    monkeypatch.setattr(logs, "current_level", "ERROR")  # as `--log-level error` sets it
    sender = SenderProcess()
    try:
        sender.send(blob(Logging(tmp_path / "sent")), notice(run_id="r1"))
    finally:
        sender.close()
    assert "ERROR stdlib line from r1\n" in log_lines
    assert not any("loguru line from r1" in line for line in log_lines)  # a WARNING: below the level


def test_a_child_killed_during_a_send_fails_that_send_and_the_next_starts_another(
    sender: SenderProcess, tmp_path: Path
) -> None:
    thread, errors, child = hang_in_child(sender, tmp_path / "hang")
    os.kill(child, signal.SIGKILL)
    thread.join(10)
    assert not thread.is_alive()
    assert [str(e) for e in errors] == ["the notification process ended during the send (exit status -9)"]
    sender.send(blob(PidFile(tmp_path / "sent")), notice(run_id="r2"))
    [(second, run, _)] = lines(tmp_path / "sent")
    assert run == "r2" and second not in (child, os.getpid())


def test_close_ends_a_send_in_flight_and_no_send_is_made_after(sender: SenderProcess, tmp_path: Path) -> None:
    thread, errors, child = hang_in_child(sender, tmp_path / "hang")
    sender.close()  # returns once the child has ended (the send held it for a minute)
    assert ended(child)
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], RemoteFailure)
    with pytest.raises(RemoteFailure, match="stopped"):
        sender.send(blob(PidFile(tmp_path / "sent")), notice(run_id="r2"))
    assert lines(tmp_path / "sent") == []


def test_an_idle_child_ends_by_itself_when_the_daemon_closes(sender: SenderProcess, tmp_path: Path) -> None:
    sender.send(blob(PidFile(tmp_path / "sent")), notice(run_id="r1"))
    process = sender._process
    assert process is not None
    sender.close()
    assert process.returncode == 0  # it read the end of the connection and exited; not killed


def test_the_child_ignores_ctrl_c_sent_to_the_process_group(sender: SenderProcess, tmp_path: Path) -> None:
    sender.send(blob(PidFile(tmp_path / "sent")), notice(run_id="r1"))
    child = sender.pid
    assert child is not None
    os.kill(child, signal.SIGINT)
    sender.send(blob(PidFile(tmp_path / "sent")), notice(run_id="r2"))
    assert [(pid, run) for pid, run, _ in lines(tmp_path / "sent")] == [(child, "r1"), (child, "r2")]


def test_a_notifier_the_child_cannot_load_is_not_loadable(sender: SenderProcess, tmp_path: Path) -> None:
    with pytest.raises(NotLoadable, match="ImportError: this notifier loads only in the daemon"):
        sender.send(blob(DaemonOnly(tmp_path / "sent")), notice(run_id="r1"))
    assert lines(tmp_path / "sent") == []


# --- through the notification core ----------------------------------------------------------------


@pytest.fixture
def notifications() -> Iterator[Notifications]:
    core = Notifications(OfeliaHooks(build_plugin_manager(load_entrypoints=False)), None, frozenset())
    core.start()
    yield core
    core.close()


def deliver(core: Notifications, notifier: PidFile, run_id: str) -> None:
    assert core.queue.put(Delivery(notifier, notice(run_id=run_id), (), core._pickled(notifier)))


def test_the_core_sends_a_picklable_notifier_from_the_child(notifications: Notifications, tmp_path: Path) -> None:
    deliver(notifications, PidFile(tmp_path / "sent"), "r1")
    assert wait_for(lambda: lines(tmp_path / "sent"))
    [(pid, _, _)] = lines(tmp_path / "sent")
    assert pid == notifications.process.pid and pid != os.getpid()


@pytest.mark.parametrize("kind", [Unpicklable, DaemonOnly])
def test_a_notifier_that_cannot_go_to_the_child_is_sent_from_the_daemon_and_said_once(
    kind: Callable[[Path], PidFile], notifications: Notifications, tmp_path: Path, log_lines: list[str]
) -> None:
    notifier = kind(tmp_path / "sent")
    deliver(notifications, notifier, "r1")
    deliver(notifications, notifier, "r2")
    assert wait_for(lambda: len(lines(tmp_path / "sent")) == 2)
    assert [(pid, run) for pid, run, _ in lines(tmp_path / "sent")] == [(os.getpid(), "r1"), (os.getpid(), "r2")]
    said = [line for line in log_lines if "sends from the daemon, not the notification process" in line]
    assert len(said) == 1 and said[0].startswith(f"INFO notifier '{notifier.name}'")


def test_shutdown_ends_the_child_and_reports_the_stuck_send_failed(tmp_path: Path, log_lines: list[str]) -> None:
    core = Notifications(OfeliaHooks(build_plugin_manager(load_entrypoints=False)), None, frozenset(),
                         drain_timeout=0.5)
    core.start()
    deliver(core, Hanging(tmp_path / "hang"), "r1")
    assert wait_for(lambda: lines(tmp_path / "hang"))
    [(child, _, _)] = lines(tmp_path / "hang")
    core.close()  # the drain time passes with the send stuck: the child is stopped, not waited a minute for
    assert any(line.startswith("WARNING ") and line.rstrip().endswith(
        "notifier 'pid-file': not delivered after 1 attempt(s): "
        "the notification process ended during the send (exit status -15)") for line in log_lines), log_lines
    assert ended(child)


@pytest.mark.parametrize("python", ["/bin/false", "/nonexistent/python3"])
def test_a_child_that_cannot_start_makes_every_notifier_send_from_the_daemon(
    python: str, tmp_path: Path, log_lines: list[str]
) -> None:
    core = Notifications(OfeliaHooks(build_plugin_manager(load_entrypoints=False)), None, frozenset())
    core.process = SenderProcess(python)
    core.start()
    try:
        deliver(core, PidFile(tmp_path / "sent"), "r1")
        deliver(core, PidFile(tmp_path / "sent", name="other"), "r2")
        assert wait_for(lambda: len(lines(tmp_path / "sent")) == 2)
    finally:
        core.close()
    assert [(pid, run) for pid, run, _ in lines(tmp_path / "sent")] == [(os.getpid(), "r1"), (os.getpid(), "r2")]
    said = [line for line in log_lines if "the notification process cannot start" in line]
    # One WARNING with the reason; the child is not tried again for the second notifier.
    assert len([line for line in said if line.startswith("WARNING ")]) == 1, said
    assert ("exit status 1" if python == "/bin/false" else "No such file") in said[0]


# --- through the daemon -------------------------------------------------------------------------------

JOB = """
[job-local "hello"]
schedule = @manual
command = echo hi
"""


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "in_child"), [("", True), ("notify-process = false\n", False)])
def test_the_daemon_mails_from_the_child_unless_notify_process_is_false(
    setting: str, in_child: bool, smtp: Callable[..., SmtpServer], daemon: Callable[[str], Started]
) -> None:
    server = smtp()
    rig = daemon(smtp_global(server.port) + setting + JOB)
    run = rig.run("hello")
    [mail] = server.wait_messages(1)
    assert "Job hello" in mail.message["Subject"]
    [record] = rig.wait_notifications(run.id)
    assert record.state == "sent"
    assert rig.daemon.runtime is not None
    child = rig.daemon.runtime.notifications.process.pid
    assert (child is not None and child != os.getpid()) is in_child
    rig.stop()
    if child is not None:
        assert ended(child)


# --- the core's own notifiers cross to the child ----------------------------------------------------


def test_every_notifier_the_core_ships_pickles_with_its_settings() -> None:
    from ofelia_hookspecs.types import NotifierContext

    from ofelia_core.notifiers import mail, slack, webhook
    from ofelia_core.notifiers.webhook.presets import PRESETS

    sections = {name: {"preset": name, "url": f"http://127.0.0.1:9/{name}", "id": "abc", "secret": "s3cret"}
                for name in PRESETS}
    sections["templated"] = {"preset": "json-post", "url": "http://127.0.0.1:9/t",
                             "template": '{"text": "{job} {status}"}'}
    context = NotifierContext(webhooks=sections, global_settings={}, hostname="box")
    built = [
        *mail.build({"smtp-host": "127.0.0.1", "email-to": "ops@example.com", "smtp-password": "pw"}, context),
        *slack.build({"slack-webhook": "http://127.0.0.1:9/slack"}, context),
        *webhook.build({"webhooks": ", ".join(sections)}, context),
    ]
    assert len(built) == 2 + len(PRESETS) + 1
    for notifier in built:
        copy = pickle.loads(blob(notifier))
        assert type(copy) is type(notifier) and copy.name == notifier.name
        assert vars(copy) == vars(notifier)  # settings, destination and policy alike
    # Presets hold functions made at import: they travel by name and are the child's own table's.
    hooks = [n for n in built if isinstance(n, webhook.WebhookNotifier)]
    assert all(pickle.loads(blob(n)).config.preset is PRESETS[n.config.preset.name] for n in hooks)
