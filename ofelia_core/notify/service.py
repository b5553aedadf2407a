"""Notifications for a runtime: each job's notifiers (built once per config), the observer
that turns a finished run into deliveries, and the delivery records."""

from __future__ import annotations

import dataclasses
import pickle
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loguru import logger
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import Notice, Notifier, NotifierContext

from ..config.values import to_bool, to_duration, to_int
from ..history import NotificationRecord
from ..middlewares.save import SaveMiddleware
from .cooldown import Cooldown
from .keys import DEFAULT_QUEUE_SIZE, DEFAULT_QUIET
from .notice import build_notice
from .process import NotLoadable, SenderProcess
from .queue import Delivery, DeliveryQueue, Outcome, Report, log_prefix, scrub, send_each
from .records import RecordWriter
from .settings import own_values, resolve, secret_values

if TYPE_CHECKING:
    from ..config.model import Config
    from ..history import HistoryStore
    from ..jobs import Job
    from ..plugins import OfeliaHooks
    from ..runs import Run

#: Seconds the worker may keep sending at shutdown before what is left is recorded as not delivered.
DRAIN_TIMEOUT = 10.0


@dataclass(frozen=True)
class Bound:
    """One notifier of one job, with its settings' secret values (scrubbed from errors)."""

    notifier: Notifier
    secrets: tuple[str, ...]
    #: The notifier pickled for the notification process; None: sent from the daemon.
    blob: bytes | None = None


@dataclass(frozen=True)
class JobNotifiers:
    bound: tuple[Bound, ...]
    #: The run states any of them may want; None: ask them for every run (one has no ``states``).
    states: frozenset[str] | None


def wanted_states(bound: Sequence[Bound]) -> frozenset[str] | None:
    found: set[str] = set()
    for item in bound:
        states = getattr(item.notifier, "states", None)
        if states is None:
            return None
        found.update(states)
    return frozenset(found)


class Notifications:
    """Registered as a plugin (``ofelia_observe_run_start`` and ``_end``); thread-safe."""

    PLUGIN_NAME = "ofelia_core.notify"

    def __init__(
        self,
        hooks: OfeliaHooks,
        history: HistoryStore | None,
        secret_keys: frozenset[str],
        *,
        hostname: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        self.hooks = hooks
        self.history = history
        self.hostname = hostname or socket.gethostname()
        self.drain_timeout = drain_timeout
        # The save middleware's JSON, secrets left out: one document for files and notices.
        self.documents = SaveMiddleware({}, secret_keys)
        self.cooldown = Cooldown(clock=clock)
        self.queue = DeliveryQueue(self._delivered, max_size=DEFAULT_QUEUE_SIZE, send=self._send, clock=clock)
        #: Writes the records made on runs' threads (drops, suppressions) off those threads.
        self.records = RecordWriter(self._store)
        self.drops = DropLog(clock=clock)
        self.process = SenderProcess()
        #: ``records``: the delivery worker's records of the batch it is sending.
        self._worker = threading.local()
        self._by_job: dict[str, JobNotifiers] = {}
        #: Notifiers told to be sent from the daemon (not picklable, or not loadable in the child).
        self._here: set[str] = set()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.records.start()
        self.queue.start()

    def close(self) -> None:
        """Drain the queue for at most ``drain_timeout`` seconds, then end the notification process."""
        self.queue.close(self.drain_timeout, interrupt=self.process.close)
        self.process.close()
        self.records.close()

    def configure(self, config: Config, jobs: Mapping[str, Job]) -> None:
        """Build every job's notifiers for this config (at start and after each reload)."""
        values = config.global_.values
        self.queue.max_size = _setting(values, "notify-queue-size", DEFAULT_QUEUE_SIZE, to_int)
        self.cooldown.period = _setting(values, "notify-cooldown", 0.0, to_duration)
        self.queue.quiet_period = _setting(values, "notify-quiet", to_duration(DEFAULT_QUIET), to_duration)
        in_process = _setting(values, "notify-process", True, to_bool)
        self._here = set()
        # Jobs sharing the global settings pickle alike: one bytes object for all of them.
        blobs: dict[bytes, bytes] = {}

        def pickled(notifier: Notifier) -> bytes | None:
            blob = self._pickled(notifier) if in_process else None
            return None if blob is None else blobs.setdefault(blob, blob)
        specs = self.hooks.notifiers()
        context = NotifierContext(
            webhooks={name: dict(section.values) for name, section in config.webhooks.items()},
            global_settings=dict(values),
            hostname=self.hostname,
        )
        by_job: dict[str, JobNotifiers] = {}
        for job in jobs.values():
            bound: list[Bound] = []
            for spec in specs.values():
                secrets: tuple[str, ...] = ()
                try:
                    settings = resolve(spec, own_values(spec, job.options, job.explicit), values)
                    secrets = secret_values(spec, settings)
                    bound.extend(Bound(notifier, secrets, pickled(notifier))
                                 for notifier in spec.build(settings, context))
                except Exception as exc:  # one job's bad settings must not stop the others' notifiers
                    logger.warning(f'job "{job.name}": notifier \'{spec.name}\' is not set up: '
                                   f"{scrub(str(exc), secrets)}")
            if bound:
                by_job[job.name] = JobNotifiers(tuple(bound), wanted_states(bound))
        self._by_job = by_job  # swapped whole: runs ending meanwhile see the old map or the new

    def notifiers_of(self, job_name: str) -> tuple[Notifier, ...]:
        found = self._by_job.get(job_name)
        return tuple(bound.notifier for bound in found.bound) if found else ()

    # --- runs ---------------------------------------------------------------------------

    @hookimpl
    def ofelia_observe_run_start(self, job: Job, run: Run) -> None:
        self.queue.note_activity()

    @hookimpl
    def ofelia_observe_run_end(self, job: Job, run: Run) -> None:
        self.queue.note_activity()
        found = self._by_job.get(job.name)
        # A run that will be retried sends nothing: its last attempt does.
        if found is None or getattr(run, "will_retry", False):
            return
        if found.states is not None and str(run.state) not in found.states:
            return  # no notifier of the job sends this state: no notice is built (most runs, on-error)
        notice = build_notice(job, run, self.documents, self.hostname)
        for item in found.bound:
            self._offer(item, notice)

    def _offer(self, item: Bound, notice: Notice) -> None:
        notifier = item.notifier
        try:
            if not notifier.wants(notice):
                return  # most runs of most jobs: nothing more is made for them
        except Exception as exc:
            prefix = log_prefix(notice, notifier.name)
            logger.warning(f"{prefix}: wants() failed, not notified: {scrub(str(exc), item.secrets)}")
            return
        prefix = log_prefix(notice, notifier.name)

        def enqueue(suppressed: int) -> bool:
            sent = dataclasses.replace(notice, suppressed=suppressed) if suppressed else notice
            return self.queue.put(Delivery(notifier, sent, item.secrets, item.blob))

        outcome = self.cooldown.admit(notice.job_name, notifier.name, enqueue)
        if outcome == "suppressed":
            logger.debug(f"{prefix}: suppressed by notify-cooldown")
            self._record(notice, notifier.name, "suppressed", 0, None)
        elif outcome == "dropped":
            error = f"the notification queue is full ({self.queue.max_size}, notify-queue-size)"
            # A full queue drops every run's notice: one WARNING per notifier every 10 s says so
            # (a line per drop cost the runs' threads as much as the drops' records).
            if self.drops.should_log(notifier.name):
                logger.warning(f"{prefix}: dropped: {error}{self.drops.since_last(notifier.name)}")
            self._record(notice, notifier.name, "dropped", 0, error)

    # --- sending ------------------------------------------------------------------------

    def _pickled(self, notifier: Notifier) -> bytes | None:
        try:
            return pickle.dumps(notifier, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            self._send_here(notifier.name, f"it cannot be pickled ({type(exc).__name__}: {exc})")
            return None

    def _send(self, batch: Sequence[Delivery], report: Report) -> None:
        """One attempt of each: in the notification process (one exchange) for the notifiers
        that can go there, then the others on this thread. Their records are written together
        after (one commit), the batch's records being kept on this thread meanwhile."""
        self._worker.records = []
        try:
            self._send_batch(batch, report)
        finally:
            records, self._worker.records = self._worker.records, None
            self._store(records)

    def _send_batch(self, batch: Sequence[Delivery], report: Report) -> None:
        remote: list[Delivery] = []
        here: list[Delivery] = []
        for delivery in batch:  # one pass: a reload may reset ``_here`` meanwhile
            in_child = delivery.blob is not None and delivery.notifier.name not in self._here
            (remote if in_child else here).append(delivery)
        if remote:
            try:
                outcomes = self.process.send_many([(d.blob, d.notice) for d in remote if d.blob is not None])
            except NotLoadable as exc:  # no child can be started
                outcomes = [exc] * len(remote)
            for delivery, outcome in zip(remote, outcomes, strict=True):
                if isinstance(outcome, NotLoadable):
                    self._send_here(delivery.notifier.name, str(outcome))
                    here.append(delivery)
                else:
                    report(delivery, outcome)
        send_each(here, report)

    def _send_here(self, name: str, why: str) -> None:
        if name not in self._here:
            self._here.add(name)
            logger.info(f"notifier '{name}' sends from the daemon, not the notification process: {why}")

    def _delivered(self, delivery: Delivery, outcome: Outcome, error: str | None) -> None:
        if outcome == "sent":
            logger.debug(f"{delivery.prefix}: sent (attempt {delivery.attempts})")
        elif outcome == "failed":
            logger.warning(f"{delivery.prefix}: not delivered after {delivery.attempts} attempt(s): {error}")
        else:
            logger.warning(f"{delivery.prefix}: dropped: {error}")
        self._record(delivery.notice, delivery.notifier.name, outcome, delivery.attempts, error)

    def _record(self, notice: Notice, notifier: str, state: str, attempts: int, error: str | None) -> None:
        if self.history is None:
            return
        record = NotificationRecord(notice.run_id, notice.job_name, notifier, state, attempts, error, time.time())
        batch: list[NotificationRecord] | None = getattr(self._worker, "records", None)
        if batch is not None:
            batch.append(record)  # written with the rest of the worker's batch
        else:
            self.records.add(record)

    def _store(self, records: Sequence[NotificationRecord]) -> None:
        if self.history is None or not records:
            return
        try:
            self.history.record_notifications(records)
        except Exception as exc:  # a closed or broken history loses the records, never the run
            runs = ", ".join(sorted({f'"{r.job_name}" ({r.run_id})' for r in records}))
            logger.warning(f"cannot record {len(records)} notification(s) of {runs}: {exc}")


class DropLog:
    """Says when a drop is worth a WARNING: a notifier's first, then at most one every
    :attr:`interval` seconds with the count since (a full queue drops every run's notice)."""

    def __init__(self, *, clock: Callable[[], float], interval: float = 10.0) -> None:
        self.clock = clock
        self.interval = interval
        self._lock = threading.Lock()
        #: notifier -> (when its last WARNING was written, drops not logged since)
        self._state: dict[str, tuple[float, int]] = {}

    def should_log(self, notifier: str) -> bool:
        now = self.clock()
        with self._lock:
            last, quiet = self._state.get(notifier, (None, 0))
            if last is not None and now - last < self.interval:
                self._state[notifier] = (last, quiet + 1)
                return False
            self._state[notifier] = (now, quiet)
            return True

    def since_last(self, notifier: str) -> str:
        """The text for the drops not logged since the previous WARNING (then counted from zero)."""
        with self._lock:
            last, quiet = self._state.get(notifier, (0.0, 0))
            self._state[notifier] = (last, 0)
        return f" ({quiet} more dropped since the previous warning)" if quiet else ""


def _setting(values: Mapping[str, Any], key: str, default: Any, convert: Callable[[Any], Any]) -> Any:
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    try:
        return convert(raw)
    except ValueError:  # validation reported it
        return default
