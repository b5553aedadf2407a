"""Notifiers the notification-process tests hand to the child process: module-level classes,
so they pickle by reference and the child imports them from this file (the daemon's
``sys.path`` is passed to it). Each writes what it did to a file, where the test reads it."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger
from ofelia_hookspecs.types import Notice


class PidFile:
    """Appends ``PID RUN_ID COUNT`` per send (``COUNT``: this instance's sends so far); raises
    ``ConnectionError`` when ``fail`` is set."""

    retry_count = 0
    retry_delay = 0.0

    def __init__(self, path: Path, *, name: str = "pid-file", fail: str = "") -> None:
        self.path, self.name, self.fail = path, name, fail
        self.count = 0

    def wants(self, notice: Notice) -> bool:
        return True

    def send(self, notice: Notice) -> None:
        self.count += 1
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {notice.run_id} {self.count}\n")
        if self.fail:
            raise ConnectionError(self.fail)


class Hanging(PidFile):
    """Writes its line, then does not return for a minute."""

    def send(self, notice: Notice) -> None:
        super().send(notice)
        time.sleep(60)


class Logging(PidFile):
    """Logs through loguru and through the standard ``logging`` while sending."""

    def send(self, notice: Notice) -> None:
        logger.warning(f"loguru line from {notice.run_id}")
        logging.getLogger("third.party").error("stdlib line from %s", notice.run_id)
        super().send(notice)


def refuse_outside(pid: int, path: Path) -> PidFile:
    """Unpickles as a :class:`PidFile` only in the process ``pid``: a notifier the child cannot load."""
    if os.getpid() != pid:
        raise ImportError("this notifier loads only in the daemon")
    return PidFile(path, name="daemon-only")


class DaemonOnly(PidFile):
    def __reduce__(self) -> tuple[Any, ...]:
        return refuse_outside, (os.getpid(), self.path)


class Unpicklable(PidFile):
    """Holds a lock: it cannot be pickled at all."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, name="unpicklable")
        self.lock = threading.Lock()


def lines(path: Path) -> list[tuple[int, str, int]]:
    """The ``(pid, run_id, count)`` lines written so far."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        pid, run_id, count = line.split()
        found.append((int(pid), run_id, int(count)))
    return found
