"""``/api/jobs``: the job table, a job's history, run now, enable and disable."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from loguru import logger
from pydantic import BaseModel
from pydantic_core import to_json

from ..errors import OfeliaError
from ..history import NotificationRecord
from ..runs import Run
from .context import Ctx

router = APIRouter(tags=["jobs"])

#: Output kept per stream in a history answer by default (the newest bytes); ``output_limit`` changes it.
DEFAULT_OUTPUT_LIMIT = 64 * 1024
MAX_OUTPUT_LIMIT = 10 * 1024 * 1024


class LastRun(BaseModel):
    id: str
    state: str
    trigger: str
    scheduled_at: float | None
    started_at: float | None
    ended_at: float | None
    duration: float | None
    exit_code: int | None
    error: str | None


class JobOut(BaseModel):
    name: str
    type: str
    schedule: str
    command: str | None
    #: Epoch seconds of the next scheduled run; null when disabled or never scheduled (``@manual``).
    next_run: float | None
    last_run: LastRun | None
    enabled: bool
    running: bool


class NotificationOut(BaseModel):
    #: ``mail``, ``slack``, ``webhook:NAME``, or a plugin's notifier.
    notifier: str
    #: ``sent``, ``failed``, ``dropped`` (queue full, or the daemon stopped first) or ``suppressed`` (cooldown).
    state: str
    attempts: int
    error: str | None
    #: Epoch seconds when the outcome was known.
    at: float


class RunOut(LastRun):
    job: str
    stdout: str
    stderr: str
    #: True when older output was dropped (by the 10 MiB capture cap, or by ``output_limit`` here).
    stdout_truncated: bool
    stderr_truncated: bool
    #: The run's notifications (see docs/notifications.md), oldest first.
    notifications: list[NotificationOut] = []


class HistoryOut(BaseModel):
    job: str
    runs: list[RunOut]


class JobName(BaseModel):
    name: str


class RunStarted(BaseModel):
    id: str
    job: str
    #: ``running`` once admitted (it may wait in the queue); ``skipped``/``cancelled`` when refused.
    state: str
    error: str | None


class JobToggled(BaseModel):
    name: str
    enabled: bool
    #: False when the job already was in that state.
    changed: bool


@router.get("/api/jobs", response_model=list[JobOut])
def list_jobs(ctx: Ctx) -> Response:
    """Every scheduled job with its next run, its last run and whether it is enabled and running."""
    daemon, history = ctx.daemon, ctx.runtime.history
    jobs = dict(daemon.jobs)
    fires = daemon.scheduler.next_fires() if daemon.scheduler is not None else {}
    running = {run.job_name for run in daemon.dispatcher.running()} if daemon.dispatcher is not None else set()
    names = sorted(jobs)
    # One query for all the jobs' last runs: with one per job, each of the 1,000 SQLite calls gave
    # up the GIL and waited to get it back while the runs held it (bench/bench_web.py).
    lasts = history.last_runs(names)
    disabled = daemon.disabled
    rows: list[dict[str, Any]] = []
    for name in names:
        job = jobs[name]
        last = lasts.get(name)
        command = job.get("command")
        rows.append({
            "name": name, "type": job.type, "schedule": str(job.get("schedule", "")),
            "command": None if command is None else str(command), "next_run": fires.get(name),
            "last_run": None if last is None else _last_fields(last),
            "enabled": name not in disabled, "running": name in running,
        })
    # Plain dicts serialized in one call: building and validating 2,000 models per request was
    # two thirds of its time with 1,000 jobs. The shape is JobOut's (tests check it against the model).
    return Response(to_json(rows), media_type="application/json")


@router.get("/api/jobs/{name}/history", responses={404: {"description": "no such job and no history"}})
def job_history(
    name: str,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000, description="Runs to return, newest first.")] = 20,
    output_limit: Annotated[
        int, Query(ge=0, le=MAX_OUTPUT_LIMIT, description="Bytes of stdout and of stderr kept per run (the newest).")
    ] = DEFAULT_OUTPUT_LIMIT,
) -> HistoryOut:
    """A job's recent runs with their output (also for a job removed since, while its history lasts)."""
    runs = ctx.runtime.history.recent(name, limit, with_output=True)
    if not runs and name not in ctx.daemon.jobs:
        raise HTTPException(404, f"no job named {name!r}")
    notices = ctx.runtime.history.notifications(run.id for run in runs)
    return HistoryOut(job=name, runs=[_with_output(run, output_limit, notices.get(run.id, ())) for run in runs])


@router.post("/api/jobs/run", responses={404: {"description": "no such job"}})
def run_job(body: JobName, ctx: Ctx) -> RunStarted:
    """Run a job now, through the same admission rules as a scheduled run (a disabled job too)."""
    _known(ctx, body.name)
    try:
        run = ctx.daemon.run_now(body.name)
    except OfeliaError as exc:
        raise HTTPException(404, str(exc)) from None
    logger.info(f"web: run of {body.name!r} requested ({run.id})")
    return RunStarted(id=run.id, job=run.job_name, state=str(run.state), error=run.error)


@router.post("/api/jobs/enable", responses={404: {"description": "no such job"}})
def enable_job(body: JobName, ctx: Ctx) -> JobToggled:
    """Schedule the job again (its next run is computed from now)."""
    return _toggle(ctx, body.name, True)


@router.post("/api/jobs/disable", responses={404: {"description": "no such job"}})
def disable_job(body: JobName, ctx: Ctx) -> JobToggled:
    """Stop scheduling the job until it is enabled or the daemon restarts (a reload keeps it disabled)."""
    return _toggle(ctx, body.name, False)


def _toggle(ctx: Ctx, name: str, enabled: bool) -> JobToggled:
    _known(ctx, name)
    try:
        changed = ctx.daemon.set_job_enabled(name, enabled)
    except OfeliaError as exc:
        raise HTTPException(404, str(exc)) from None
    return JobToggled(name=name, enabled=enabled, changed=changed)


def _known(ctx: Ctx, name: str) -> None:
    if name not in ctx.daemon.jobs:
        raise HTTPException(404, f"no job named {name!r}")


def _last_fields(run: Run) -> dict[str, Any]:
    """A run as :class:`LastRun`'s fields."""
    return {
        "id": run.id, "state": str(run.state), "trigger": str(run.trigger), "scheduled_at": run.scheduled_at,
        "started_at": run.started_at, "ended_at": run.ended_at, "duration": run.duration,
        "exit_code": run.exit_code, "error": run.error,
    }


def _with_output(run: Run, limit: int, notices: Iterable[NotificationRecord] = ()) -> RunOut:
    stdout, stderr = run.stdout[-limit:] if limit else b"", run.stderr[-limit:] if limit else b""
    return RunOut(
        **_last_fields(run), job=run.job_name,
        stdout=stdout.decode(errors="replace"), stderr=stderr.decode(errors="replace"),
        stdout_truncated=run.stdout_truncated or len(stdout) < len(run.stdout),
        stderr_truncated=run.stderr_truncated or len(stderr) < len(run.stderr),
        notifications=[
            NotificationOut(notifier=n.notifier, state=n.state, attempts=n.attempts, error=n.error, at=n.at)
            for n in notices
        ],
    )
