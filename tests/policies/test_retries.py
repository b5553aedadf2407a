"""Retries through the real daemon: attempts recorded one by one, backoff and its cap,
will_retry as notifiers see it, no-overlap while a retry waits, shutdown."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from polling import wait_for

from .support import running_daemon

pytestmark = pytest.mark.slow

FAIL = 'command = sh -c "exit 3"\n'


def test_failed_run_is_retried_with_backoff_each_attempt_its_own_record(tmp_path: Path) -> None:
    config = ('[job-local "flaky"]\nschedule = @manual\n' + FAIL +
              "max-retries = 3\nretry-delay = 200ms\nretry-max-delay = 500ms\n")
    with running_daemon(tmp_path, config) as h:
        first = h.daemon.run_now("flaky")
        rows = h.wait_final("flaky", 4)
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    assert [r["state"] for r in rows] == ["failed"] * 4
    assert [r["trigger"] for r in rows] == ["manual", "retry", "retry", "retry"]
    assert rows[0]["id"] == first.id and rows[0]["retry_of"] is None
    assert all(r["retry_of"] == first.id for r in rows[1:])
    assert len({r["id"] for r in rows}) == 4
    # Each retry is due retry-delay * 2^(n-1) after the previous attempt ended, capped at 500ms,
    # and starts no earlier than that.
    gaps = [later["scheduled_at"] - earlier["ended_at"] for earlier, later in itertools.pairwise(rows)]
    assert gaps == pytest.approx([0.2, 0.4, 0.5], abs=1e-6)
    assert all(r["started_at"] >= r["scheduled_at"] for r in rows[1:])
    # Notifiers see will_retry on every attempt but the last: one report per run.
    assert [(attempt, will) for _, _, attempt, _, will in h.observer.of("flaky")] == [
        (1, True), (2, True), (3, True), (4, False)
    ]


def test_success_ends_the_retries_and_success_is_never_retried(tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    config = (
        '[job-local "second-time"]\nschedule = @manual\n'
        f'command = sh -c "test -e {marker} || {{ touch {marker}; exit 4; }}"\n'
        "max-retries = 5\nretry-delay = 100ms\n"
        '[job-local "fine"]\nschedule = @manual\ncommand = true\nmax-retries = 5\nretry-delay = 100ms\n'
    )
    with running_daemon(tmp_path, config) as h:
        h.daemon.run_now("second-time")
        h.daemon.run_now("fine")
        rows = h.wait_final("second-time", 2)
        fine = h.wait_final("fine", 1)
        # Give a wrong retry every chance to show up before looking again.
        assert not wait_for(lambda: len(h.runs("second-time")) > 2 or len(h.runs("fine")) > 1, 1.0)
    assert [(r["attempt"], r["state"], r["exit_code"]) for r in rows] == [(1, "failed", 4), (2, "success", 0)]
    assert [(r["attempt"], r["state"]) for r in fine] == [(1, "success")]
    assert [will for *_, will in h.observer.of("second-time")] == [True, False]


def test_timed_out_runs_are_retried_unless_retry_on_leaves_them_out(tmp_path: Path) -> None:
    config = (
        '[job-local "slow"]\nschedule = @manual\ncommand = sleep 30\nmax-runtime = 300ms\n'
        "max-retries = 1\nretry-delay = 100ms\n"
        '[job-local "slow-once"]\nschedule = @manual\ncommand = sleep 30\nmax-runtime = 300ms\n'
        "max-retries = 1\nretry-delay = 100ms\nretry-on = failed\n"
    )
    with running_daemon(tmp_path, config) as h:
        h.daemon.run_now("slow")
        h.daemon.run_now("slow-once")
        slow = h.wait_final("slow", 2)
        once = h.wait_final("slow-once", 1)
        assert not wait_for(lambda: len(h.runs("slow-once")) > 1, 1.0)
    assert [(r["attempt"], r["state"]) for r in slow] == [(1, "timed_out"), (2, "timed_out")]
    assert [(r["attempt"], r["state"]) for r in once] == [(1, "timed_out")]


def test_shutdown_records_a_pending_retry_as_cancelled(tmp_path: Path) -> None:
    config = ('[job-local "later"]\nschedule = @manual\n' + FAIL
              + "max-retries = 2\nretry-delay = 1h\nretry-max-delay = 2h\n")
    with running_daemon(tmp_path, config) as h:
        first = h.daemon.run_now("later")
        h.wait_final("later", 1)
        assert h.daemon.policies is not None
        assert wait_for(lambda: len(h.daemon.policies.pending_retries()) == 1)  # type: ignore[union-attr]
    rows = h.runs("later")  # the daemon has stopped
    assert [(r["attempt"], r["state"], r["trigger"]) for r in rows] == [
        (1, "failed", "manual"), (2, "cancelled", "retry")
    ]
    assert rows[1]["retry_of"] == first.id
    assert "shut down before attempt 2 was due" in rows[1]["error"]
    assert rows[1]["scheduled_at"] == pytest.approx(rows[0]["ended_at"] + 3600, abs=1e-6)
    # The cancelled retry is the last attempt: it is the one reported without will_retry.
    assert [(attempt, state, will) for _, _, attempt, state, will in h.observer.of("later")] == [
        (1, "failed", True), (2, "cancelled", False)
    ]


def test_no_overlap_treats_a_pending_retry_as_still_running(tmp_path: Path) -> None:
    config = ('[job-local "guarded"]\nschedule = @every 1s\nno-overlap = true\n' + FAIL +
              "max-retries = 1\nretry-delay = 1h\n")
    with running_daemon(tmp_path, config) as h:
        h.wait_final("guarded", 1)
        skipped = h.wait_runs("guarded", 2, state="skipped")
    assert all("no-overlap" in r["error"] for r in skipped)
    rows = h.runs("guarded")
    assert [r["state"] for r in rows if r["state"] not in ("skipped",)] == ["failed", "cancelled"]
    first = rows[0]
    assert (first["state"], first["attempt"]) == ("failed", 1)
    assert all(r["attempt"] == 1 and r["trigger"] == "schedule" for r in skipped)
