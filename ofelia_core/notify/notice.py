"""The :class:`~ofelia_hookspecs.types.Notice` of a finished run, built once per run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ofelia_hookspecs.types import Notice

if TYPE_CHECKING:
    from ..jobs import Job
    from ..middlewares.save import SaveMiddleware
    from ..runs import Run


def build_notice(job: Job, run: Run, documents: SaveMiddleware, hostname: str) -> Notice:
    """``documents`` writes the save middleware's JSON (secrets left out): notifiers attach
    exactly what ``save-folder`` would hold."""
    return Notice(
        job_name=run.job_name,
        job_type=run.job_type,
        run_id=run.id,
        state=str(run.state),
        trigger=str(run.trigger),
        attempt=run.attempt,
        scheduled_at=run.scheduled_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        exit_code=run.exit_code,
        error=run.error,
        stdout=bytes(run.stdout),
        stderr=bytes(run.stderr),
        document=documents.document(job, run),
        hostname=hostname,
    )
