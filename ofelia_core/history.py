"""Run history in an embedded SQLite database.

One row per run. The store is shared by every run thread: writes go through
one connection under a lock and commit before the call returns, so a run that
was reported finished is durable (see below).

Durability: the database runs in WAL mode. A commit appends the transaction to
the ``-wal`` file with ``write()`` before it returns, so once ``record_end``
returns the run survives a crash or SIGKILL of the process, whatever
``synchronous`` is: the data is in the kernel, and the next open replays the
WAL. ``synchronous`` only matters for a power loss or kernel crash: with
``NORMAL`` (the default) the last transactions since the previous checkpoint
may be rolled back (the file is never corrupted); ``FULL`` fsyncs the WAL on
every commit so nothing committed is lost, at several times the cost per run.

Batching: measured on the development VM with 200-byte outputs, a lock and a
commit per call does about 4,500 start+end pairs a second from one thread and
3,500 from 16; a single writer thread with group commit was no faster with
``NORMAL`` (its hand-offs cost what the shared commits save: 5,000 against
5,800 pairs/s on a bare prototype) and only pays off with ``FULL`` (3,400
against 1,700). So: the lock, which is simpler and has no thread to stop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .runs import Run, RunState

#: ``PRAGMA user_version`` of the schema this code writes. Bump it and add a
#: step to ``_MIGRATIONS`` when the schema changes.
SCHEMA_VERSION = 3

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

INTERRUPTED_ERROR = "the daemon stopped before the run finished"

# Small columns first and the output blobs last: SQLite reads a column that
# sits after a large blob only by walking the blob's overflow pages.
_SCHEMA_V1 = (
    """CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    job_name TEXT NOT NULL,
    job_type TEXT NOT NULL,
    trigger TEXT NOT NULL,
    -- the run's time for ordering: started_at, else scheduled_at, else ended_at
    at REAL NOT NULL,
    scheduled_at REAL,
    started_at REAL,
    ended_at REAL,
    exit_code INTEGER,
    state TEXT NOT NULL,
    error TEXT,
    attempt INTEGER NOT NULL,
    stdout_truncated INTEGER NOT NULL,
    stderr_truncated INTEGER NOT NULL,
    stdout BLOB NOT NULL,
    stderr BLOB NOT NULL
)""",
    "CREATE INDEX runs_job_at ON runs (job_name, at)",
    "CREATE INDEX runs_at ON runs (at)",
)

# Version 2 (run policies): a retry's record names its first attempt. Nullable, so
# rows written by version 1 read as first attempts.
_SCHEMA_V2 = ("ALTER TABLE runs ADD COLUMN retry_of TEXT",)

# Version 3 (notifications): delivery records. They live as long as their run's row: the
# trigger deletes them with it (history-limit pruning), and a record whose run is already
# gone is not inserted (_NOTIFICATION_INSERT), so none outlives its run.
_SCHEMA_V3 = (
    """CREATE TABLE notifications (
    run_id TEXT NOT NULL,
    job_name TEXT NOT NULL,
    notifier TEXT NOT NULL,
    -- sent, failed, dropped or suppressed
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    at REAL NOT NULL
)""",
    "CREATE INDEX notifications_run ON notifications (run_id)",
    """CREATE TRIGGER runs_delete_notifications AFTER DELETE ON runs BEGIN
    DELETE FROM notifications WHERE run_id = old.id;
END""",
)

#: Statements that take the schema from version ``n - 1`` to ``n``.
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}

_NOTIFICATION_INSERT = """
INSERT INTO notifications (run_id, job_name, notifier, state, attempts, error, at)
SELECT :run_id, :job_name, :notifier, :state, :attempts, :error, :at
WHERE EXISTS (SELECT 1 FROM runs WHERE id = :run_id)
"""

#: Run ids per statement of :meth:`HistoryStore.notifications`.
_NOTIFICATIONS_CHUNK = 500


@dataclass(frozen=True)
class NotificationRecord:
    """One notification of one run to one notifier: ``sent``, ``failed``, ``dropped`` (the
    queue was full, or the daemon stopped first) or ``suppressed`` (``notify-cooldown``)."""

    run_id: str
    job_name: str
    notifier: str
    state: str
    attempts: int
    error: str | None
    at: float

_SUMMARY_COLUMNS = (
    "id, job_name, job_type, trigger, scheduled_at, started_at, ended_at, exit_code, state, "
    "error, attempt, stdout_truncated, stderr_truncated, retry_of"
)
_ALL_COLUMNS = _SUMMARY_COLUMNS + ", stdout, stderr"

_UPSERT = """
INSERT INTO runs (id, job_name, job_type, trigger, at, scheduled_at, started_at, ended_at, exit_code,
                  state, error, attempt, stdout_truncated, stderr_truncated, retry_of, stdout, stderr)
VALUES (:id, :job_name, :job_type, :trigger, :at, :scheduled_at, :started_at, :ended_at, :exit_code,
        :state, :error, :attempt, :stdout_truncated, :stderr_truncated, :retry_of, :stdout, :stderr)
ON CONFLICT (id) DO UPDATE SET
    job_name = excluded.job_name, job_type = excluded.job_type, trigger = excluded.trigger,
    at = excluded.at, scheduled_at = excluded.scheduled_at, started_at = excluded.started_at,
    ended_at = excluded.ended_at, exit_code = excluded.exit_code, state = excluded.state,
    error = excluded.error, attempt = excluded.attempt, stdout_truncated = excluded.stdout_truncated,
    stderr_truncated = excluded.stderr_truncated, retry_of = excluded.retry_of,
    stdout = excluded.stdout, stderr = excluded.stderr
"""

# Deletes the job's finished rows older than its newest ``limit`` rows. A
# running row counts toward the limit but is never deleted (record_end will
# update it). The OFFSET walks the (job_name, at) index, so no id set is built.
_PRUNE = """
DELETE FROM runs WHERE job_name = :job AND state != 'running' AND rowid IN (
    SELECT rowid FROM runs WHERE job_name = :job ORDER BY at DESC, rowid DESC LIMIT -1 OFFSET :limit
)
"""


class HistoryStore:
    """Run history in a SQLite file; thread-safe.

    ``history_limit`` (per job, newest kept): ``0`` keeps every run, as
    ``save-retention = 0`` and ``max-runtime = 0`` mean "no limit" elsewhere.
    """

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}")
        self.path = Path(path)
        _create_private_file(self.path)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        # Each job's newest run, kept beside the table once last_runs() has loaded it (see there).
        self._last_lock = threading.Lock()
        self._last: dict[str, tuple[float, Run]] | None = None
        self._writer = _connect(self.path, mode)
        try:
            _migrate(self._writer, self.path)
            # A second connection for reads: in WAL mode it never blocks (nor
            # waits for) a commit, so reading large outputs does not stall runs.
            self._reader = _connect(self.path, mode)
        except BaseException:
            self._writer.close()
            raise

    # --- writes ------------------------------------------------------------------

    def record_start(self, run: Run) -> None:
        """Store ``run`` as running, so a crash mid-run is visible later."""
        row = _row(run)
        with self._transaction() as con:
            con.execute(_UPSERT, row)
        self._note_last(run, row["at"])

    def record_end(self, run: Run, *, history_limit: int) -> None:
        """Store the run's final state and output and drop the job's rows beyond its
        newest ``history_limit`` (0 keeps all), in one transaction. Returns once
        committed: a run reported finished after this call is durable."""
        self.record(run, history_limit=history_limit)

    def record(self, run: Run, *, history_limit: int) -> None:
        """Store a run in one write: one that never started (skipped, missed) or a finished one."""
        # One transaction (one commit) for the row and the pruning: at 1,000 runs/s
        # the commit is most of the cost.
        row = _row(run)
        with self._transaction() as con:
            con.execute(_UPSERT, row)
            if history_limit > 0:
                con.execute(_PRUNE, {"job": run.job_name, "limit": history_limit})
        self._note_last(run, row["at"])

    def record_notification(
        self, *, run_id: str, job_name: str, notifier: str, state: str, attempts: int, error: str | None, at: float
    ) -> bool:
        """Store a notification's outcome; ``False`` when its run is no longer in the history
        (pruned already), so no record outlives its run."""
        record = NotificationRecord(run_id, job_name, notifier, state, attempts, error, at)
        return self.record_notifications([record]) > 0

    def record_notifications(self, records: Sequence[NotificationRecord]) -> int:
        """Store several in one transaction (one commit: the delivery worker's batch); returns
        how many were stored (a record whose run was pruned already is not)."""
        stored = 0
        with self._transaction() as con:
            for record in records:
                stored += con.execute(_NOTIFICATION_INSERT, vars(record)).rowcount
        return stored

    def mark_interrupted(self) -> int:
        """At daemon start: runs left ``running`` by a previous process become
        ``cancelled``; returns how many. Their ``ended_at`` stays unknown (None)."""
        with self._last_lock, self._transaction() as con:
            cursor = con.execute(
                "UPDATE runs SET state = ?, error = ? WHERE state = ?",
                (str(RunState.CANCELLED), INTERRUPTED_ERROR, str(RunState.RUNNING)),
            )
            self._last = None  # loaded again from the table when next asked
            return cursor.rowcount

    # --- reads -------------------------------------------------------------------

    def recent(self, job_name: str | None = None, limit: int = 20, *, with_output: bool = False) -> list[Run]:
        """The newest runs first, of one job or of all. Without ``with_output``
        the runs' ``stdout`` and ``stderr`` are empty (the blobs are not read)."""
        columns = _ALL_COLUMNS if with_output else _SUMMARY_COLUMNS
        where, params = ("WHERE job_name = ?", [job_name]) if job_name is not None else ("", [])
        sql = f"SELECT {columns} FROM runs {where} ORDER BY at DESC, rowid DESC LIMIT ?"
        with self._read_lock:
            rows = self._reader.execute(sql, (*params, limit)).fetchall()
        return [_run(row) for row in rows]

    def last_runs(self, job_names: Iterable[str]) -> dict[str, Run]:
        """The newest run of each named job, as ``recent(name, 1)`` gives it (without output); a job
        without history is left out. The runs returned are shared snapshots: do not change them.

        The first call reads every job's newest row; from then on the store keeps them up to date
        as it writes, and no call reads SQLite. With 1,000 jobs a query gave up the GIL once per
        row, and under load each time waited to get it back: 30 to 60 ms of a job-table request
        (bench/bench_web.py).
        """
        with self._last_lock:
            if self._last is None:
                self._last = {run.job_name: (at, run) for run, at in self._newest_rows()}
            last = self._last
            return {name: entry[1] for name in job_names if (entry := last.get(name)) is not None}

    def _note_last(self, run: Run, at: float) -> None:
        """Keep ``run`` as its job's newest run if it is (a copy without output: the caller's run
        changes as it goes on). Called after the commit, so a concurrent first load either saw the
        row or runs before this."""
        with self._last_lock:
            last = self._last
            if last is None:
                return
            current = last.get(run.job_name)
            # A tie of ``at`` goes to the row written later, as recent()'s ORDER BY at, rowid does
            # for a new row; an older row updated at the very same instant is the one case it misses.
            if current is None or at >= current[0] or current[1].id == run.id:
                last[run.job_name] = (at, replace(run, stdout=b"", stderr=b""))

    def _newest_rows(self) -> list[tuple[Run, float]]:
        """Every job's newest row and its ``at``, walking the ``(job_name, at)`` index backwards."""
        sql = (
            f"SELECT {_SUMMARY_COLUMNS}, at FROM runs WHERE rowid IN ("
            "SELECT (SELECT r.rowid FROM runs AS r WHERE r.job_name = names.job_name "
            "ORDER BY r.at DESC, r.rowid DESC LIMIT 1) FROM (SELECT DISTINCT job_name FROM runs) AS names)"
        )
        with self._read_lock:
            rows = self._reader.execute(sql).fetchall()
        return [(_run(row[:-1]), float(row[-1])) for row in rows]

    def get(self, run_id: str) -> Run | None:
        """One run with its output, or ``None``."""
        with self._read_lock:
            row = self._reader.execute(f"SELECT {_ALL_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run(row)

    def notifications(self, run_ids: Iterable[str]) -> dict[str, list[NotificationRecord]]:
        """The notification records of each run, oldest first; runs without any are left out."""
        ids = list(dict.fromkeys(run_ids))
        found: dict[str, list[NotificationRecord]] = {}
        for i in range(0, len(ids), _NOTIFICATIONS_CHUNK):
            chunk = ids[i : i + _NOTIFICATIONS_CHUNK]
            sql = (
                "SELECT run_id, job_name, notifier, state, attempts, error, at FROM notifications "
                f"WHERE run_id IN ({', '.join(['?'] * len(chunk))}) ORDER BY at, rowid"
            )
            with self._read_lock:
                rows = self._reader.execute(sql, chunk).fetchall()
            for row in rows:
                found.setdefault(row[0], []).append(NotificationRecord(*row))
        return found

    def job_names(self) -> list[str]:
        """Every job with history, sorted."""
        with self._read_lock:
            rows = self._reader.execute("SELECT DISTINCT job_name FROM runs ORDER BY job_name").fetchall()
        return [name for (name,) in rows]

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, _immediate(self._writer):
            yield self._writer


# --- locations -------------------------------------------------------------------


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``OFELIA_STATE_DIR``; else ``/var/lib/ofelia`` for root; else the XDG state directory."""
    env = os.environ if env is None else env
    if env.get("OFELIA_STATE_DIR"):
        return Path(env["OFELIA_STATE_DIR"]).expanduser()
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None and geteuid() == 0:
        return Path("/var/lib/ofelia")
    xdg = env.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec says to ignore a relative value
        return Path(xdg) / "ofelia"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "state" / "ofelia"


def history_path(global_values: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Path:
    """``history-path`` if set; else ``history.db`` in ``state-dir`` or the default state directory."""
    explicit = global_values.get("history-path")
    if explicit:
        return Path(str(explicit)).expanduser()
    state_dir = global_values.get("state-dir")
    base = Path(str(state_dir)).expanduser() if state_dir else default_state_dir(env)
    return base / "history.db"


# --- helpers ---------------------------------------------------------------------


def _create_private_file(path: Path) -> None:
    """Create the parent directories and the database file, readable by its owner only
    (run output may hold secrets). SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (see HistoryStore._transaction).
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        con.execute("PRAGMA journal_mode = WAL")
        con.execute(f"PRAGMA synchronous = {synchronous}")  # validated against SYNCHRONOUS_MODES
        # Truncate the WAL back to this size after a checkpoint; large outputs grow it.
        con.execute("PRAGMA journal_size_limit = 67108864")
    except BaseException:
        con.close()
        raise
    return con


def _migrate(con: sqlite3.Connection, path: Path) -> None:
    with _immediate(con):
        version: int = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path}: schema version {version} is newer than this ofelia's")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {step}")


@contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[None]:
    """A write transaction, committed on exit. IMMEDIATE takes the write lock
    up front: two processes opening a new file do not both create the schema."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _row(run: Run) -> dict[str, Any]:
    at = next((t for t in (run.started_at, run.scheduled_at, run.ended_at) if t is not None), None)
    return {
        "id": run.id,
        "job_name": run.job_name,
        "job_type": run.job_type,
        "trigger": str(run.trigger),
        "at": time.time() if at is None else at,
        "scheduled_at": run.scheduled_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "exit_code": run.exit_code,
        "state": str(run.state),
        "error": run.error,
        "attempt": run.attempt,
        "stdout_truncated": int(run.stdout_truncated),
        "stderr_truncated": int(run.stderr_truncated),
        "retry_of": run.retry_of,
        "stdout": bytes(run.stdout),
        "stderr": bytes(run.stderr),
    }


def _run(row: tuple[Any, ...]) -> Run:
    (run_id, job_name, job_type, trigger, scheduled_at, started_at, ended_at, exit_code, state,
     error, attempt, stdout_truncated, stderr_truncated, retry_of) = row[:14]  # fmt: skip
    stdout, stderr = (bytes(row[14]), bytes(row[15])) if len(row) > 14 else (b"", b"")
    return Run(
        job_name=job_name,
        job_type=job_type,
        trigger=trigger,
        scheduled_at=scheduled_at,
        id=run_id,
        started_at=started_at,
        ended_at=ended_at,
        exit_code=exit_code,
        state=_state(state),
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=bool(stdout_truncated),
        stderr_truncated=bool(stderr_truncated),
        error=error,
        attempt=attempt,
        retry_of=retry_of,
    )


def _state(value: str) -> str:
    try:
        return RunState(value)
    except ValueError:  # a state written by a newer version: keep the text
        return value
