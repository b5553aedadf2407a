"""The section kinds every configuration source knows about."""

from __future__ import annotations

from ..drivers import table

#: Driver concerns; each has its own settings section and a ``[drivers]`` key.
CONCERNS: tuple[str, ...] = tuple(concern.key for concern in table.CONCERNS)

#: Sections that appear once and take no name.
SINGLE_KINDS: tuple[str, ...] = ("global", "drivers", *CONCERNS)

#: The job types Ofelia defines; plugins may add more (any ``job-*`` kind).
BUILTIN_JOB_TYPES: tuple[str, ...] = ("job-exec", "job-run", "job-local", "job-service-run")

WEBHOOK = "webhook"

#: Every kind a reader accepts without a plugin, for suggestions.
KNOWN_KINDS: tuple[str, ...] = (*SINGLE_KINDS, WEBHOOK, *BUILTIN_JOB_TYPES)


def is_job_kind(kind: str) -> bool:
    """Job types are any section kind starting with ``job-`` (plugins add their own)."""
    return kind.startswith("job-") and len(kind) > len("job-")
