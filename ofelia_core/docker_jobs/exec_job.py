"""The ``job-exec`` runner: a command in a running container (``docker exec``).

A run that succeeds costs exactly three engine requests: ``exec_create``,
``exec_start`` (its demultiplexed output streamed into the run's buffers) and
``exec_inspect`` (the exit code). The container is inspected only to explain
an error (missing, stopped, paused).

The engine cannot kill an exec, so ``max-runtime`` and cancellation are
enforced from inside the container: the command runs with
``OFELIA_RUN_ID=<run id>`` in its environment, inherited by everything it
starts, and a second exec (as the same user, which may read and signal those
processes) sends SIGTERM, then SIGKILL after :data:`KILL_GRACE`, to every
process carrying that marker. That needs ``sh``, ``tr`` and ``grep`` in the
container; without them, and when the scheduler shares the engine's process
namespace, the exec's own process (its host pid, from ``exec_inspect``) is
signalled directly instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from ofelia_hookspecs.errors import Conflict, DockerError, NotFound, RunCancelled, RunError, RunTimedOut
from ofelia_hookspecs.settings import format_duration

from .options import container_state_error, docker_client, engine_error, environment, split_words
from .streams import Reason, close_quietly, copy_output, watchdog

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ofelia_hookspecs.protocols import DockerClient
    from ofelia_hookspecs.types import RunContext, StreamChunk

    from ..jobs import Job
    from ..runs import Run

#: Environment variable that marks every process of a run, for killing them.
RUN_ID_ENV = "OFELIA_RUN_ID"
#: Seconds between SIGTERM and SIGKILL when a run is stopped.
KILL_GRACE = 2.0
#: Seconds the output may stay open after SIGKILL before the stream is closed.
DRAIN_TIMEOUT = 2.0
#: Longest pause, in seconds, between reads of the exit code of an exec still reported running.
EXIT_POLL_MAX = 0.5

#: Sends signal $1 to every process whose environment holds the line $2; prints how many.
#: Exits 127 when a tool is missing, so a silent "no match" is never mistaken for success.
KILL_SCRIPT = r"""
command -v tr >/dev/null 2>&1 && command -v grep >/dev/null 2>&1 || exit 127
n=0
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  if tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qxF -e "$2"; then
    kill -s "$1" "$p" 2>/dev/null && n=$((n + 1))
  fi
done
echo "$n"
"""


def run_exec(job: Job, run: Run, context: RunContext) -> int:
    """Run ``job``'s command in its container; return the command's exit code.

    Raises :class:`RunError` when the container is missing, stopped or paused
    or the engine fails, :class:`RunTimedOut` after ``context.max_runtime`` and
    :class:`RunCancelled` when ``context.cancel`` is set (in both cases the
    command's processes were killed). ``run`` is not touched.
    """
    client = docker_client(context)
    container = str(job.get("container") or "").strip()
    if not container:
        raise RunError("job-exec needs a container")
    argv = split_words(str(job.get("command") or ""), "command", required=True)
    env = environment(job)
    env[RUN_ID_ENV] = run.id
    # Explicitly empty means the container's own default user; unset is Ofelia's root.
    user = str(job.get("user") or "")
    tty = bool(job.get("tty", False))
    workdir = str(job.get("working-dir") or "") or None
    if context.cancel.is_set():
        raise RunCancelled("cancelled at shutdown before the command started")

    try:
        exec_id = client.exec_create(container, argv, user=user, tty=tty, environment=env, workdir=workdir)
        stream = client.exec_start(exec_id, tty=tty)
    except (NotFound, Conflict) as exc:
        raise container_state_error(client, container, exc, "cannot exec") from exc
    except DockerError as exc:
        raise engine_error(exc, f"cannot exec in container {container!r}") from exc

    stopper = _ExecStopper(client, container, exec_id, run.id, user, stream)
    watch = watchdog().watch(context, stopper)
    code: int | None = None
    try:
        try:
            copy_output(stream, context)
        except DockerError as exc:
            if not watch.fired:
                raise engine_error(exc, f"reading the output of the exec in {container!r}") from exc
        if not watch.fired:
            code = _exit_code(client, container, exec_id, lambda: watch.fired)
    finally:
        stopper.ended.set()
        watch.close()
        close_quietly(stream)
    if code is None:  # the watchdog stopped the run
        watch.wait_stopped(KILL_GRACE + DRAIN_TIMEOUT + 120)
        raise _stopped_error(watch.reason or "cancel", context, stopper.report(watch.stop_error))
    return code


def _exit_code(client: DockerClient, container: str, exec_id: str, fired: Callable[[], bool]) -> int | None:
    """The exit code once the exec is no longer running; None when the watchdog stopped it meanwhile.

    The output ends when the process exits, or when the engine connection
    broke; in the second case the process still runs, so this keeps asking
    (with growing pauses) until it exits or the watchdog stops it.
    """
    delay = 0.005
    while True:
        try:
            info = client.exec_inspect(exec_id)
        except (NotFound, Conflict) as exc:
            raise container_state_error(client, container, exc, "cannot read the exit code") from exc
        except DockerError as exc:
            raise engine_error(exc, "cannot read the exit code") from exc
        exit_code = info.get("ExitCode")
        if not info.get("Running") and exit_code is not None:
            return int(exit_code)
        if fired():
            return None
        time.sleep(delay)
        delay = min(delay * 2, EXIT_POLL_MAX)


def _stopped_error(reason: Reason, context: RunContext, outcome: str) -> RunError:
    if reason == "timeout":
        limit = format_duration(context.max_runtime or 0.0)
        return RunTimedOut(f"max-runtime {limit} exceeded; {outcome}")
    return RunCancelled(f"cancelled at shutdown; {outcome}")


class _ExecStopper:
    """The watchdog's action for one exec: SIGTERM, grace, SIGKILL, then close the output."""

    def __init__(
        self, client: DockerClient, container: str, exec_id: str, run_id: str, user: str, stream: Iterator[StreamChunk]
    ) -> None:
        self.client = client
        self.container = container
        self.exec_id = exec_id
        self.marker = f"{RUN_ID_ENV}={run_id}"
        self.user = user
        self.stream = stream
        #: Set by the runner once the command's output has ended.
        self.ended = threading.Event()
        self.problems: list[str] = []
        self.signalled = False

    def __call__(self, reason: Reason) -> None:
        self.signal("TERM")
        if self.ended.wait(KILL_GRACE):
            return
        self.signal("KILL")
        if not self.ended.wait(DRAIN_TIMEOUT):
            # Whatever still holds the output open is beyond reach: stop reading it.
            close_quietly(self.stream)

    def report(self, error: BaseException | None) -> str:
        """What stopping achieved, checked with one more ``exec_inspect``."""
        if error is not None:
            return f"stopping the exec'd process failed: {type(error).__name__}: {error}"
        try:
            running = bool(self.client.exec_inspect(self.exec_id).get("Running"))
        except DockerError:
            running = not self.signalled  # the container went away, or the engine did
        if running:
            reasons = "; ".join(self.problems) or "it ignored SIGKILL"
            return f"could not kill the exec'd process, it is still running: {reasons}"
        return "exec'd process killed"

    def signal(self, name: str) -> None:
        """Signal the run's processes from inside the container, else through the host's pid."""
        count = self._signal_in_container(name)
        if count:
            self.signalled = True
            return
        # Nothing matched or the tools are missing: the exec's own process, if still running.
        self._signal_host_pid(name)

    def _signal_in_container(self, name: str) -> int:
        try:
            exec_id = self.client.exec_create(
                self.container, ["sh", "-c", KILL_SCRIPT, "ofelia-kill", name, self.marker], user=self.user
            )
            output = b"".join(data for stream, data in self.client.exec_start(exec_id) if stream == "stdout")
            info = self.client.exec_inspect(exec_id)
        except DockerError as exc:
            self.problems.append(f"kill exec failed: {exc}")
            return 0
        if info.get("ExitCode") != 0:
            text = output.decode("utf-8", "replace").strip()
            self.problems.append(f"kill exec exited {info.get('ExitCode')}" + (f": {text}" if text else ""))
            return 0
        try:
            return int(output.decode().split()[-1])
        except (ValueError, IndexError, UnicodeDecodeError):
            return 0

    def _signal_host_pid(self, name: str) -> None:
        try:
            info = self.client.exec_inspect(self.exec_id)
        except DockerError as exc:
            self.problems.append(f"exec_inspect failed: {exc}")
            return
        pid = int(info.get("Pid") or 0)
        if not info.get("Running") or pid <= 0:
            self.signalled = True  # already gone
            return
        container_id = str(info.get("ContainerID") or "")
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
                cgroup = handle.read()
        except OSError:
            self.problems.append(f"pid {pid} is not visible from the scheduler")
            return
        # The pid must still be this container's process, not a reused one.
        if not container_id or container_id not in cgroup:
            self.problems.append(f"pid {pid} is not visible from the scheduler")
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if name == "KILL" else signal.SIGTERM)
        self.signalled = True


__all__ = ["KILL_GRACE", "RUN_ID_ENV", "run_exec"]
