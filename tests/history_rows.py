"""The rows of a daemon's history database, read straight from the file (another process's, too)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def history_rows(state: Path, job: str | None = None) -> list[dict[str, Any]]:
    """Every run row (of ``job``) in ``state``/history.db, oldest first; none before the schema exists."""
    db = state / "history.db"
    if not db.exists():
        return []
    query = "SELECT * FROM runs" + (" WHERE job_name = ?" if job else "") + " ORDER BY at, rowid"
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(query, (job,) if job else ())]
    except sqlite3.OperationalError as exc:  # the daemon is still creating the schema
        if "no such table" in str(exc):
            return []
        raise
