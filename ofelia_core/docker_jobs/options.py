"""A container job's keys turned into what the engine needs, and engine errors into run errors."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ofelia_hookspecs.errors import DockerError, DockerTimeout, EngineUnavailable, NotFound, RunError

if TYPE_CHECKING:
    from ofelia_hookspecs.protocols import DockerClient
    from ofelia_hookspecs.types import RunContext

    from ..jobs import Job

#: Labels on every container a job-run creates (plus the job and the run id).
MANAGED_LABEL = "ofelia.managed"
JOB_LABEL = "ofelia.job"
RUN_ID_LABEL = "ofelia.run-id"


def docker_client(context: RunContext) -> DockerClient:
    """The chosen (instrumented) Docker client driver of this run."""
    client = getattr(context.drivers, "docker_client", None)
    if client is None:
        raise RunError("no Docker client driver is active")
    result: DockerClient = client
    return result


def split_words(text: str, key: str, *, required: bool) -> list[str]:
    """Split like a POSIX shell (quotes, backslashes), as Ofelia does, without running one."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise RunError(f"cannot parse {key} {text!r}: {exc}") from None
    if required and not words:
        raise RunError(f"empty {key} {text!r}")
    return words


def entrypoint(job: Job) -> list[str] | None:
    """``None`` keeps the image's entrypoint; a key set to an empty value clears it (``--entrypoint ""``)."""
    value = job.get("entrypoint")
    if value is None:
        return None
    words = split_words(str(value), "entrypoint", required=False)
    return words or [""]


def environment(job: Job, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env-file`` files, then ``environment`` items (which win), as ``docker run --env-file -e`` reads them.

    ``KEY=value`` sets a variable; a bare ``KEY`` passes the scheduler's own value
    through (and is dropped when the scheduler has none), as ``docker run -e KEY`` does.
    Files are read at each run, relative to the scheduler's working directory.
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    for path in job.get("env-file") or []:
        for number, line in enumerate(_read_env_file(path), start=1):
            item = line.lstrip()
            if not item or item.startswith("#"):
                continue
            _add_item(env, item, environ, f"env-file {path!r} line {number}")
    for item in job.get("environment") or []:
        _add_item(env, item, environ, "environment")
    return env


def _read_env_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"env-file {path!r}: cannot read it: {exc}") from None


def _add_item(env: dict[str, str], item: str, environ: Mapping[str, str], where: str) -> None:
    key, sep, value = item.partition("=")
    if not key or any(c.isspace() for c in key):
        raise RunError(f"{where}: {item!r} is not KEY=value")
    if sep:
        env[key] = value
    elif key in environ:
        env[key] = environ[key]


def labels(job: Job, run_id: str) -> dict[str, str]:
    return {MANAGED_LABEL: "true", JOB_LABEL: job.name, RUN_ID_LABEL: run_id}


def engine_error(exc: DockerError, doing: str) -> RunError:
    """A run error for a failure the caller does not explain better itself."""
    if isinstance(exc, EngineUnavailable | DockerTimeout):
        return RunError(f"{doing}: the Docker engine is unavailable: {exc.message}")
    return RunError(f"{doing}: {exc.message}")


def container_state_error(client: DockerClient, container: str, exc: DockerError, doing: str) -> RunError:
    """Why ``container`` refused ``doing``: missing, stopped or paused (one inspect, only on this error path)."""
    if isinstance(exc, NotFound):
        return RunError(f"{doing}: container {container!r} not found")
    try:
        state: Mapping[str, Any] = client.container_inspect(container).get("State") or {}
    except NotFound:
        return RunError(f"{doing}: container {container!r} not found")
    except DockerError:
        return engine_error(exc, doing)
    if state.get("Paused"):
        return RunError(f"{doing}: container {container!r} is paused")
    if state.get("Restarting"):
        return RunError(f"{doing}: container {container!r} is restarting")
    if not state.get("Running"):
        status = state.get("Status") or "not running"
        code = state.get("ExitCode")
        detail = f"{status}, exit code {code}" if status == "exited" and code is not None else str(status)
        return RunError(f"{doing}: container {container!r} is not running ({detail})")
    return engine_error(exc, doing)
