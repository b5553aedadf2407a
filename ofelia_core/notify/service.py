"""Notifications for a runtime: each job's notifiers (built once per config), the observer
that turns a finished run into deliveries, and the delivery records."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loguru import logger
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import Notice, Notifier, NotifierContext

from ..config.values import to_duration, to_int
from ..middlewares.save import SaveMiddleware
from .cooldown import Cooldown
from .keys import DEFAULT_QUEUE_SIZE
from .notice import build_notice
from .queue import Delivery, DeliveryQueue, Outcome, scrub
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


class Notifications:
    """Registered as a plugin (``ofelia_observe_run_end``); thread-safe."""

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
        self.queue = DeliveryQueue(self._delivered, max_size=DEFAULT_QUEUE_SIZE, clock=clock)
        self.drops = DropLog(clock=clock)
        self._by_job: dict[str, tuple[Bound, ...]] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.queue.start()

    def close(self) -> None:
        """Drain the queue for at most ``drain_timeout`` seconds."""
        self.queue.close(self.drain_timeout)

    def configure(self, config: Config, jobs: Mapping[str, Job]) -> None:
        """Build every job's notifiers for this config (at start and after each reload)."""
        values = config.global_.values
        self.queue.max_size = _setting(values, "notify-queue-size", DEFAULT_QUEUE_SIZE, to_int)
        self.cooldown.period = _setting(values, "notify-cooldown", 0.0, to_duration)
        specs = self.hooks.notifiers()
        context = NotifierContext(
            webhooks={name: dict(section.values) for name, section in config.webhooks.items()},
            global_settings=dict(values),
            hostname=self.hostname,
        )
        by_job: dict[str, tuple[Bound, ...]] = {}
        for job in jobs.values():
            bound: list[Bound] = []
            for spec in specs.values():
                secrets: tuple[str, ...] = ()
                try:
                    settings = resolve(spec, own_values(spec, job.options, job.explicit), values)
                    secrets = secret_values(spec, settings)
                    bound.extend(Bound(notifier, secrets) for notifier in spec.build(settings, context))
                except Exception as exc:  # one job's bad settings must not stop the others' notifiers
                    logger.warning(f'job "{job.name}": notifier \'{spec.name}\' is not set up: '
                                   f"{scrub(str(exc), secrets)}")
            if bound:
                by_job[job.name] = tuple(bound)
        self._by_job = by_job  # swapped whole: runs ending meanwhile see the old map or the new

    def notifiers_of(self, job_name: str) -> tuple[Notifier, ...]:
        return tuple(bound.notifier for bound in self._by_job.get(job_name, ()))

    # --- runs ---------------------------------------------------------------------------

    @hookimpl
    def ofelia_observe_run_end(self, job: Job, run: Run) -> None:
        bound = self._by_job.get(job.name)
        # A run that will be retried sends nothing: its last attempt does.
        if not bound or getattr(run, "will_retry", False):
            return
        notice = build_notice(job, run, self.documents, self.hostname)
        for item in bound:
            self._offer(item, notice)

    def _offer(self, item: Bound, notice: Notice) -> None:
        notifier = item.notifier
        prefix = f'[Job "{notice.job_name}" ({notice.run_id})] notifier \'{notifier.name}\''
        try:
            if not notifier.wants(notice):
                return
        except Exception as exc:
            logger.warning(f"{prefix}: wants() failed, not notified: {scrub(str(exc), item.secrets)}")
            return

        def enqueue(suppressed: int) -> bool:
            sent = dataclasses.replace(notice, suppressed=suppressed) if suppressed else notice
            return self.queue.put(Delivery(notifier, sent, item.secrets))

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
        try:
            self.history.record_notification(
                run_id=notice.run_id, job_name=notice.job_name, notifier=notifier,
                state=state, attempts=attempts, error=error, at=time.time(),
            )
        except Exception as exc:  # a closed or broken history loses the record, never the run
            logger.warning(f'[Job "{notice.job_name}" ({notice.run_id})] cannot record the notification: {exc}')


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
