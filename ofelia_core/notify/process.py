"""Notifiers' sends made in a separate Python process (``notify-process``, on by default).

A send costs CPU: composing a mail, JSON, TLS, the SMTP or HTTP exchange, 0.5 to 2 ms
each. Made from a thread of the daemon, that CPU is taken from the runs under the GIL: at
100 runs a second with 55 notices a second, fire lateness p99 rose by a quarter
(``bench/bench_notify.py``). From a child process it runs beside the scheduler instead.

The daemon keeps the queue, the retries, the cooldown and the records; for each attempt
the delivery worker hands the pickled notifier and the notice to the child
(:mod:`ofelia_core.notify.child`) and waits for its answer. The child is started at the
first delivery, keeps the notifiers it unpickled, forwards their log lines, and ends when
the daemon closes the connection or dies. A child that dies fails the attempt in flight
(retried like any failed send); the next attempt starts a new child.
"""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection

from loguru import logger
from ofelia_hookspecs.types import Notice

from .. import logs

#: Seconds ``close`` waits for the child to end by itself before stopping it.
EXIT_WAIT = 2.0
#: Bytes of notices per message to the child (runs' output can be large: a batch is split).
MESSAGE_BYTES = 8 * 1024 * 1024
#: Seconds a new child has to say it is ready (its imports) before it is given up for good.
START_TIMEOUT = 10.0


def _chunks(parts: list[bytes], limit: int) -> Iterator[list[bytes]]:
    """``parts`` in order, in lists of at most ``limit`` bytes (at least one part each)."""
    chunk: list[bytes] = []
    size = 0
    for part in parts:
        if chunk and size + len(part) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(part)
        size += len(part)
    if chunk:
        yield chunk


def _outcome(reply: tuple[str, ...]) -> Exception | None:
    if reply[0] == "ok":
        return None
    if reply[0] == "failed":
        return RemoteFailure(reply[1])
    return NotLoadable(f"the notification process cannot load it: {reply[1]}")


def _log(level: str, text: str) -> None:
    try:
        logger.log(level, text)
    except ValueError:  # a standard-logging level loguru does not know
        logger.info(text)


class RemoteFailure(Exception):
    """A send that failed in the child (``str`` is ``"Type: message"`` as it saw it), or the
    child ending during the send."""

    #: Its text is the delivery error as is (the child wrote the exception's type).
    described = True


class NotLoadable(Exception):
    """The notifier or the notice cannot cross to the child: send it from the daemon instead."""


class SenderProcess:
    """The child process and the connection to it. :meth:`send` is called by one thread (the
    delivery worker); :meth:`close` may be called from another."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._busy = False
        self._closed = False
        #: Why no child can be started here (then every notifier is sent from the daemon).
        self._unavailable: str | None = None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def send(self, blob: bytes, notice: Notice) -> None:
        """Run ``pickle.loads(blob).send(notice)`` in the child. Raises :class:`RemoteFailure`
        when it fails there, :class:`NotLoadable` when it cannot be sent there."""
        [outcome] = self.send_many([(blob, notice)])
        if outcome is not None:
            raise outcome

    def send_many(self, items: Sequence[tuple[bytes, Notice]]) -> list[Exception | None]:
        """Send each ``(blob, notice)`` in the child, in order, in one exchange; per item ``None``
        (sent), a :class:`RemoteFailure` or a :class:`NotLoadable`. Raises :class:`NotLoadable`
        only when no child can be started."""
        outcomes: list[Exception | None] = [None] * len(items)
        parts: list[bytes] = []
        order: list[int] = []  # the index of each part's item
        for index, item in enumerate(items):
            try:
                parts.append(pickle.dumps(item, pickle.HIGHEST_PROTOCOL))
                order.append(index)
            except Exception as exc:
                outcomes[index] = NotLoadable(f"the notice cannot be pickled: {type(exc).__name__}: {exc}")
        if not parts:
            return outcomes
        connection = self._connect()
        answered = 0
        self._busy = True
        try:
            for chunk in _chunks(parts, MESSAGE_BYTES):
                connection.send_bytes(pickle.dumps(("send", chunk), pickle.HIGHEST_PROTOCOL))
                end = answered + len(chunk)
                while answered < end:
                    reply = pickle.loads(connection.recv_bytes())
                    if reply[0] == "log":
                        _log(reply[1], reply[2])
                        continue
                    outcomes[order[answered]] = _outcome(reply)
                    answered += 1
        except (EOFError, OSError):
            code = self._forget(connection)
            for index in order[answered:]:
                outcomes[index] = RemoteFailure(
                    f"the notification process ended during the send (exit status {code})")
        finally:
            self._busy = False
        return outcomes

    def close(self) -> None:
        """End the child: at once if a send is in flight (it fails), else when it has read
        the end of the connection."""
        with self._lock:
            self._closed = True
            process, connection = self._process, self._connection
        if process is None:
            return
        if self._busy:
            process.terminate()
        elif connection is not None:
            connection.close()
        try:
            process.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # --- the child ------------------------------------------------------------------------

    def _connect(self) -> Connection:
        with self._lock:
            if self._closed:
                raise RemoteFailure("the notification process is stopped (the daemon is shutting down)")
            if self._unavailable is not None:
                raise NotLoadable(self._unavailable)
            if self._connection is not None:
                return self._connection
            try:
                process, connection = self._start()
            except (OSError, EOFError, TimeoutError) as exc:
                self._unavailable = f"the notification process cannot start: {exc}"
                logger.warning(f"notifications: {self._unavailable}; sending from the daemon's thread instead")
                raise NotLoadable(self._unavailable) from None
            self._process, self._connection = process, connection
        logger.info(f"notifications: sending from process {process.pid} (notify-process)")
        return connection

    def _start(self) -> tuple[subprocess.Popen[bytes], Connection]:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            process = subprocess.Popen(
                [self.python, "-m", "ofelia_core.notify.child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )
            connection = Connection(ours.detach())
        try:
            if not connection.poll(START_TIMEOUT):
                raise TimeoutError(f"not ready within {START_TIMEOUT:g}s")
            if pickle.loads(connection.recv_bytes()) != ("ready",):
                raise EOFError("it answered something else than ready")
        except (OSError, EOFError, TimeoutError) as exc:
            connection.close()
            process.kill()
            code = process.wait()
            raise type(exc)(f"{exc or 'it exited'} (exit status {code})") from None
        setup = ("setup", list(sys.path), logs.current_level)
        connection.send_bytes(pickle.dumps(setup, pickle.HIGHEST_PROTOCOL))
        return process, connection

    def _forget(self, connection: Connection) -> int | None:
        """The child ended: drop it (the next send starts another); its exit status."""
        with self._lock:
            process = self._process
            if self._connection is connection:
                self._process = self._connection = None
        connection.close()
        if process is None:
            return None
        try:
            return process.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:  # the socket broke but the child lives on: stop it
            process.kill()
            return process.wait()
