"""The ``job-service-run`` runner: a one-off swarm service.

Each run creates a replicated service of one task with restart condition
``none`` (the driver sets it), labelled ``ofelia.job``, ``ofelia.run-id`` and
``ofelia.managed=true``, polls its task until the task completes, fails or is
rejected, then copies the service's logs into the run's buffers. Unlike Ofelia,
``user`` and ``tty`` are applied.

Exit codes: the task container's own; 255 for a rejected task (Ofelia's
convention), with the engine's reason as the run's error. A task that failed
without a usable exit code also gets 255.

Polling, not events: a run costs one ``service_tasks`` request per poll, with a
delay growing from :data:`POLL_INITIAL` to :data:`POLL_MAX` (then one a second).
A quick task (0.5 s end to end on a one-node swarm) takes seven engine requests:
create, 3 polls, logs (an inspect and the logs in the baseline driver), remove;
a 3 s task 8 polls. A task that printed nothing costs up to
``len(LOG_RETRY_DELAYS)`` more log requests and 0.3 s.

A missing image is not pulled here: the node the swarm picks pulls it (and a
manager that runs no tasks needs no copy). When that fails the engine rejects
the task with "No such image", reported as such with exit code 255.

All engine access goes through the :class:`~ofelia_hookspecs.protocols.DockerClient`
Protocol; the module is imported only when a run starts (see ``jobtypes``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loguru import logger
from ofelia_hookspecs.errors import (
    DockerError,
    DockerTimeout,
    NotFound,
    RunCancelled,
    RunError,
    RunTimedOut,
)
from ofelia_hookspecs.settings import format_duration
from ofelia_hookspecs.types import ServiceSpec

from .options import docker_client, environment, labels, split_words
from .streams import close_quietly, copy_output

if TYPE_CHECKING:
    from ofelia_hookspecs.protocols import DockerClient
    from ofelia_hookspecs.types import RunContext

    from ..jobs import Job
    from ..runs import Run

#: Seconds before the first poll of the task (a swarm never finishes one sooner).
POLL_INITIAL = 0.1
#: Growth of the delay between polls, and its ceiling in seconds.
POLL_FACTOR = 1.5
POLL_MAX = 1.0
#: Pauses before asking again for the logs of a task that ran but showed no output
#: yet: the swarm log broker may lag the task's end by a moment.
LOG_RETRY_DELAYS = (0.1, 0.2)
#: Exit code of a rejected task, and of a failed one that has no exit code.
REJECTED_EXIT_CODE = 255

#: States in which a task will never run (again); every other state is still on its way.
TERMINAL_STATES = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})

SWARM_NEEDED = "job-service-run needs a swarm: run `docker swarm init` (or point ofelia at a manager node)"

_NOT_A_MANAGER = re.compile(r"not a swarm manager|not part of a swarm", re.IGNORECASE)
# The engine's Err for a container that exited non-zero: the exit code says it all.
_PLAIN_EXIT = re.compile(r"^task: non-zero exit \(\d+\)$")
_NO_SUCH_IMAGE = re.compile(r"no such image", re.IGNORECASE)
# A service name must be a DNS label: letters, digits and dashes, at most 63.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_NAME_MAX = 63


def run_service(job: Job, run: Run, context: RunContext) -> int:
    """Run ``job`` as a one-off swarm service; return its task's exit code.

    Raises :class:`RunError` when the service cannot be created (no swarm, a
    missing network, ...) or is lost while it runs; :class:`RunTimedOut` after
    removing a service that passed ``context.max_runtime`` and
    :class:`RunCancelled` after removing one because ``context.cancel`` was
    set. A rejected task returns 255 and sets ``run.error`` to the reason (the
    executor keeps an error a runner set). The service is removed when the
    run ends if ``delete`` is true, and always when it did not end by itself.
    """
    client = docker_client(context)
    spec = service_spec(job, run)
    service_id = _create(client, spec)
    deadline = None if context.max_runtime is None else time.monotonic() + context.max_runtime
    # Removed by us already, or never to be removed (delete = false and the task ended).
    settled = False
    try:
        ended, task = _watch(client, service_id, context, deadline)
        if not ended:
            # One fresh look: a task that ended meanwhile keeps its outcome, and the
            # error says where a task that never ran was stuck.
            ended, task = _look(client, service_id, task)
        if not ended:
            # Stopped (max-runtime or shutdown): keep what it printed so far, then stop it.
            _copy_logs(client, service_id, context, wait_for_output=False)
            settled = True
            raise _stopped(client, service_id, context, task)
        assert task is not None
        code, error = task_outcome(task, spec.image)
        if _container_ran(task):
            _copy_logs(client, service_id, context, wait_for_output=True)
        if error:
            run.error = error
        if not job.get("delete", True):
            settled = True
        return code
    finally:
        if not settled:
            _remove_quietly(client, service_id)


# --- building the service -----------------------------------------------------------


def service_spec(job: Job, run: Run) -> ServiceSpec:
    """The service for one run of ``job``; raises :class:`RunError` for a bad command or environment.

    Keys read as for job-run (``options``): the command is split like a shell,
    a bare ``KEY`` in ``environment`` passes the scheduler's own value.
    """
    return ServiceSpec(
        image=str(job.get("image", "")),
        name=service_name(job.name, run.id),
        # Empty: the image's default command.
        command=split_words(str(job.get("command") or ""), "command", required=False) or None,
        user=str(job.get("user") or ""),
        tty=bool(job.get("tty", False)),
        environment=environment(job),
        network=job.get("network") or None,
        # On the service and on its task's container (the driver puts them on both).
        labels=labels(job, run.id),
    )


def service_name(job_name: str, run_id: str) -> str:
    """``ofelia-<job>-<run id>``, made a valid service name (a job name may hold any character)."""
    suffix = f"-{run_id}"
    slug = _NAME_UNSAFE.sub("-", job_name).strip("-")
    slug = slug[: _NAME_MAX - len("ofelia-") - len(suffix)].rstrip("-")
    return f"ofelia-{slug}{suffix}" if slug else f"ofelia{suffix}"


def _create(client: DockerClient, spec: ServiceSpec) -> str:
    try:
        return client.service_create(spec)
    except DockerError as exc:
        if isinstance(exc, DockerTimeout) and spec.name:
            # The engine may have created it and only the answer was late: never leave it behind.
            _remove_quietly(client, spec.name)
        if _NOT_A_MANAGER.search(exc.message):
            raise RunError(f"{SWARM_NEEDED}; the engine said: {exc.message}") from None
        raise RunError(f"cannot create service {spec.name} from image {spec.image!r}: {exc.message}") from None


# --- watching its task ----------------------------------------------------------------


def _watch(
    client: DockerClient, service_id: str, context: RunContext, deadline: float | None
) -> tuple[bool, dict[str, Any] | None]:
    """Poll until the task ends, the deadline passes or ``cancel`` is set.

    Returns whether the task ended, and the task as last seen (None before the
    swarm made one).
    """
    delay = POLL_INITIAL
    task: dict[str, Any] | None = None
    while True:
        timeout = delay if deadline is None else min(delay, deadline - time.monotonic())
        # Waiting on the event, not sleeping: a shutdown is noticed at once.
        if timeout > 0 and context.cancel.wait(timeout):
            return False, task
        if context.cancel.is_set() or (deadline is not None and time.monotonic() >= deadline):
            return False, task
        ended, task = _ended(_tasks(client, service_id), task)
        if ended:
            return True, task
        delay = min(delay * POLL_FACTOR, POLL_MAX)


def _ended(tasks: list[dict[str, Any]], last: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
    """Whether the service's task ended, and the newest task (``last`` when there is none yet)."""
    if not tasks:
        return False, last
    # Restart condition none makes it one task, but wait for every task there is to end.
    ended = all(_state(item) in TERMINAL_STATES for item in tasks)
    return ended, max(tasks, key=lambda task: int(task.get("Version", {}).get("Index", 0)))


def _look(client: DockerClient, service_id: str, last: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
    """:func:`_ended` on a fresh list of tasks; the last one seen when the engine does not answer."""
    try:
        return _ended(client.service_tasks(service_id), last)
    except DockerError:
        return False, last


def _tasks(client: DockerClient, service_id: str) -> list[dict[str, Any]]:
    try:
        return client.service_tasks(service_id)
    except NotFound:
        raise RunError(f"service {service_id} was removed by someone else while its task ran") from None
    except DockerError as exc:
        raise RunError(f"lost track of service {service_id}: {exc}") from None


def _state(task: Mapping[str, Any]) -> str:
    return str(task.get("Status", {}).get("State", ""))


def task_outcome(task: Mapping[str, Any], image: str) -> tuple[int, str | None]:
    """The exit code of an ended task and the run's error text (None when the exit code says it all).

    Raises :class:`RunError` for a task that was stopped from outside (shutdown,
    orphaned, removed): it has no exit code of its own.
    """
    status = task.get("Status", {})
    state = _state(task)
    err = str(status.get("Err") or "").strip()
    exit_code = status.get("ContainerStatus", {}).get("ExitCode")
    if state == "complete":
        return int(exit_code or 0), None
    if state == "rejected":
        if _NO_SUCH_IMAGE.search(err):
            return REJECTED_EXIT_CODE, (
                f"image {image!r} is not on the node and could not be pulled (task rejected: {err})"
            )
        return REJECTED_EXIT_CODE, f"task rejected: {err or status.get('Message') or 'no reason given'}"
    if state == "failed":
        # A container that never started has no real exit code; never report 0 for a failure.
        code = int(exit_code) if exit_code else REJECTED_EXIT_CODE
        return code, (None if not err or _PLAIN_EXIT.match(err) else f"task failed: {err}")
    detail = err or status.get("Message") or "no reason given"
    raise RunError(f"the service's task ended in state {state!r} ({detail}): it was stopped outside ofelia")


def _container_ran(task: Mapping[str, Any]) -> bool:
    """Whether the task got a container, so that logs may hold something."""
    return bool(task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID"))


# --- output and clean-up ------------------------------------------------------------


def _copy_logs(client: DockerClient, service_id: str, context: RunContext, *, wait_for_output: bool) -> None:
    """Copy the service's logs into the run's buffers.

    With ``wait_for_output``, logs that come back empty are asked for again a few
    times (bounded by :data:`LOG_RETRY_DELAYS`). An engine error only logs a
    warning: the task's exit code is what the run reports, output or not.
    """
    for pause in (0.0, *(LOG_RETRY_DELAYS if wait_for_output else ())):
        if pause:
            time.sleep(pause)
        try:
            chunks = client.service_logs(service_id)
            try:
                if copy_output(chunks, context):
                    return
            finally:
                close_quietly(chunks)
        except DockerError as exc:
            logger.warning(f"job-service-run: the logs of service {service_id} could not be read: {exc}")
            return


def _stopped(
    client: DockerClient, service_id: str, context: RunContext, task: Mapping[str, Any] | None
) -> RunError:
    """Remove a service that must stop (which stops its task); the error to raise."""
    try:
        client.service_remove(service_id)
        outcome = "service removed"
    except NotFound:
        outcome = "service already gone"
    except DockerError as exc:
        outcome = f"removing service {service_id} failed, its task may still run: {exc}"
    state = _state(task) if task is not None else "not yet created"
    if state not in ("running", "starting"):
        # A task that never ran (no node fits, a slow pull): say where it was stuck.
        status = task.get("Status", {}) if task is not None else {}
        detail = status.get("Err") or status.get("Message")
        outcome += f" (its task was {state}{': ' + str(detail) if detail and detail != state else ''})"
    if context.cancel.is_set():
        return RunCancelled(f"cancelled at shutdown; {outcome}")
    assert context.max_runtime is not None
    return RunTimedOut(f"max-runtime {format_duration(context.max_runtime)} exceeded; {outcome}")


def _remove_quietly(client: DockerClient, service_id: str) -> None:
    # Called from a finally: an error here must not hide the run's own outcome.
    try:
        client.service_remove(service_id)
    except NotFound:
        pass
    except DockerError as exc:
        logger.warning(f"job-service-run: service {service_id} could not be removed: {exc}")


__all__ = ["run_service", "service_name", "service_spec", "task_outcome"]
