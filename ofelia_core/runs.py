"""Runs: one execution (or non-execution) of a job, and its final state."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    #: Not started: no-overlap, or the concurrency queue was full.
    SKIPPED = "skipped"
    #: Not started: it was due longer ago than the job's missed-run grace.
    MISSED = "missed"
    TIMED_OUT = "timed_out"
    #: Stopped by shutdown (or a daemon that died while it ran).
    CANCELLED = "cancelled"


FINAL_STATES = frozenset(RunState) - {RunState.RUNNING}


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    STARTUP = "startup"
    MANUAL = "manual"
    #: A later attempt of a failed run (``max-retries``).
    RETRY = "retry"
    #: Started by another job's ``on-success`` or ``on-failure``.
    CHAIN = "chain"
    #: A ``@triggered`` job started because its ``depends-on`` jobs succeeded.
    DEPENDENCY = "dependency"


# Run ids identify runs; they are not secrets. One generator seeded from the OS
# avoids a getrandom() syscall per run, which costs GIL hand-offs under load.
_ids = random.Random(os.urandom(32))


def new_run_id() -> str:
    """A random 12-hex-digit id, as Ofelia gives each run."""
    return _ids.getrandbits(48).to_bytes(6, "big").hex()


@dataclass(slots=True)
class Run:
    """A run record. Times are epoch seconds (wall clock).

    Scheduled runs' records are built ahead of their instant, while the scheduler
    prepares the pass (see ofelia_core/execution/dispatcher.py).
    """

    job_name: str
    job_type: str
    trigger: str = Trigger.SCHEDULE
    scheduled_at: float | None = None
    id: str = field(default_factory=new_run_id)
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    state: str = RunState.RUNNING
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str | None = None
    #: 1 for a first run, n + 1 for its n-th retry.
    attempt: int = 1
    #: The first attempt's id, on a retry's record (None on a first attempt).
    retry_of: str | None = None
    #: Set on an attempt's record before ``ofelia_observe_run_end`` when another attempt will
    #: follow; notifiers skip such runs, so they report once per run, after its last attempt.
    will_retry: bool = False
    #: The run-policy cycle this run belongs to (see ofelia_core/execution/policies.py);
    #: None for a scheduled run outside any chain (its cycle is its scheduled instant).
    cycle: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def failed(self) -> bool:
        return self.state in (RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED)

    def summary(self) -> dict[str, Any]:
        """The record without output, for JSON files and APIs."""
        return {
            "id": self.id,
            "job": self.job_name,
            "type": self.job_type,
            "trigger": str(self.trigger),
            "state": str(self.state),
            "scheduled_at": self.scheduled_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "exit_code": self.exit_code,
            "error": self.error,
            "attempt": self.attempt,
            "retry_of": self.retry_of,
            "stdout_bytes": len(self.stdout),
            "stderr_bytes": len(self.stderr),
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
        }
