"""Run history in SQLite: real database files in tmp_path."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ofelia_core.history import (
    INTERRUPTED_ERROR,
    SCHEMA_VERSION,
    HistoryStore,
    default_state_dir,
    history_path,
)
from ofelia_core.runs import Run, RunState, Trigger


def full_run(job: str = "backup", at: float = 1_700_000_000.25, **changes: object) -> Run:
    """A run whose every field differs from its default."""
    run = Run(
        job_name=job,
        job_type="job-exec",
        trigger=Trigger.MANUAL,
        scheduled_at=at - 0.5,
        started_at=at,
        ended_at=at + 1.125,
        exit_code=3,
        state=RunState.FAILED,
        stdout=b"out \x00\xff bytes",
        stderr=b"err line\n",
        stdout_truncated=True,
        stderr_truncated=True,
        error="exit code 3",
        attempt=2,
    )
    for key, value in changes.items():
        setattr(run, key, value)
    return run


def finished(job: str, at: float) -> Run:
    return Run(job_name=job, job_type="job-local", started_at=at, ended_at=at + 1, state=RunState.SUCCESS, exit_code=0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore(tmp_path / "history.db") as s:
        yield s


def test_every_field_round_trips(store: HistoryStore) -> None:
    run = full_run()
    store.record_end(run, history_limit=10)
    assert store.get(run.id) == run
    assert store.recent(with_output=True) == [run]


def test_recent_without_output_reads_no_blobs_but_every_other_field(store: HistoryStore) -> None:
    run = full_run()
    store.record_end(run, history_limit=10)
    [summary] = store.recent()
    assert (summary.stdout, summary.stderr) == (b"", b"")
    summary.stdout, summary.stderr = run.stdout, run.stderr
    assert summary == run


def test_record_start_shows_the_run_as_running_and_record_end_completes_the_same_row(store: HistoryStore) -> None:
    run = Run(job_name="backup", job_type="job-local", started_at=100.0)
    store.record_start(run)
    running = store.get(run.id)
    assert running is not None and running.state == RunState.RUNNING and running.ended_at is None
    run.ended_at, run.state, run.exit_code, run.stdout = 101.0, RunState.SUCCESS, 0, b"done\n"
    store.record_end(run, history_limit=10)
    assert [r.id for r in store.recent("backup")] == [run.id]
    assert store.get(run.id) == run


def test_a_run_that_never_started_is_recorded_in_one_call(store: HistoryStore) -> None:
    skipped = Run(job_name="backup", job_type="job-local", scheduled_at=50.0, state=RunState.SKIPPED, error="overlap")
    store.record(skipped, history_limit=10)
    assert store.get(skipped.id) == skipped


def test_history_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with HistoryStore(path) as first:
        runs = [full_run(at=float(i)) for i in range(3)]
        for run in runs:
            first.record_end(run, history_limit=10)
    with HistoryStore(path) as second:
        assert second.recent(with_output=True) == runs[::-1]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    HistoryStore(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(RuntimeError, match="newer"):
        HistoryStore(path)


def test_mark_interrupted_cancels_runs_left_running_by_a_previous_process(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with HistoryStore(path) as before_crash:
        left_running = [Run(job_name=name, job_type="job-local", started_at=10.0) for name in ("a", "b")]
        for run in left_running:
            before_crash.record_start(run)
        done = finished("a", 5.0)
        before_crash.record_end(done, history_limit=10)
    with HistoryStore(path) as after:
        assert after.mark_interrupted() == 2
        for run in left_running:
            stored = after.get(run.id)
            assert stored is not None
            assert (stored.state, stored.error) == (RunState.CANCELLED, INTERRUPTED_ERROR)
        assert after.get(done.id) == done
        assert after.mark_interrupted() == 0


def test_pruning_keeps_the_newest_runs_of_that_job_only(store: HistoryStore) -> None:
    others = [finished("other", float(i)) for i in range(5)]
    for run in others:
        store.record_end(run, history_limit=100)
    runs = [finished("backup", 1000.0 + i) for i in range(15)]
    for run in runs:
        store.record_end(run, history_limit=10)
    assert [r.id for r in store.recent("backup", limit=100)] == [r.id for r in runs[::-1][:10]]
    assert [r.id for r in store.recent("other", limit=100)] == [r.id for r in others[::-1]]


def test_pruning_never_deletes_a_run_still_running(store: HistoryStore) -> None:
    old_but_running = Run(job_name="backup", job_type="job-local", started_at=1.0)
    store.record_start(old_but_running)
    for i in range(5):
        store.record_end(finished("backup", 100.0 + i), history_limit=2)
    kept = store.recent("backup", limit=100)
    assert old_but_running.id in {r.id for r in kept}
    assert len([r for r in kept if r.state == RunState.SUCCESS]) == 2


def test_history_limit_zero_keeps_every_run(store: HistoryStore) -> None:
    for i in range(25):
        store.record_end(finished("backup", float(i)), history_limit=0)
    assert len(store.recent("backup", limit=100)) == 25


def test_recent_get_and_job_names(store: HistoryStore) -> None:
    a1, b1, a2 = finished("a", 1.0), finished("b", 2.0), finished("a", 3.0)
    skipped = Run(job_name="c", job_type="job-local", scheduled_at=4.0, state=RunState.SKIPPED)
    for run in (a1, b1, a2):
        store.record_end(run, history_limit=10)
    store.record(skipped, history_limit=10)
    assert [r.id for r in store.recent()] == [skipped.id, a2.id, b1.id, a1.id]
    assert [r.id for r in store.recent(limit=2)] == [skipped.id, a2.id]
    assert [r.id for r in store.recent("a")] == [a2.id, a1.id]
    assert store.recent("nobody") == []
    assert store.get("000000000000") is None
    assert store.job_names() == ["a", "b", "c"]


def test_last_runs_gives_each_jobs_newest_run_as_recent_does_before_and_after_its_first_load(
    store: HistoryStore,
) -> None:
    a1, b1, a2 = finished("a", 1.0), full_run("b", at=2.0), finished("a", 3.0)
    tie = finished("b", 2.0)  # same instant as b1, written later: the newer row wins, as in recent()
    skipped = Run(job_name="c", job_type="job-local", scheduled_at=4.0, state=RunState.SKIPPED)
    running = Run(job_name="d", job_type="job-local", started_at=5.0)
    for run in (a1, b1, a2, tie):
        store.record_end(run, history_limit=10)
    store.record(skipped, history_limit=10)
    store.record_start(running)
    many = [f"job-{i:04d}" for i in range(1200)]
    for i, name in enumerate(many):
        store.record_end(finished(name, 10.0 + i), history_limit=10)
    store.record_end(finished("job-0999", 1.0), history_limit=10)  # older than its newest: not chosen
    names = ["a", "b", "c", "d", "nobody", "a", *many]

    def check() -> dict[str, Run]:
        last = store.last_runs(names)
        assert set(last) == set(names) - {"nobody"}
        for name in set(names) - {"nobody"}:
            (expected,) = store.recent(name, 1)
            assert last[name] == expected, name  # every field, output left empty
        return last

    last = check()  # the first call loads them from the table
    assert [last[n].id for n in "abcd"] == [a2.id, tie.id, skipped.id, running.id]
    assert last["d"].state == RunState.RUNNING and last["b"].stdout == b""
    assert store.last_runs([]) == {}

    # Then writes keep them: a run finishing, a newer run, an older one, a tie, a new job.
    running.state, running.ended_at, running.stdout = RunState.SUCCESS, 6.0, b"out"
    store.record_end(running, history_limit=10)
    newer, older, tie2 = finished("a", 9.0), finished("b", 0.5), finished("c", 4.0)
    for run in (newer, older, tie2, finished("new-job", 1.0)):
        store.record_end(run, history_limit=2)
    running.state = RunState.FAILED  # the caller's run changing later does not reach the store
    names.append("new-job")
    last = check()
    assert [last[n].id for n in "abcd"] == [newer.id, tie.id, tie2.id, running.id]
    assert last["d"].state == RunState.SUCCESS and last["d"].stdout == b""

    # A restart's clean-up rewrites rows behind the index: it is loaded again.
    store.record_start(left := Run(job_name="e", job_type="job-local", started_at=7.0))
    names.append("e")
    assert store.last_runs(["e"])["e"].state == RunState.RUNNING
    assert store.mark_interrupted() == 1
    assert store.last_runs(["e"])["e"].state == RunState.CANCELLED and left.id == store.last_runs(["e"])["e"].id
    check()


def test_concurrent_writers_lose_nothing(store: HistoryStore) -> None:
    threads, per_thread = 16, 40
    errors: list[BaseException] = []
    stop_reading = threading.Event()

    def write(index: int) -> None:
        try:
            for i in range(per_thread):
                run = Run(job_name=f"job{index}", job_type="job-local", started_at=float(i))
                store.record_start(run)
                run.ended_at, run.state, run.stdout = float(i) + 0.5, RunState.SUCCESS, f"{index}:{i}".encode()
                store.record_end(run, history_limit=0)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        while not stop_reading.is_set():
            store.recent(limit=50, with_output=True)

    reader = threading.Thread(target=read)
    reader.start()
    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop_reading.set()
    reader.join()
    assert errors == []
    runs = store.recent(limit=-1, with_output=True)
    assert len(runs) == threads * per_thread
    assert all(r.state == RunState.SUCCESS for r in runs)
    assert {r.stdout for r in runs} == {f"{n}:{i}".encode() for n in range(threads) for i in range(per_thread)}


CRASHING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from ofelia_core.history import HistoryStore
    from ofelia_core.runs import Run, RunState

    store = HistoryStore(Path(sys.argv[1]))
    run = Run(job_name="backup", job_type="job-local", id="0123456789ab", started_at=1.0)
    store.record_start(run)
    run.ended_at, run.state, run.exit_code, run.stdout = 2.0, RunState.SUCCESS, 0, b"saved before the crash"
    store.record_end(run, history_limit=10)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_run_whose_record_end_returned_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    child = subprocess.run([sys.executable, "-c", CRASHING_CHILD, str(path)], capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with HistoryStore(path) as reopened:
        run = reopened.get("0123456789ab")
    assert run is not None
    assert (run.state, run.exit_code, run.stdout) == (RunState.SUCCESS, 0, b"saved before the crash")


def test_the_database_is_private_to_its_owner_and_its_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "history.db"
    with HistoryStore(path) as store:
        store.record_end(finished("a", 1.0), history_limit=10)
        for name in ("history.db", "history.db-wal"):
            assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600, name


def test_synchronous_is_an_option_and_is_validated(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db", synchronous="full") as store:
        assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError, match="synchronous"):
        HistoryStore(tmp_path / "h.db", synchronous="NORMAL; DROP TABLE runs")


# --- locations -------------------------------------------------------------------


def test_state_dir_from_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0, raising=False)
    assert default_state_dir({"OFELIA_STATE_DIR": "/srv/ofelia"}) == Path("/srv/ofelia")


def test_state_dir_for_root_is_var_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0, raising=False)
    assert default_state_dir({"XDG_STATE_HOME": "/x"}) == Path("/var/lib/ofelia")


def test_state_dir_for_a_user_follows_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000, raising=False)
    assert default_state_dir({"XDG_STATE_HOME": "/x/state", "HOME": "/home/u"}) == Path("/x/state/ofelia")
    assert default_state_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/ofelia")
    # A relative XDG_STATE_HOME is invalid per the spec and ignored.
    assert default_state_dir({"XDG_STATE_HOME": "rel", "HOME": "/home/u"}) == Path("/home/u/.local/state/ofelia")


def test_history_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000, raising=False)
    env = {"OFELIA_STATE_DIR": "/env/state"}
    assert history_path({"history-path": "/data/h.db", "state-dir": "/s"}, env) == Path("/data/h.db")
    assert history_path({"state-dir": "/s"}, env) == Path("/s/history.db")
    assert history_path({}, env) == Path("/env/state/history.db")
