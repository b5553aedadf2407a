# mypy: disable-error-code="empty-body"
"""Hook specifications, grouped by concern.

Every hook is named ``ofelia_<verb>_<noun>``. A hook's arguments only ever
grow: an implementation may accept any subset of them, so adding one never
breaks a plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .markers import hookspec

if TYPE_CHECKING:  # annotations only: importing the Protocols costs start-up time
    from .protocols import BufferPool, DockerClient, MetricsRecorder, TokenManager
    from .types import ConfigKeys, DriverContext, JobTypeSpec, JobView, MetricSample, NotifierSpec, RunView

# --- Driver factories -------------------------------------------------------
# Only the driver chosen for a concern (by flag, name override or the
# ``drivers`` section) may implement its factory; the core refuses any other
# plugin that does, so the flag always decides.


@hookspec(firstresult=True)
def ofelia_make_docker_client(settings: Mapping[str, Any], context: DriverContext) -> DockerClient | None:
    """Build the Docker client driver.

    :param settings: the ``[docker-client]`` section (keys lower-cased).
    :param context: clock, state directory and global settings.
    :return: an object satisfying :class:`~ofelia_hookspecs.protocols.DockerClient`.

    Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def ofelia_make_token_manager(settings: Mapping[str, Any], context: DriverContext) -> TokenManager | None:
    """Build the web token manager driver.

    :param settings: the ``[token-manager]`` section (keys lower-cased).
    :param context: clock, state directory and global settings.
    :return: an object satisfying :class:`~ofelia_hookspecs.protocols.TokenManager`.

    Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def ofelia_make_buffer_pool(settings: Mapping[str, Any], context: DriverContext) -> BufferPool | None:
    """Build the output buffer pool driver.

    :param settings: the ``[buffer-pool]`` section (keys lower-cased).
    :param context: clock, state directory and global settings.
    :return: an object satisfying :class:`~ofelia_hookspecs.protocols.BufferPool`.

    Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def ofelia_make_metrics_recorder(settings: Mapping[str, Any], context: DriverContext) -> MetricsRecorder | None:
    """Build the metrics recorder driver.

    :param settings: the ``[metrics]`` section (keys lower-cased).
    :param context: clock, state directory and global settings.
    :return: an object satisfying :class:`~ofelia_hookspecs.protocols.MetricsRecorder`.

    Stops at the first non-``None`` result.
    """


# --- Job types and configuration --------------------------------------------


@hookspec
def ofelia_register_job_types() -> list[JobTypeSpec]:
    """Declare job types. The core's four (``job-exec``, ``job-run``,
    ``job-local``, ``job-service-run``) are registered through this hook like
    any plugin's.

    Takes no arguments. Every implementation is called; each returns a list of
    :class:`~ofelia_hookspecs.types.JobTypeSpec`. Two plugins declaring the
    same type name is an error at start-up.
    """


@hookspec
def ofelia_add_config_keys() -> list[ConfigKeys]:
    """Contribute keys to a section (``global``, ``job`` for every job type,
    a job type, or a concern's section), so validation accepts them and
    ``secret`` keys are redacted.

    Takes no arguments. Every implementation is called; each returns a list of
    :class:`~ofelia_hookspecs.types.ConfigKeys`.
    """


# --- Runs ---------------------------------------------------------------------


@hookspec(firstresult=True)
def ofelia_execute_run(job: JobView, run: RunView) -> int | None:
    """Execute one run of ``job``. The core implements the innermost call;
    plugins wrap it with ``@hookimpl(wrapper=True)`` to time, retry, or change
    the outcome.

    :param job: the job being run.
    :param run: the run record, updated in place by the core.
    :return: the run's exit code.

    Stops at the first non-``None`` result.
    """


@hookspec
def ofelia_observe_run_start(job: JobView, run: RunView) -> None:
    """Called when a run starts, before any output.

    :param job: the job being run.
    :param run: the run record (``state == "running"``).

    Every implementation is called; return values are ignored.
    """


@hookspec
def ofelia_observe_run_end(job: JobView, run: RunView) -> None:
    """Called once a run has a final state (success, failed, skipped, missed,
    timed out or cancelled) and its output.

    :param job: the job that ran.
    :param run: the finished run record.

    Every implementation is called; return values are ignored. An exception
    raised here is logged and never changes the run.
    """


# --- Notifications --------------------------------------------------------------


@hookspec
def ofelia_register_notifiers() -> list[NotifierSpec]:
    """Declare notifiers (mail, Slack, webhooks are the core's, registered through this hook
    like any plugin's).

    Takes no arguments. Every implementation is called; each returns a list of
    :class:`~ofelia_hookspecs.types.NotifierSpec`. Two plugins declaring the same notifier
    name is an error at start-up.
    """


# --- Metrics ------------------------------------------------------------------


@hookspec
def ofelia_collect_metrics() -> list[MetricSample]:
    """Add a plugin's own values to the metrics exposition; called at each scrape.

    Takes no arguments. Every implementation is called; each returns a list of
    :class:`~ofelia_hookspecs.types.MetricSample`.
    """


#: The factory hook of each concern, by concern key.
FACTORY_HOOKS: dict[str, str] = {
    "docker-client": "ofelia_make_docker_client",
    "token-manager": "ofelia_make_token_manager",
    "buffer-pool": "ofelia_make_buffer_pool",
    "metrics": "ofelia_make_metrics_recorder",
}
