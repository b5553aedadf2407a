"""What a notice says, as the named values that presets and user templates use.

A user template (the webhook's ``template`` key) is text with ``{name}``
placeholders. Braces, not ``${name}``: INI and YAML values already substitute
``${VAR}`` from the environment, and ``{name}`` is the form the fork's presets use
for ``{id}`` and ``{secret}``. A template that starts with ``[``, or with a ``{``
that is not a placeholder, is JSON: values are inserted JSON-escaped (write ``"{error}"`` in quotes), the
result must parse as JSON and is sent as ``application/json``; any other template
is sent as ``text/plain; charset=utf-8``. An unknown placeholder is a
configuration error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ofelia_hookspecs.settings import format_duration
from ofelia_hookspecs.types import Notice

#: Characters of stdout/stderr in a template value (the newest kept), as the fork's json-post.
OUTPUT_CHARS = 4000

#: Every placeholder and what it holds (the docs table is made from this).
VARIABLES: dict[str, str] = {
    "job": "job name",
    "job_type": "job type (`job-exec`, `job-local`, ...)",
    "run_id": "the run's 12-hex-digit id",
    "state": "`success`, `failed`, `skipped`, `missed`, `timed_out` or `cancelled`",
    "status": "the fork's word: `successful`, `failed` or `skipped`",
    "trigger": "`schedule`, `startup` or `manual`",
    "attempt": "attempt number (1 unless the job retries)",
    "exit_code": "exit code; empty when the run did not start",
    "error": "why it failed (`exit code 2`, a timeout...); empty on success",
    "duration": "run time as Go prints it (`1m2.5s`)",
    "duration_seconds": "run time in seconds (`62.500`)",
    "scheduled_at": "when it was due, ISO 8601 UTC; empty for a manual run",
    "started_at": "when it started, ISO 8601 UTC; empty when it did not start",
    "ended_at": "when it ended, ISO 8601 UTC",
    "hostname": "the scheduler's host name",
    "command": "the job's command",
    "schedule": "the job's schedule",
    "stdout": f"the last {OUTPUT_CHARS} characters of standard output",
    "stderr": f"the last {OUTPUT_CHARS} characters of standard error",
    "link": "the webhook's `link` setting",
    "link_text": "the webhook's `link-text` setting (default `View details`)",
}

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def status_word(notice: Notice) -> str:
    """The fork's three-way status."""
    if notice.failed:
        return "failed"
    if notice.skipped:
        return "skipped"
    return "successful"


def iso(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tail(data: bytes, chars: int = OUTPUT_CHARS) -> str:
    text = data.decode("utf-8", "replace")
    return text[-chars:] if len(text) > chars else text


def job_option(notice: Notice, key: str) -> str:
    """A job setting from the notice's document (the save middleware's JSON: secrets already left out)."""
    job = notice.document.get("job") if isinstance(notice.document, Mapping) else None
    config = job.get("config") if isinstance(job, Mapping) else None
    value = config.get(key) if isinstance(config, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def variables(notice: Notice, *, link: str = "", link_text: str = "") -> dict[str, str]:
    """Every placeholder's value for ``notice``, as text."""
    return {
        "job": notice.job_name,
        "job_type": notice.job_type,
        "run_id": notice.run_id,
        "state": notice.state,
        "status": status_word(notice),
        "trigger": notice.trigger,
        "attempt": str(notice.attempt),
        "exit_code": "" if notice.exit_code is None else str(notice.exit_code),
        "error": notice.error or "",
        "duration": format_duration(notice.duration),
        "duration_seconds": f"{notice.duration:.3f}",
        "scheduled_at": iso(notice.scheduled_at),
        "started_at": iso(notice.started_at),
        "ended_at": iso(notice.ended_at),
        "hostname": notice.hostname,
        "command": job_option(notice, "command"),
        "schedule": job_option(notice, "schedule"),
        "stdout": tail(notice.stdout),
        "stderr": tail(notice.stderr),
        "link": link,
        "link_text": link_text or ("View details" if link else ""),
    }


class Template:
    """A user template, checked when built."""

    def __init__(self, text: str) -> None:
        unknown = sorted({name for name in _PLACEHOLDER.findall(text) if name not in VARIABLES})
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                f"known: {', '.join('{' + n + '}' for n in VARIABLES)}"
            )
        self.text = text
        start = text.lstrip()
        # "{job} failed" is text that starts with a placeholder, not a JSON object.
        self.is_json = start.startswith("[") or (start.startswith("{") and not _PLACEHOLDER.match(start))
        if self.is_json:
            sample = {name: 'x"\\\n' for name in VARIABLES}  # quotes and newlines must stay escaped
            try:
                json.loads(self._fill(sample))
            except ValueError as exc:
                raise ValueError(
                    f"starts like JSON but is not valid JSON with its placeholders filled in ({exc}); "
                    'put placeholders inside strings: "text": "{job} {status}"'
                ) from None

    @property
    def content_type(self) -> str:
        return "application/json" if self.is_json else "text/plain; charset=utf-8"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.text == self.text  # the text decides everything else

    def __hash__(self) -> int:
        return hash(self.text)

    def render(self, values: Mapping[str, str]) -> bytes:
        return self._fill(values).encode("utf-8")

    def _fill(self, values: Mapping[str, str]) -> str:
        def replace(match: re.Match[str]) -> str:
            value = values.get(match.group(1), "")
            return json.dumps(value, ensure_ascii=False)[1:-1] if self.is_json else value

        return _PLACEHOLDER.sub(replace, self.text)


def to_json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
