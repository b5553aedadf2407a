"""The ``job-run`` runner: a new container from ``image`` per run, or an existing ``container`` started.

A new container is created (never with auto-remove, which races with reading
its logs), started, waited for, its logs copied into the run's buffers, and
removed unless ``delete = false``. Every container it creates carries the
labels ``ofelia.managed=true``, ``ofelia.job=<job>`` and ``ofelia.run-id=<run id>``.

``max-runtime`` and cancellation stop the container (SIGTERM, SIGKILL after
:data:`STOP_GRACE`, or :data:`CANCEL_GRACE` at shutdown); it is then removed
like any other. An existing container (no ``image``) is started and waited
for, never removed; only the output of this run is kept.

``pull`` follows Ofelia: ``true`` pulls and falls back to the local image when
the pull fails, ``false`` uses the local image and pulls only when it is
missing. ``always`` (a failed pull fails the run), ``never`` and ``if-missing``
(the same as ``false``) say it outright.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from loguru import logger
from ofelia_hookspecs.errors import (
    Conflict,
    DockerError,
    DockerTimeout,
    EngineUnavailable,
    NotFound,
    PullFailed,
    RunCancelled,
    RunError,
    RunTimedOut,
)
from ofelia_hookspecs.settings import format_duration
from ofelia_hookspecs.types import ContainerSpec

from .options import (
    RUN_ID_LABEL,
    docker_client,
    engine_error,
    entrypoint,
    environment,
    labels,
    split_words,
)
from .streams import Reason, copy_output, count_output, skip_output, watchdog

if TYPE_CHECKING:
    from ofelia_hookspecs.protocols import DockerClient
    from ofelia_hookspecs.types import RunContext

    from ..jobs import Job
    from ..runs import Run

#: Seconds between SIGTERM and SIGKILL when a run passes max-runtime (``docker stop``'s default).
STOP_GRACE = 10.0
#: The same at shutdown, shorter: the dispatcher gives cancelled runs 15 s in all.
CANCEL_GRACE = 3.0
#: Extra seconds to wait for the stop request itself, beyond its grace.
STOP_SLACK = 60.0

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_PULL_FAILED_PREFIX = re.compile(r"^(image not found locally and )?pull (of \S+ )?failed: ", re.IGNORECASE)
#: What ``pull`` accepts (case-insensitive); the booleans are Ofelia's.
PULL_CHOICES = (*sorted(TRUE_WORDS), *sorted(FALSE_WORDS), "always", "never", "if-missing")


def pull_policy(value: object) -> str:
    """``true`` (Ofelia's pull with fallback), ``always``, ``never`` or ``if-missing``."""
    text = "true" if value is True else "false" if value is False else str(value).strip().lower()
    if text in TRUE_WORDS:
        return "true"
    if text in FALSE_WORDS:
        return "if-missing"
    if text in ("always", "never", "if-missing"):
        return text
    raise RunError(f"pull must be one of {', '.join(PULL_CHOICES)}, got {value!r}")


def run_container(job: Job, run: Run, context: RunContext) -> int:
    """Run ``job`` once; return the container's exit code.

    Raises :class:`RunError` when the image is missing and cannot be pulled,
    the container cannot be created or started, or the engine fails;
    :class:`RunTimedOut` after ``context.max_runtime`` and
    :class:`RunCancelled` when ``context.cancel`` is set (the container was
    stopped, and removed if the run created it). ``run`` is not touched.
    """
    client = docker_client(context)
    image = str(job.get("image") or "").strip()
    if image:
        return _run_new(client, job, run, context, image)
    name = str(job.get("container") or "").strip()
    if name:
        return _run_existing(client, name, context)
    raise RunError("job-run needs an image (a new container per run) or a container (an existing one to start)")


def container_spec(job: Job, run_id: str, image: str) -> ContainerSpec:
    """The new container of a run, from the job's keys (checked before the engine is asked)."""
    command = split_words(str(job.get("command") or ""), "command", required=False)
    return ContainerSpec(
        image=image,
        # Empty: the image's own command.
        command=command or None,
        entrypoint=entrypoint(job),
        user=str(job.get("user") or ""),
        tty=bool(job.get("tty", False)),
        environment=environment(job),
        working_dir=str(job.get("working-dir") or "") or None,
        hostname=str(job.get("hostname") or "") or None,
        network=str(job.get("network") or "") or None,
        volumes=tuple(job.get("volume") or ()),
        volumes_from=tuple(job.get("volumes-from") or ()),
        labels=labels(job, run_id),
    )


def ensure_image(client: DockerClient, image: str, policy: str) -> None:
    """Make ``image`` available as ``policy`` says, or raise one clear :class:`RunError`."""
    pull_error: PullFailed | None = None
    if policy in ("true", "always"):
        try:
            client.image_pull(image)
            return
        except PullFailed as exc:
            if policy == "always":
                raise RunError(f"image {image!r} could not be pulled (pull = always): {_pull_reason(exc)}") from exc
            pull_error = exc
        except DockerError as exc:
            raise engine_error(exc, f"cannot pull image {image!r}") from exc
    if _image_present(client, image):
        if pull_error is not None:
            logger.warning(f"pull of image {image!r} failed, using the local one: {_pull_reason(pull_error)}")
        return
    if policy == "never":
        raise RunError(f"image {image!r} is not present locally (pull = never)")
    if pull_error is None:
        try:
            client.image_pull(image)
            return
        except PullFailed as exc:
            pull_error = exc
        except DockerError as exc:
            raise engine_error(exc, f"cannot pull image {image!r}") from exc
    reason = _pull_reason(pull_error)
    raise RunError(f"image {image!r} is not present locally and could not be pulled: {reason}") from pull_error


def _pull_reason(exc: PullFailed) -> str:
    # Drivers tend to say "pull failed" themselves; the run's message already does.
    return _PULL_FAILED_PREFIX.sub("", exc.message)


def _image_present(client: DockerClient, image: str) -> bool:
    try:
        client.image_inspect(image)
    except NotFound:
        return False
    except DockerError as exc:
        raise engine_error(exc, f"cannot inspect image {image!r}") from exc
    return True


def _run_new(client: DockerClient, job: Job, run: Run, context: RunContext, image: str) -> int:
    policy = pull_policy(job.get("pull", "true"))
    spec = container_spec(job, run.id, image)
    _check_not_cancelled(context)
    ensure_image(client, image, policy)
    _check_not_cancelled(context)
    try:
        container_id = client.container_create(spec)
    except DockerError as exc:
        if isinstance(exc, EngineUnavailable | DockerTimeout):
            # The engine may have created it before failing to answer: find it by its run id.
            _remove_run_containers(client, run.id)
        raise engine_error(exc, f"cannot create a container from image {image!r}") from exc
    delete = bool(job.get("delete", True))
    finished = False
    try:
        code = _start_and_wait(client, container_id, context, None)
        finished = True
        return code
    finally:
        if delete:
            _remove(client, container_id, job, run)
        elif not finished:
            # Kept as asked, but never left running by a run that failed midway.
            with contextlib.suppress(DockerError):
                client.container_kill(container_id)


def _run_existing(client: DockerClient, name: str, context: RunContext) -> int:
    try:
        info = client.container_inspect(name)
    except NotFound:
        raise RunError(f"cannot start container {name!r}: not found") from None
    except DockerError as exc:
        raise engine_error(exc, f"cannot inspect container {name!r}") from exc
    state: Mapping[str, object] = info.get("State") or {}
    if state.get("Paused"):
        raise RunError(f"cannot start container {name!r}: it is paused")
    if state.get("Running") or state.get("Restarting"):
        raise RunError(f"cannot start container {name!r}: it is already running (a previous run, or not ours)")
    container_id = str(info.get("Id") or name)
    # Ofelia reads the logs "since" the start; the Protocol has no since, so the
    # bytes already logged by earlier runs are counted now and skipped later.
    try:
        earlier = count_output(client.container_logs(container_id))
    except DockerError as exc:
        raise engine_error(exc, f"cannot read the logs of container {name!r}") from exc
    _check_not_cancelled(context)
    return _start_and_wait(client, container_id, context, earlier)


def _start_and_wait(client: DockerClient, container_id: str, context: RunContext, skip: dict[str, int] | None) -> int:
    """Start, wait (stopping it past max-runtime or on cancel), copy the logs; the exit code."""
    stopper = _ContainerStopper(client, container_id)
    watch = watchdog().watch(context, stopper)
    code: int | None = None
    try:
        try:
            client.container_start(container_id)
        except DockerError as exc:
            if not watch.fired:
                raise engine_error(exc, "cannot start the container") from exc
        else:
            try:
                code = client.container_wait(container_id)
            except NotFound as exc:
                if not watch.fired:
                    raise RunError("the container was removed while it ran") from exc
            except DockerError as exc:
                if not watch.fired:
                    raise engine_error(exc, "waiting for the container") from exc
    finally:
        watch.close()
    if watch.fired:
        watch.wait_stopped(max(STOP_GRACE, CANCEL_GRACE) + STOP_SLACK)
        _copy_logs(client, container_id, context, skip)
        raise _stopped_error(watch.reason or "cancel", context, stopper.report(watch.stop_error))
    _copy_logs(client, container_id, context, skip)
    assert code is not None
    return code


def _copy_logs(client: DockerClient, container_id: str, context: RunContext, skip: dict[str, int] | None) -> None:
    try:
        chunks = client.container_logs(container_id)
        copy_output(skip_output(chunks, skip) if skip else chunks, context)
    except DockerError as exc:
        # Ofelia warns and keeps the run's result: the exit code is what counts.
        logger.warning(f"cannot read the logs of container {container_id[:12]}: {exc}")


def _remove(client: DockerClient, container_id: str, job: Job, run: Run) -> None:
    try:
        # force: a container a failed run could not stop is killed here.
        client.container_remove(container_id, force=True)
    except NotFound:
        pass
    except DockerError as exc:
        logger.warning(
            f'[Job "{job.name}" ({run.id})] cannot remove container {container_id[:12]} '
            f"(label {RUN_ID_LABEL}={run.id}): {exc}"
        )


def _remove_run_containers(client: DockerClient, run_id: str) -> None:
    with contextlib.suppress(DockerError):
        for item in client.container_list(filters={"label": [f"{RUN_ID_LABEL}={run_id}"]}, all=True):
            with contextlib.suppress(DockerError):
                client.container_remove(str(item.get("Id")), force=True)


def _check_not_cancelled(context: RunContext) -> None:
    if context.cancel.is_set():
        raise RunCancelled("cancelled at shutdown before the container started")


def _stopped_error(reason: Reason, context: RunContext, outcome: str) -> RunError:
    if reason == "timeout":
        return RunTimedOut(f"max-runtime {format_duration(context.max_runtime or 0.0)} exceeded; {outcome}")
    return RunCancelled(f"cancelled at shutdown; {outcome}")


class _ContainerStopper:
    """The watchdog's action for one container: ``stop`` (TERM, grace, KILL), else ``kill``."""

    def __init__(self, client: DockerClient, container_id: str) -> None:
        self.client = client
        self.container_id = container_id
        self.problems: list[str] = []
        self.stopped = False

    def __call__(self, reason: Reason) -> None:
        grace = STOP_GRACE if reason == "timeout" else CANCEL_GRACE
        try:
            self.client.container_stop(self.container_id, timeout=grace)
            self.stopped = True
            return
        except NotFound:
            self.stopped = True  # already gone
            return
        except DockerError as exc:
            self.problems.append(f"stop failed: {exc}")
        try:
            self.client.container_kill(self.container_id)
            self.stopped = True
        except (NotFound, Conflict):
            self.stopped = True  # gone, or no longer running
        except DockerError as exc:
            self.problems.append(f"kill failed: {exc}")

    def report(self, error: BaseException | None) -> str:
        if error is not None:
            return f"stopping the container failed: {type(error).__name__}: {error}"
        if not self.stopped:
            return "could not stop the container: " + "; ".join(self.problems)
        if self.problems:
            return "container killed (" + "; ".join(self.problems) + ")"
        return "container stopped"


__all__ = ["CANCEL_GRACE", "PULL_CHOICES", "STOP_GRACE", "container_spec", "ensure_image", "pull_policy",
           "run_container"]
