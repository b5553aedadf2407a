"""on-success / on-failure chains, depends-on and @triggered through the real daemon."""

from __future__ import annotations

from pathlib import Path

import pytest
from polling import wait_for

from .support import running_daemon

pytestmark = pytest.mark.slow


def local(name: str, command: str, schedule: str = "@triggered", **keys: str) -> str:
    extra = "".join(f"{k.replace('_', '-')} = {v}\n" for k, v in keys.items())
    return f'[job-local "{name}"]\nschedule = {schedule}\ncommand = {command}\n{extra}'


def test_chains_fire_on_success_or_on_failure_only(tmp_path: Path) -> None:
    config = (
        local("good", "true", "@manual", on_success="good-next", on_failure="good-alarm")
        + local("bad", 'sh -c "exit 2"', "@manual", on_success="bad-next", on_failure="bad-alarm")
        + local("good-next", "echo next")
        + local("good-alarm", "echo alarm")
        + local("bad-next", "echo next")
        + local("bad-alarm", "echo alarm")
    )
    with running_daemon(tmp_path, config) as h:
        good = h.daemon.run_now("good")
        bad = h.daemon.run_now("bad")
        [next_run] = h.wait_final("good-next", 1)
        [alarm] = h.wait_final("bad-alarm", 1)
        assert not wait_for(lambda: h.runs("good-alarm") or h.runs("bad-next"), 1.0)
    assert (next_run["trigger"], next_run["state"], next_run["stdout"]) == ("chain", "success", b"next\n")
    assert alarm["trigger"] == "chain"
    good_row, bad_row = h.runs("good")[0], h.runs("bad")[0]
    assert (good_row["id"], bad_row["id"]) == (good.id, bad.id)
    assert next_run["started_at"] >= good_row["ended_at"] and alarm["started_at"] >= bad_row["ended_at"]


def test_on_failure_fires_once_after_the_last_attempt(tmp_path: Path) -> None:
    config = (
        local("flaky", 'sh -c "exit 1"', "@manual", on_failure="alarm", max_retries="2", retry_delay="100ms")
        + local("alarm", "echo alarm")
    )
    with running_daemon(tmp_path, config) as h:
        h.daemon.run_now("flaky")
        attempts = h.wait_final("flaky", 3)
        [alarm] = h.wait_final("alarm", 1)
        assert not wait_for(lambda: len(h.runs("alarm")) > 1, 1.0)
    assert [r["attempt"] for r in attempts] == [1, 2, 3]
    assert alarm["started_at"] >= attempts[-1]["ended_at"]


def test_depends_on_runs_after_its_dependencies_or_is_skipped_naming_them(tmp_path: Path) -> None:
    # run-on-startup runs form one cycle: depends-on is decided inside it.
    config = (
        local("ok", 'sh -c "sleep 0.3; echo ok"', "@manual", run_on_startup="true")
        + local("broken", 'sh -c "exit 5"', "@manual", run_on_startup="true")
        + local("after-ok", "echo after", "@manual", run_on_startup="true", depends_on="ok")
        + local("after-both", "echo never", "@manual", run_on_startup="true", depends_on="ok, broken")
        + local("after-idle", "echo never", "@manual", run_on_startup="true", depends_on="idle")
        + local("idle", "true", "@manual")
        + local("pulled", "echo pulled", depends_on="ok")
    )
    with running_daemon(tmp_path, config) as h:
        [after] = h.wait_final("after-ok", 1)
        [both] = h.wait_final("after-both", 1)
        [idle] = h.wait_final("after-idle", 1)
        [pulled] = h.wait_final("pulled", 1)
        assert not wait_for(lambda: len(h.runs("pulled")) > 1, 1.0)
    [ok] = h.runs("ok")
    assert (after["state"], after["stdout"]) == ("success", b"after\n")
    assert after["started_at"] >= ok["ended_at"]  # waited for ok (which sleeps) to finish
    assert both["state"] == "skipped"
    assert both["error"] == "depends-on: job 'broken' did not succeed in this cycle (failed)"
    assert (idle["state"], idle["error"]) == ("skipped", "depends-on: job 'idle' did not run in this cycle")
    assert h.runs("idle") == []
    # A @triggered job is started by its dependency's success, once per cycle.
    assert (pulled["trigger"], pulled["state"], pulled["stdout"]) == ("dependency", "success", b"pulled\n")
    assert pulled["started_at"] >= ok["ended_at"]


def test_scheduled_dependent_waits_for_its_dependency_in_each_cycle(tmp_path: Path) -> None:
    config = (
        local("extract", 'sh -c "sleep 0.2"', "@every 1s")
        + local("load", "true", "@every 1s", depends_on="extract")
    )
    with running_daemon(tmp_path, config) as h:
        h.wait_runs("load", 2, state="success")
    extracts = {r["scheduled_at"]: r for r in h.runs("extract") if r["state"] == "success"}
    loads = [r for r in h.runs("load") if r["state"] == "success"]
    assert len(loads) >= 2
    for load in loads:
        extract = extracts[load["scheduled_at"]]  # the same instant: the same cycle
        assert load["started_at"] >= extract["ended_at"]
        assert load["trigger"] == "schedule"


def test_a_failed_dependency_skips_the_scheduled_dependent(tmp_path: Path) -> None:
    config = (
        local("extract", 'sh -c "exit 1"', "@every 1s")
        + local("load", "echo never", "@every 1s", depends_on="extract")
    )
    with running_daemon(tmp_path, config) as h:
        skipped = h.wait_runs("load", 2, state="skipped")
    assert all(r["error"] == "depends-on: job 'extract' did not succeed in this cycle (failed)" for r in skipped)
    assert not [r for r in h.runs("load") if r["state"] not in ("skipped", "cancelled")]


def test_triggered_never_fires_on_its_own_but_runs_when_asked(tmp_path: Path) -> None:
    config = local("tick", "true", "@every 1s") + local("on-demand", "echo here")
    with running_daemon(tmp_path, config) as h:
        h.wait_runs("tick", 2, state="success")
        assert h.runs("on-demand") == []
        run = h.daemon.run_now("on-demand")
        [row] = h.wait_final("on-demand", 1)
    assert (row["id"], row["trigger"], row["stdout"]) == (run.id, "manual", b"here\n")


def test_reload_replaces_the_chains(tmp_path: Path) -> None:
    before = local("a", "true", "@manual", on_success="b") + local("b", "echo b") + local("c", "echo c")
    with running_daemon(tmp_path, before) as h:
        h.daemon.run_now("a")
        h.wait_final("b", 1)
        h.rewrite("[global]\nconfig-watch-interval = 0\n"
                  + local("a", "true", "@manual", on_success="c") + local("b", "echo b") + local("c", "echo c"))
        assert h.daemon.reload("test")
        h.daemon.run_now("a")
        [c] = h.wait_final("c", 1)
        assert not wait_for(lambda: len(h.runs("b")) > 1, 1.0)
    assert c["trigger"] == "chain"
    # A reload that adds a loop is refused and the running config is kept.
    again = tmp_path / "again"
    again.mkdir()
    with running_daemon(again, before) as h:
        h.rewrite("[global]\nconfig-watch-interval = 0\n"
                  + local("a", "true", "@manual", on_success="b") + local("b", "true", on_success="a"))
        assert not h.daemon.reload("test")
        h.daemon.run_now("a")
        [b] = h.wait_final("b", 1)
        assert not wait_for(lambda: len(h.runs("a")) > 1, 1.0)
    assert b["trigger"] == "chain"


def test_a_dependent_waits_for_the_last_attempt_of_a_retried_dependency(tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    config = (
        local("shaky", f'sh -c "test -e {marker} || {{ touch {marker}; exit 1; }}"', "@manual",
              run_on_startup="true", max_retries="1", retry_delay="300ms")
        + local("after", "echo after", "@manual", run_on_startup="true", depends_on="shaky")
    )
    with running_daemon(tmp_path, config) as h:
        [after] = h.wait_final("after", 1)
    first, second = h.runs("shaky")
    assert (first["state"], second["state"], second["attempt"]) == ("failed", "success", 2)
    assert after["state"] == "success" and after["started_at"] >= second["ended_at"]
