"""The notification process: ``python -m ofelia_core.notify.child FD`` (started by
:class:`~ofelia_core.notify.process.SenderProcess`, never by hand).

It says ``("ready",)`` on the socket ``FD`` once started, then reads pickled requests and
answers each:

- ``("setup", [...], level)``: the daemon's ``sys.path``, so the child imports notifiers
  from where the daemon does, and its log level (lines below it are not forwarded);
- ``("send", [part, ...])``: each part a pickled ``(notifier_blob, notice)``. Each notifier
  is unpickled once (kept for the next requests with the same bytes, so its own state, a
  kept SMTP connection say, lasts) and its ``send`` called, in order. One answer per part:
  ``("ok",)``, ``("failed", "Type: message")``, or ``("unloadable", why)`` when it cannot
  be unpickled here.

Log lines written meanwhile (loguru or the standard ``logging``) go to the daemon as
``("log", level, text)`` before the answer. The process ends when the daemon closes its end
(or dies): it never outlives the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import signal
import sys
import threading
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

#: Notifiers kept unpickled (a reload builds new ones; older ones age out).
KEPT_NOTIFIERS = 256


class Channel:
    """The socket to the daemon; sends are locked because a notifier's own threads may log."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._lock = threading.Lock()

    def reply(self, *message: Any) -> None:
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self.connection.send_bytes(data)

    def log(self, level: str, text: str) -> None:
        with contextlib.suppress(Exception):  # the daemon is gone: nothing to log to
            self.reply("log", level, text)

    def receive(self) -> tuple[Any, ...]:
        message = pickle.loads(self.connection.recv_bytes())
        assert isinstance(message, tuple)
        return message


class _ForwardLogging(logging.Handler):
    def __init__(self, channel: Channel) -> None:
        super().__init__(logging.DEBUG)
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        self.channel.log(record.levelname, record.getMessage())


def forward_logs(channel: Channel, level: str = "DEBUG") -> None:
    """Log lines of this process from ``level`` up go to the daemon, which writes them with its
    own sinks."""
    from loguru import logger

    def sink(message: Any) -> None:
        channel.log(message.record["level"].name, message.record["message"])

    logger.remove()
    logger.add(sink, level=level, format="{message}", catch=False)
    standard = logging.getLevelName(level)  # loguru's TRACE and SUCCESS are not standard levels
    logging.basicConfig(level=standard if isinstance(standard, int) else logging.DEBUG,
                        handlers=[_ForwardLogging(channel)], force=True)


def serve(channel: Channel) -> None:
    notifiers: OrderedDict[bytes, Any] = OrderedDict()
    while True:
        try:
            message = channel.receive()
        except (EOFError, OSError):
            return  # the daemon closed its end or died
        if message[0] == "setup":
            sys.path[:] = list(message[1])
            forward_logs(channel, message[2])
            continue
        for part in message[1]:
            channel.reply(*send_one(part, notifiers))


def send_one(part: bytes, notifiers: OrderedDict[bytes, Any]) -> tuple[str, ...]:
    """``("ok",)``, ``("failed", "Type: message")`` or ``("unloadable", why)`` for one pickled
    ``(notifier_blob, notice)``."""
    try:
        blob, notice = pickle.loads(part)
        notifier = notifiers.get(blob)
        if notifier is None:
            notifier = notifiers[blob] = pickle.loads(blob)
            if len(notifiers) > KEPT_NOTIFIERS:
                notifiers.popitem(last=False)
        else:
            notifiers.move_to_end(blob)
    except Exception as exc:  # a notifier or notice this process cannot import
        return ("unloadable", f"{type(exc).__name__}: {exc}")
    try:
        notifier.send(notice)
    except Exception as exc:  # a failed send is the daemon's to retry and record
        return ("failed", f"{type(exc).__name__}: {exc}")
    return ("ok",)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Ctrl-C reaches the daemon's whole process group; the daemon decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = Channel(Connection(int(args[0])))
    forward_logs(channel)
    channel.reply("ready")
    serve(channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
