"""A notifier that appends each finished run to a file as one JSON line: an example
third-party ofelia notifier.

Keys (accepted in ``[global]`` and in every job; see the README):

- ``jsonl-file``: absolute path of the file; nothing is written for a job without one.
- ``jsonl-only-on-error``: only failed, timed-out and cancelled runs.
- ``jsonl-include-output``: add the run's ``stdout`` and ``stderr`` (their last 4000 characters).
- ``jsonl-retry-count``, ``jsonl-retry-delay``: retries of a line that could not be written.

The core resolves these per job with Ofelia's rule before ``build`` sees them (a job that
sets any ``jsonl-*`` key replaces every global one), so this module never looks at
``[global]`` itself. ``send`` runs on the core's delivery worker, never on the run's thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.settings import parse_duration
from ofelia_hookspecs.types import FAILED_STATES, RUN_STATES, KeySpec, Notice, Notifier, NotifierContext, NotifierSpec

NAME = "jsonl"
#: Characters of stdout and stderr kept (the newest) with ``jsonl-include-output``.
OUTPUT_LIMIT = 4000

KEYS: tuple[KeySpec, ...] = (
    KeySpec("jsonl-file", description="Absolute path of the file each run is appended to, one JSON line each; "
            "nothing is written when empty."),
    KeySpec("jsonl-only-on-error", "bool", False, description="Write only failed, timed-out or cancelled runs."),
    KeySpec("jsonl-include-output", "bool", False,
            description=f"Add the run's stdout and stderr (the last {OUTPUT_LIMIT} characters of each)."),
    KeySpec("jsonl-retry-count", "int", 2, description="Retries of a line that could not be written."),
    KeySpec("jsonl-retry-delay", "duration", "1s", description="Pause before each retry."),
)


@dataclass(frozen=True)
class JsonlSettings:
    path: Path
    only_on_error: bool = False
    include_output: bool = False
    retry_count: int = 2
    retry_delay: float = 1.0


def record(notice: Notice, include_output: bool = False) -> dict[str, Any]:
    """The JSON object written for ``notice`` (times are epoch seconds, as in the notice)."""
    line: dict[str, Any] = {
        "job": notice.job_name,
        "job_type": notice.job_type,
        "run_id": notice.run_id,
        "state": notice.state,
        "failed": notice.failed,
        "trigger": notice.trigger,
        "attempt": notice.attempt,
        "scheduled_at": notice.scheduled_at,
        "started_at": notice.started_at,
        "ended_at": notice.ended_at,
        "duration": round(notice.duration, 6),
        "exit_code": notice.exit_code,
        "error": notice.error,
        "hostname": notice.hostname,
        "suppressed": notice.suppressed,
    }
    if include_output:
        line["stdout"] = _tail(notice.stdout)
        line["stderr"] = _tail(notice.stderr)
    return line


def _tail(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")[-OUTPUT_LIMIT:]


class JsonlNotifier:
    """One job's file. Satisfies ``ofelia_hookspecs.types.Notifier``."""

    name = NAME

    def __init__(self, settings: JsonlSettings) -> None:
        self.settings = settings
        self.retry_count = settings.retry_count
        self.retry_delay = settings.retry_delay
        # Optional: the run states wants() may accept. When every notifier of a job has it, the
        # core skips runs in other states without building their notice (most runs, on-error).
        self.states = FAILED_STATES if settings.only_on_error else RUN_STATES

    def wants(self, notice: Notice) -> bool:
        # Called on the run's thread: a filter only, no I/O.
        return notice.state in self.states

    def send(self, notice: Notice) -> None:
        """Append one line with one ``write`` on a file opened ``O_APPEND``: lines from several
        processes never interleave (on a local file system). Raises ``OSError`` when it cannot."""
        text = json.dumps(record(notice, self.settings.include_output), ensure_ascii=False, separators=(",", ":"))
        data = (text + "\n").encode("utf-8")
        fd = os.open(self.settings.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:  # a regular file takes it in one write; a short one finishes the line
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


# --- settings ---------------------------------------------------------------------------
# The core hands settings typed by each key's kind (bool, int, seconds as float); the
# conversions below also accept the raw text, so build() can be called directly in tests.


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{key}: expected true or false, got {value!r}")


def _int(key: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected a whole number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{key}: must not be negative, got {number}")
    return number


def _seconds(key: str, value: Any) -> float:
    seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
    if seconds < 0:
        raise ValueError(f"{key}: must not be negative")
    return seconds


def parse_settings(settings: Mapping[str, Any]) -> JsonlSettings | None:
    """``None`` when ``jsonl-file`` is unset or empty (the notifier is off for that job)."""
    raw = str(settings.get("jsonl-file") or "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        # The daemon's working directory is nobody's business: say where the file goes.
        raise ValueError(f"jsonl-file must be an absolute path, got {raw!r}")

    def value(key: str) -> Any:
        given = settings.get(key)
        return next(spec.default for spec in KEYS if spec.name == key) if given is None else given

    return JsonlSettings(
        path=path,
        only_on_error=_bool("jsonl-only-on-error", value("jsonl-only-on-error")),
        include_output=_bool("jsonl-include-output", value("jsonl-include-output")),
        retry_count=_int("jsonl-retry-count", value("jsonl-retry-count")),
        retry_delay=_seconds("jsonl-retry-delay", value("jsonl-retry-delay")),
    )


def build(settings: Mapping[str, Any], context: NotifierContext) -> Sequence[Notifier]:
    """Called once per job and config (and by ``ofelia validate``): no I/O here, so a file
    that cannot be written is a failed delivery, recorded in the run's history."""
    parsed = parse_settings(settings)
    return [] if parsed is None else [JsonlNotifier(parsed)]


def check(settings: Mapping[str, Any]) -> Sequence[str]:
    """Valid settings that write nothing: shown as warnings by ``ofelia validate``."""
    if str(settings.get("jsonl-file") or "").strip():
        return []
    set_alone = [key for key in ("jsonl-only-on-error", "jsonl-include-output") if settings.get(key)]
    return [f"{key} is set but jsonl-file is not: nothing is written" for key in set_alone]


@hookimpl
def ofelia_register_notifiers() -> list[NotifierSpec]:
    return [NotifierSpec(NAME, KEYS, build, "Each finished run as one JSON line in a file.", check=check)]
