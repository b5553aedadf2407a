"""The core's own job types and config keys, declared through the same hooks a
third-party plugin uses (the plugin manager registers this module).

Defaults follow Ofelia (see ``docs/configuration.md``); the one deliberate
change is ``web-address``, which listens on loopback unless told otherwise.
A key of kind ``list`` may be repeated (INI) or given as a YAML list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import ConfigKeys, JobTypeSpec, KeyKind, KeySpec

if TYPE_CHECKING:
    from ofelia_hookspecs.types import RunContext

    from .jobs import Job
    from .runs import Run


def _k(
    name: str,
    kind: KeyKind = "str",
    default: Any = None,
    doc: str = "",
    *,
    required: bool = False,
    secret: bool = False,
    choices: tuple[str, ...] = (),
) -> KeySpec:
    return KeySpec(name, kind, default, required, doc, secret, choices)


# --- runners -----------------------------------------------------------------------
# Imported when a run starts, so `ofelia validate` never loads subprocess and selectors.


def _run_local(job: Job, run: Run, context: RunContext) -> int:
    from .jobs_local import run_local

    return run_local(job, run, context)


def _run_exec(job: Job, run: Run, context: RunContext) -> int:
    from .docker_jobs.exec_job import run_exec

    return run_exec(job, run, context)


def _run_container(job: Job, run: Run, context: RunContext) -> int:
    from .docker_jobs.run_job import run_container

    return run_container(job, run, context)


def _run_service(job: Job, run: Run, context: RunContext) -> int:
    from .docker_jobs.service_job import run_service

    return run_service(job, run, context)


# --- pieces shared by several job types -----------------------------------------

_USER = _k("user", default="root", doc="User (name or uid[:gid]) the command runs as.")
_TTY = _k("tty", "bool", False, "Allocate a pseudo-TTY.")
_ENV = _k("environment", "list", doc="`KEY=value`; repeat the key for more variables.")
_WORKDIR = _k("working-dir", doc="Working directory of the command.")
_ENV_FILE = _k("env-file", "list", doc="File of `KEY=value` lines, read by the scheduler; repeatable.")
_NETWORK = _k("network", doc="Network to attach the container to.")
_DELETE = _k("delete", "bool", True, "Remove the container (or service) when the run ends.")


def _command(required: bool) -> KeySpec:
    if required:
        return _k("command", doc="Command to run (split like a shell does).", required=True)
    return _k("command", doc="Command to run; the image's default command when empty.")


JOB_TYPES: tuple[JobTypeSpec, ...] = (
    JobTypeSpec(
        "job-exec",
        (
            _k("container", doc="Name or id of the running container to exec in.", required=True),
            _command(True),
            _USER,
            _TTY,
            _ENV,
            _WORKDIR,
            _ENV_FILE,
        ),
        "Run a command in an already running container (docker exec); exit 0 is success.",
        runner=_run_exec,
    ),
    JobTypeSpec(
        "job-run",
        (
            _k("image", doc="Image for a new container; without it the existing `container` is started."),
            _k("container", doc="Existing container to start when no `image` is given."),
            _command(False),
            _USER,
            _TTY,
            _DELETE,
            _k(
                "pull",
                default="true",
                doc="`true`: pull before each run, using the local image if the pull fails; `false`: pull only "
                "when the image is missing; also `always` (a failed pull fails the run), `never`, `if-missing`.",
                choices=("true", "false", "yes", "no", "on", "off", "1", "0", "always", "never", "if-missing"),
            ),
            _NETWORK,
            _k("hostname", doc="Hostname of the new container."),
            _k("volume", "list", doc="Bind mount or volume (`src:dst[:ro]`); repeatable."),
            _k("volumes-from", "list", doc="Container whose volumes to mount; repeatable."),
            _ENV,
            _k("entrypoint", doc="Override the image's entrypoint."),
            _WORKDIR,
            _ENV_FILE,
        ),
        "Run a command in a new container from `image`, or start an existing `container`; logs are kept.",
        runner=_run_container,
    ),
    JobTypeSpec(
        "job-local",
        (
            _command(True),
            _k("dir", doc="Working directory on the host; the scheduler's own when empty."),
            _ENV,
            _k(
                "user",
                doc="Host user to run as (the scheduler must run as root); the scheduler's user when empty.",
            ),
        ),
        "Run a command on the scheduler's host; `environment` is added to the scheduler's own.",
        runner=_run_local,
    ),
    JobTypeSpec(
        "job-service-run",
        (
            _k("image", doc="Image of the one-off swarm service.", required=True),
            _command(False),
            _NETWORK,
            _DELETE,
            _USER,
            _TTY,
            _ENV,
        ),
        "Run a one-off swarm service (restart condition none) and wait for its task to finish.",
        runner=_run_service,
    ),
)

# --- keys every job takes, and [global] ------------------------------------------

#: Slack, save and mail keys: valid in [global] (for every job) and in a job (for that job).
MIDDLEWARE_KEYS: tuple[KeySpec, ...] = (
    _k("slack-webhook", doc="Slack incoming-webhook URL to post each run to.", secret=True),
    _k("slack-only-on-error", "bool", False, "Post to Slack only when a run fails."),
    _k("save-folder", doc="Folder for each run's `.stdout.log`, `.stderr.log` and `.json`."),
    _k("save-only-on-error", "bool", False, "Save only runs that failed."),
    _k("save-retention", "duration", "0", "Delete saved files older than this (Go duration); 0 keeps them."),
    _k("smtp-host", doc="SMTP server for run reports."),
    _k("smtp-port", "int", doc="SMTP port."),
    _k("smtp-user", doc="SMTP user name."),
    _k("smtp-password", doc="SMTP password.", secret=True),
    _k("smtp-tls-skip-verify", "bool", False, "Do not verify the SMTP server's certificate."),
    _k("email-to", doc="Recipients, comma-separated."),
    _k("email-from", doc="Sender; a `%` is replaced by the host name."),
    _k("mail-only-on-error", "bool", False, "Mail only when a run fails."),
)

JOB_KEYS: tuple[KeySpec, ...] = (
    _k("schedule", "schedule", doc="When the job runs: cron spec or descriptor.", required=True),
    _command(False),
    _k("timezone", doc="IANA zone for the schedule (overrides a `CRON_TZ=` prefix)."),
    _k("no-overlap", "bool", False, "Skip a run while the previous one is still running."),
    *MIDDLEWARE_KEYS,
    _k("run-on-startup", "bool", False, "Also run once when the scheduler starts."),
    _k("history-limit", "int", 10, "Runs kept in the job's history."),
    _k("max-runtime", "duration", "24h", "Stop a run that takes longer (Go duration); 0 for no limit."),
    _k(
        "missed-run-grace",
        "duration",
        "1m",
        "A run started late by at most this much still runs; later, it is recorded as missed.",
    ),
    _k("max-retries", "int", 0, "Retries after a failed or timed-out run (0: none)."),
    _k("retry-delay", "duration", "5s", "Pause before the first retry (Go duration); doubles for each next one."),
    _k("retry-max-delay", "duration", "5m", "Cap on the pause between retries."),
    _k("retry-exponential", "bool", True, "Double the pause for each retry; `false` keeps `retry-delay`."),
    _k(
        "retry-on",
        "list",
        "failed,timed-out",
        "Which outcomes are retried: `failed`, `timed-out`, or both (comma-separated).",
    ),
    _k(
        "on-success",
        "list",
        doc="Jobs to trigger after this job's last attempt succeeded; repeatable or comma-separated.",
    ),
    _k(
        "on-failure",
        "list",
        doc="Jobs to trigger after this job's last attempt failed or timed out; repeatable or comma-separated.",
    ),
    _k(
        "depends-on",
        "list",
        doc="Jobs that must have succeeded in the same cycle before this job runs; repeatable or comma-separated.",
    ),
    _k("webhooks", "list", doc="Names of `[webhook]` sections to notify; repeatable or comma-separated."),
)

GLOBAL_KEYS: tuple[KeySpec, ...] = (
    *MIDDLEWARE_KEYS,
    _k("log-level", default="info", doc="debug, info, warning or error."),
    _k("enable-web", "bool", False, "Serve the web UI and API."),
    _k(
        "web-address",
        default="127.0.0.1:8081",
        doc="Address the web server listens on (loopback by default).",
    ),
    _k("web-auth-enabled", "bool", False, "Require a login for the web UI and API."),
    _k("web-username", doc="Login name for the web UI."),
    _k("web-password-hash", doc="bcrypt hash of the web password.", secret=True),
    _k(
        "web-secret-key",
        doc="Key that signs the web UI's CSRF tokens; random at each start when empty.",
        secret=True,
    ),
    _k("web-token-expiry", "int", 24, "Hours a web login stays valid."),
    _k("web-max-login-attempts", "int", 5, "Failed logins allowed per minute and address; 0 for no limit."),
    _k(
        "metrics-token",
        doc="When set, `/metrics` requires `Authorization: Bearer <this token>`; open when empty.",
        secret=True,
    ),
    _k(
        "metrics-address",
        doc="Also serve `/metrics` alone on this address (`host:port`), with or without `enable-web`.",
    ),
    _k("max-runtime", "duration", "24h", "Default run time limit for every job (Go duration); 0 for none."),
    _k("missed-run-grace", "duration", "1m", "Default missed-run grace for every job."),
    _k("max-concurrent-runs", "int", 32, "Runs executing at once, across all jobs; 0 for no limit."),
    _k(
        "concurrency-overflow",
        default="queue",
        doc="When the limit is reached: `queue` (wait, up to `queue-size`) or `skip` (record as skipped).",
        choices=("queue", "skip"),
    ),
    _k("queue-size", "int", 1000, "Runs that may wait for a free slot; more are recorded as skipped."),
    _k("shutdown-timeout", "duration", "30s", "On SIGTERM, wait this long for running jobs, then cancel them."),
    _k("history-path", doc="SQLite file of run history (default: `history.db` in the state directory)."),
    _k("config-watch-interval", "duration", "2s", "How often config files are checked for changes; 0 disables."),
    _k("default-user", doc="User for container jobs that set none (root when empty)."),
    _k("docker", "bool", False, "Also read jobs from Docker labels."),
    _k(
        "docker-filter",
        "list",
        doc="Which labelled containers are read: `key=value` is a label; `label=...`, `name=...` "
        "and other engine filters pass as they are. Repeatable.",
    ),
    _k(
        "docker-poll-interval",
        "duration",
        "10s",
        "How often the labelled containers are listed again, besides following events; 0 for events only.",
    ),
    _k("docker-startup-retries", "int", 10, "Retries when the Docker engine does not answer at start-up."),
    _k("docker-startup-interval", "duration", "2s", "Pause between those start-up retries."),
    _k("state-dir", doc="Where run history and daemon state are kept."),
    _k("strict", "bool", False, "Treat unknown keys as errors, not warnings."),
)


@hookimpl
def ofelia_register_job_types() -> list[JobTypeSpec]:
    """The four Ofelia job types."""
    return list(JOB_TYPES)


@hookimpl
def ofelia_add_config_keys() -> list[ConfigKeys]:
    """Keys every job takes, and the ``[global]`` keys."""
    return [ConfigKeys("job", JOB_KEYS), ConfigKeys("global", GLOBAL_KEYS)]
