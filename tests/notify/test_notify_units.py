"""The pieces of notifications on their own: Ofelia's override rule, the cooldown, the delivery
queue and its worker, the mail message, and the history's delivery records."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from ofelia_hookspecs.types import KeySpec, Notice, NotifierSpec
from polling import wait_for

from ofelia_core.history import SCHEMA_VERSION, HistoryStore
from ofelia_core.notifiers import mail
from ofelia_core.notify.cooldown import Cooldown
from ofelia_core.notify.queue import BATCH, Delivery, DeliveryQueue, Outcome, Report, scrub
from ofelia_core.notify.settings import own_values, resolve, secret_values
from ofelia_core.runs import Run, RunState

SPEC = NotifierSpec(
    "demo",
    (KeySpec("demo-url", secret=True), KeySpec("demo-only-on-error", "bool", False),
     KeySpec("demo-delay", "duration", "5s"), KeySpec("demo-to", "list")),
    build=lambda settings, context: [],
)


def notice(job: str = "job", run_id: str = "0123456789ab", state: str = "success", **extra: Any) -> Notice:
    values: dict[str, Any] = dict(
        job_name=job, job_type="job-local", run_id=run_id, state=state, trigger="schedule", attempt=1,
        scheduled_at=None, started_at=100.0, ended_at=101.5, exit_code=0, error=None, stdout=b"out\n",
        stderr=b"", document={"run": {"id": run_id}, "job": {"name": job, "config": {"command": "echo <hi>"}}},
        hostname="box",
    )
    values.update(extra)
    return Notice(**values)


# --- Ofelia's rule ---------------------------------------------------------------------------


def test_a_job_without_its_own_keys_takes_the_global_values_typed() -> None:
    settings = resolve(SPEC, {}, {"demo-url": "http://g", "demo-only-on-error": "true", "demo-delay": "1m"})
    assert settings == {"demo-url": "http://g", "demo-only-on-error": True, "demo-delay": 60.0, "demo-to": None}


def test_one_key_of_the_jobs_own_replaces_every_global_value_of_that_notifier() -> None:
    global_values = {"demo-url": "http://g", "demo-only-on-error": "true", "demo-to": "a@x"}
    settings = resolve(SPEC, {"demo-only-on-error": False}, global_values)
    assert settings == {"demo-url": None, "demo-only-on-error": False, "demo-delay": 5.0, "demo-to": None}


def test_own_values_are_the_keys_the_section_names_not_its_defaults() -> None:
    options = {"demo-url": None, "demo-only-on-error": False, "demo-delay": 5.0, "schedule": "@daily"}
    assert own_values(SPEC, options, explicit={"schedule"}) == {}
    assert own_values(SPEC, options, explicit={"schedule", "demo-delay"}) == {"demo-delay": 5.0}
    assert own_values(SPEC, {"demo-url": "x", "other": 1}) == {"demo-url": "x"}


def test_a_value_of_the_wrong_kind_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        resolve(SPEC, {}, {"demo-delay": "soon"})


def test_secret_values_are_collected_for_scrubbing() -> None:
    assert secret_values(SPEC, {"demo-url": "http://hook/T0KEN", "demo-to": ["a"]}) == ("http://hook/T0KEN",)
    assert scrub("POST http://hook/T0KEN failed", ["http://hook/T0KEN", ""]) == "POST <redacted> failed"


# --- cooldown ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cooldown_suppresses_within_the_period_and_reports_the_count_after_it() -> None:
    clock = Clock()
    cooldown = Cooldown(60.0, clock=clock)
    queued: list[int] = []

    def enqueue(count: int) -> bool:
        queued.append(count)
        return True

    assert cooldown.admit("a", "mail", enqueue) == "queued"
    clock.now += 30
    assert cooldown.admit("a", "mail", enqueue) == "suppressed"
    assert cooldown.admit("a", "mail", enqueue) == "suppressed"
    assert cooldown.admit("a", "slack", enqueue) == "queued"  # per notifier
    assert cooldown.admit("b", "mail", enqueue) == "queued"  # per job
    clock.now += 31
    assert cooldown.admit("a", "mail", enqueue) == "queued"
    assert queued == [0, 0, 0, 2]


def test_a_dropped_notice_neither_starts_the_period_nor_loses_the_count() -> None:
    clock = Clock()
    cooldown = Cooldown(60.0, clock=clock)
    assert cooldown.admit("a", "mail", lambda n: True) == "queued"
    clock.now += 10
    assert cooldown.admit("a", "mail", lambda n: True) == "suppressed"
    clock.now += 60
    assert cooldown.admit("a", "mail", lambda n: False) == "dropped"
    counts: list[int] = []
    assert cooldown.admit("a", "mail", lambda n: counts.append(n) or True) == "queued"
    assert counts == [1]


def test_a_zero_cooldown_sends_everything() -> None:
    cooldown = Cooldown(0.0, clock=Clock())
    assert [cooldown.admit("a", "mail", lambda n: True) for _ in range(3)] == ["queued"] * 3


# --- the delivery queue ----------------------------------------------------------------------------


class Destination:
    """A notifier that records what it is given; ``fail`` times raises first; ``gate`` holds a send."""

    def __init__(self, name: str, *, fail: int = 0, retry_count: int = 0, retry_delay: float = 0.0,
                 gate: threading.Event | None = None) -> None:
        self.name, self.retry_count, self.retry_delay = name, retry_count, retry_delay
        self.fail, self.gate = fail, gate
        self.sent: list[tuple[str, float]] = []
        self.calls = 0

    def wants(self, notice: Notice) -> bool:
        return True

    def send(self, notice: Notice) -> None:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.calls <= self.fail:
            raise ConnectionError(f"refused by https://hooks.example/SECRET-{self.name}")
        self.sent.append((notice.run_id, time.monotonic()))


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Outcome, int, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, delivery: Delivery, outcome: Outcome, error: str | None) -> None:
        with self.lock:
            self.seen.append((delivery.notifier.name, delivery.notice.run_id, outcome, delivery.attempts, error))

    def of(self, name: str) -> list[tuple[str, str, Outcome, int, str | None]]:
        with self.lock:
            return [item for item in self.seen if item[0] == name]


def test_a_full_queue_refuses_at_once_and_the_rest_is_sent_in_order() -> None:
    gate = threading.Event()
    outcomes = Outcomes()
    queue = DeliveryQueue(outcomes, max_size=2)
    queue.start()
    slow = Destination("slow", gate=gate)
    try:
        assert queue.put(Delivery(slow, notice(run_id="r1")))
        assert wait_for(lambda: slow.calls == 1)  # the worker holds r1 in send
        assert queue.put(Delivery(slow, notice(run_id="r2")))
        assert queue.put(Delivery(slow, notice(run_id="r3")))
        # Refused while the worker is still held in send (the gate opens only below): put never waits.
        assert not queue.put(Delivery(slow, notice(run_id="r4")))
    finally:
        gate.set()
        queue.close(10)
    assert [run for run, _ in slow.sent] == ["r1", "r2", "r3"]
    assert [o[2] for o in outcomes.seen] == ["sent"] * 3


def test_a_failing_send_is_retried_later_without_holding_up_the_others() -> None:
    outcomes = Outcomes()
    queue = DeliveryQueue(outcomes)
    queue.start()
    flaky = Destination("flaky", fail=2, retry_count=3, retry_delay=0.3)
    fine = Destination("fine")
    try:
        queue.put(Delivery(flaky, notice(run_id="f1"), secrets=("https://hooks.example/SECRET-flaky",)))
        queue.put(Delivery(fine, notice(run_id="ok1")))
        assert wait_for(lambda: len(outcomes.seen) == 2)
    finally:
        queue.close(5)
    assert outcomes.of("flaky") == [("flaky", "f1", "sent", 3, None)]
    assert outcomes.of("fine") == [("fine", "ok1", "sent", 1, None)]
    # The other destination went out while the flaky one waited for its retry.
    assert fine.sent[0][1] < flaky.sent[0][1]


def test_retries_run_out_into_a_failure_with_the_secret_scrubbed() -> None:
    outcomes = Outcomes()
    queue = DeliveryQueue(outcomes)
    queue.start()
    broken = Destination("broken", fail=10, retry_count=1, retry_delay=0.05)
    queue.put(Delivery(broken, notice(), secrets=("https://hooks.example/SECRET-broken",)))
    assert wait_for(lambda: len(outcomes.seen) == 1)
    queue.close(5)
    [(_, _, outcome, attempts, error)] = outcomes.seen
    assert (outcome, attempts) == ("failed", 2)
    assert error == "ConnectionError: refused by <redacted>"


def test_close_drains_what_is_queued_and_reports_what_it_cannot_send_in_time() -> None:
    outcomes = Outcomes()
    queue = DeliveryQueue(outcomes)
    fine = Destination("fine")
    later = Destination("later", fail=1, retry_count=1, retry_delay=60)
    queue.put(Delivery(fine, notice(run_id="a")))
    queue.put(Delivery(later, notice(run_id="b")))
    queue.put(Delivery(fine, notice(run_id="c")))
    queue.start()
    queue.close(2)  # the retry of "b" is due after the deadline: not waited for
    assert [run for run, _ in fine.sent] == ["a", "c"]
    [(_, _, outcome, attempts, error)] = outcomes.of("later")
    assert (outcome, attempts) == ("failed", 1)
    assert error is not None and "the daemon stopped" in error
    assert not queue.put(Delivery(fine, notice(run_id="d")))  # closed


def test_close_gives_up_on_a_stuck_send_records_it_failed_and_the_rest_dropped() -> None:
    gate = threading.Event()
    outcomes = Outcomes()
    queue = DeliveryQueue(outcomes)
    stuck = Destination("stuck", gate=gate)
    queue.start()
    queue.put(Delivery(stuck, notice(run_id="held")))
    assert wait_for(lambda: stuck.calls == 1)
    queue.put(Delivery(stuck, notice(run_id="waiting")))
    queue.close(0.2)  # returns with the send still stuck (the gate opens only below): not waited for
    assert outcomes.seen == [
        ("stuck", "held", "failed", 1, "the send had not finished when the daemon stopped"),
        ("stuck", "waiting", "dropped", 0, "not delivered: the daemon stopped first"),
    ]
    gate.set()
    # The send that ends after all is not recorded a second time.
    assert wait_for(lambda: stuck.sent)
    assert len(outcomes.seen) == 2


def keep_busy(queue: DeliveryQueue, stop: threading.Event) -> threading.Thread:
    """Notes run activity every 20 ms until ``stop``, as a stream of runs would."""

    def loop() -> None:
        while not stop.wait(0.02):
            queue.note_activity()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def quiet_queue(period: float, max_wait: float) -> tuple[DeliveryQueue, Outcomes]:
    """A started queue with ``notify-quiet`` = ``period`` and the given most a delivery waits."""
    outcomes = Outcomes()
    queue = DeliveryQueue(outcomes)
    queue.quiet_period, queue.quiet_max_wait = period, max_wait
    queue.start()
    return queue, outcomes


def test_deliveries_wait_for_a_pause_in_runs() -> None:
    queue, outcomes = quiet_queue(0.5, 60.0)
    stop = threading.Event()
    queue.note_activity()  # a run has just ended
    busy = keep_busy(queue, stop)
    try:
        queue.put(Delivery(Destination("d"), notice(run_id="r1")))
        # Held while runs go on: still queued after the quiet period has passed several times.
        assert not wait_for(lambda: outcomes.seen, timeout=1.5)
        assert queue.pending() == 1
        stop.set()
        busy.join()
        assert wait_for(lambda: outcomes.seen)  # the pause came: sent
    finally:
        stop.set()
        queue.close(5)
    assert [o[2] for o in outcomes.seen] == ["sent"]


def test_a_delivery_waits_for_a_pause_at_most_quiet_max_wait() -> None:
    queue, outcomes = quiet_queue(60.0, 0.2)
    stop = threading.Event()
    keep_busy(queue, stop)
    try:
        queue.put(Delivery(Destination("d"), notice(run_id="r1")))
        assert wait_for(lambda: outcomes.seen)  # sent with runs still going on
        assert not stop.is_set()
    finally:
        stop.set()
        queue.close(5)


def test_shutdown_drains_without_waiting_for_a_pause() -> None:
    queue, outcomes = quiet_queue(60.0, 60.0)
    queue.note_activity()
    queue.put(Delivery(Destination("d"), notice(run_id="r1")))
    queue.close(30)  # the drain sends at once; it would wait a minute for a pause otherwise
    assert [o[2] for o in outcomes.seen] == ["sent"]


def test_drop_records_made_on_a_runs_thread_are_written_by_the_record_writer(tmp_path: Path) -> None:
    from ofelia_core.notify.service import Bound, Notifications
    from ofelia_core.plugins import OfeliaHooks, build_plugin_manager

    writers: list[str] = []

    class Store(HistoryStore):  # the real store, noting which thread writes delivery records
        def record_notifications(self, records: Sequence[Any]) -> int:
            writers.append(threading.current_thread().name)
            return super().record_notifications(records)

    with Store(tmp_path / "history.db") as store:
        run = Run("j", "job-local", state=RunState.FAILED, started_at=1.0, ended_at=2.0)
        store.record(run, history_limit=0)
        core = Notifications(OfeliaHooks(build_plugin_manager(load_entrypoints=False)), store, frozenset())
        core.start()
        try:
            core.queue.max_size = 0  # every notice is dropped
            core._offer(Bound(Destination("d"), ()), notice(job="j", run_id=run.id, state="failed"))
            assert wait_for(lambda: store.notifications([run.id]).get(run.id))
        finally:
            core.close()
        [record] = store.notifications([run.id])[run.id]
        assert (record.notifier, record.state) == ("d", "dropped")
        assert writers == [core.records.name]  # not this (the run's) thread


def test_the_record_writer_writes_what_is_pending_at_close_then_on_the_callers_thread() -> None:
    from ofelia_core.history import NotificationRecord
    from ofelia_core.notify.records import RecordWriter

    stored: list[tuple[str, list[str]]] = []
    gate = threading.Event()

    def store(records: Sequence[NotificationRecord]) -> None:
        gate.wait(10)  # the writer is held in its first write
        stored.append((threading.current_thread().name, [r.run_id for r in records]))

    writer = RecordWriter(store)
    writer.start()
    record = NotificationRecord("r1", "j", "mail", "dropped", 0, "full", 1.0)
    writer.add(record)
    writer.add(dataclasses.replace(record, run_id="r2"))
    gate.set()
    writer.close()
    writer.add(dataclasses.replace(record, run_id="r3"))  # closed: written at once, here
    me = threading.current_thread().name
    assert [run for _, runs in stored for run in runs] == ["r1", "r2", "r3"]
    assert stored[-1] == (me, ["r3"]) and all(name == writer.name for name, _ in stored[:-1])


def test_the_worker_hands_what_is_ready_to_the_sender_in_batches_of_at_most_batch() -> None:
    sizes: list[int] = []

    def sender(batch: Sequence[Delivery], report: Report) -> None:
        sizes.append(len(batch))
        for delivery in batch:
            report(delivery, None if delivery.notice.run_id != "r3" else ConnectionError("refused"))

    outcomes = Outcomes()
    queue = DeliveryQueue(outcomes, send=sender)
    for i in range(BATCH + 8):
        queue.put(Delivery(Destination("d"), notice(run_id=f"r{i}")))
    queue.start()
    queue.close(5)
    assert sizes == [BATCH, 8]
    assert [(run, outcome) for _, run, outcome, _, _ in outcomes.seen] == [
        (f"r{i}", "failed" if i == 3 else "sent") for i in range(BATCH + 8)
    ]


def test_a_sender_that_raises_fails_every_delivery_it_did_not_report() -> None:
    def sender(batch: Sequence[Delivery], report: Report) -> None:
        report(batch[0], None)
        raise RuntimeError("the sender broke")

    outcomes = Outcomes()
    queue = DeliveryQueue(outcomes, send=sender)
    for run_id in ("a", "b", "c"):
        queue.put(Delivery(Destination("d"), notice(run_id=run_id)))
    queue.start()
    queue.close(5)
    assert [(run, outcome, error) for _, run, outcome, _, error in outcomes.seen] == [
        ("a", "sent", None), ("b", "failed", "RuntimeError: the sender broke"),
        ("c", "failed", "RuntimeError: the sender broke"),
    ]


# --- the mail message ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "word"), [
    ("success", "successful"), ("failed", "failed"), ("timed_out", "failed"), ("cancelled", "failed"),
    ("skipped", "skipped"), ("missed", "skipped"),
])
def test_subject_uses_ofelias_status_words_and_go_durations(state: str, word: str) -> None:
    assert mail.subject(notice(state=state)) == f"[Execution {word}] Job job finished in 1.5s"


def test_sender_puts_the_host_name_for_a_percent() -> None:
    assert mail.sender("ofelia@%", "box") == "ofelia@box"
    assert mail.sender("ofelia@%s", "box") == "ofelia@box"  # Ofelia's Sprintf form
    assert mail.sender("cron@example.com", "box") == "cron@example.com"
    assert mail.sender("", "box") == "ofelia@box"


def test_the_message_has_the_body_attachments_and_suppressed_count() -> None:
    settings = mail.MailSettings(host="h", port=25, to=("a@x", "b@x"), sender="ofelia@%")
    import email
    from email import policy

    # As a mail client reads it: the flattened bytes parsed with the standard policy.
    message = email.message_from_bytes(mail.compose(notice(job="a/b", suppressed=3), settings).as_bytes(),
                                       policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message["To"] == "a@x, b@x" and message["From"] == "ofelia@box"
    names = [part.get_filename() for part in message.iter_attachments()]
    assert names == ["a_b_0123456789ab.stdout.log", "a_b_0123456789ab.json"]
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()  # type: ignore[attr-defined]
    assert "command: <pre>echo &lt;hi&gt;</pre>" in html
    assert "3 earlier notification(s) of this job were suppressed" in html


def test_a_job_name_beyond_ascii_reaches_the_subject_and_the_file_names_intact() -> None:
    import email
    from email import policy

    settings = mail.MailSettings(host="h", port=25, to=("a@x",), sender="ofelia@%")
    sent = mail.compose(notice(job="café-ünï"), settings).as_bytes()
    assert sent.isascii()  # 7-bit on the wire: headers RFC 2047, bodies base64
    message = email.message_from_bytes(sent, policy=policy.default)
    assert message["Subject"] == "[Execution successful] Job café-ünï finished in 1.5s"
    assert [part.get_filename() for part in message.iter_attachments()][-1] == "café-ünï_0123456789ab.json"


def test_mail_settings_need_host_and_recipients() -> None:
    base: Mapping[str, Any] = {"smtp-host": "mail.example.com", "email-to": ["a@x, b@x", "c@x"], "smtp-port": 587}
    settings = mail.settings_from(base)
    assert settings is not None and settings.to == ("a@x", "b@x", "c@x") and settings.port == 587
    assert mail.settings_from({**base, "smtp-host": ""}) is None
    assert mail.settings_from({**base, "email-to": [""]}) is None
    with pytest.raises(ValueError, match="smtp-port"):
        mail.settings_from({**base, "smtp-port": 0})


def test_mail_only_on_error_wants_failures_only() -> None:
    only = mail.MailNotifier(mail.MailSettings(host="h", port=25, to=("a",), sender="", only_on_error=True))
    assert only.wants(notice(state="failed")) and only.wants(notice(state="timed_out"))
    assert not only.wants(notice(state="success")) and not only.wants(notice(state="skipped"))
    every = mail.MailNotifier(mail.MailSettings(host="h", port=25, to=("a",), sender=""))
    assert every.wants(notice(state="success"))


# --- delivery records ----------------------------------------------------------------------------------


def test_an_older_database_gains_the_notifications_table(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    HistoryStore(path).close()
    con = sqlite3.connect(path)
    con.executescript("DROP TRIGGER runs_delete_notifications; DROP TABLE notifications; PRAGMA user_version = 2;")
    con.close()
    with HistoryStore(path) as store:
        run = Run("j", "job-local", state=RunState.SUCCESS, started_at=1.0, ended_at=2.0)
        store.record(run, history_limit=0)
        assert store.record_notification(run_id=run.id, job_name="j", notifier="mail", state="sent", attempts=1,
                                         error=None, at=3.0)
        [record] = store.notifications([run.id])[run.id]
        assert (record.notifier, record.state, record.attempts, record.at) == ("mail", "sent", 1, 3.0)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_records_of_a_batch_are_stored_together_except_those_whose_run_is_gone(tmp_path: Path) -> None:
    from ofelia_core.history import NotificationRecord

    with HistoryStore(tmp_path / "history.db") as store:
        runs = [Run("j", "job-local", state=RunState.FAILED, started_at=1.0, ended_at=2.0) for _ in range(3)]
        for run in runs:
            store.record(run, history_limit=0)
        records = [NotificationRecord(run.id, "j", name, "sent", 1, None, 3.0)
                   for run in runs for name in ("mail", "slack")]
        records.append(NotificationRecord("gone00000000", "j", "mail", "failed", 2, "boom", 3.0))
        assert store.record_notifications(records) == 6
        stored = store.notifications([run.id for run in runs] + ["gone00000000"])
        assert {run_id: [r.notifier for r in found] for run_id, found in stored.items()} == {
            run.id: ["mail", "slack"] for run in runs
        }


def test_drops_are_logged_once_then_at_most_every_interval_with_the_count_between() -> None:
    from ofelia_core.notify.service import DropLog

    now = [100.0]
    drops = DropLog(clock=lambda: now[0], interval=10.0)
    assert drops.should_log("mail") and drops.since_last("mail") == ""
    for _ in range(5):
        now[0] += 1.0
        assert not drops.should_log("mail")
    assert drops.should_log("slack")  # each notifier on its own
    now[0] += 5.0  # 10 s after mail's first line
    assert drops.should_log("mail")
    assert drops.since_last("mail") == " (5 more dropped since the previous warning)"
    now[0] += 1.0
    assert not drops.should_log("mail")
    now[0] += 10.0
    assert drops.should_log("mail") and drops.since_last("mail") == " (1 more dropped since the previous warning)"
