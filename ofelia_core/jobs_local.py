"""The ``job-local`` runner: a command on the scheduler's host.

Each run gets its own session (and so its own process group), which is what
lets a timeout or a shutdown kill the whole tree the command started. Output
is read in the calling thread with :mod:`selectors`, so a run costs no extra
threads. The loop ends when the command's own process exits; pipes still held
open by children it left behind are drained for at most :data:`DRAIN_TIMEOUT`
(Ofelia, like Go's ``exec.Cmd.Wait``, would wait for them forever).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import selectors
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, cast

from ofelia_hookspecs.errors import RunCancelled, RunError, RunTimedOut
from ofelia_hookspecs.settings import format_duration

if TYPE_CHECKING:
    from ofelia_hookspecs.types import RunContext

    from .jobs import Job
    from .runs import Run

#: Seconds between SIGTERM to a run's process group and SIGKILL.
KILL_GRACE = 2.0
#: Longest wait, in seconds, for the cancel event to be noticed.
POLL_INTERVAL = 0.2
#: Seconds output is still read after the command exited, for children that keep the pipes open.
DRAIN_TIMEOUT = 0.5
#: Seconds to wait for the command's process to be reaped after SIGKILL.
REAP_TIMEOUT = 5.0
#: Bytes read from a pipe at a time (the size of a Linux pipe buffer).
READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class _Identity:
    """Who a run executes as, when it is not the scheduler's own user."""

    uid: int
    gid: int
    groups: list[int]
    env: dict[str, str]


def run_local(job: Job, run: Run, context: RunContext) -> int:
    """Run ``job``'s command on the host; return its exit code (128+N when killed by signal N).

    Raises :class:`RunError` when the command cannot start, :class:`RunTimedOut`
    when it passed ``context.max_runtime`` and :class:`RunCancelled` when
    ``context.cancel`` was set; in both cases its process group was killed.
    ``run`` is not touched: the executor records the outcome.
    """
    command = str(job.get("command", ""))
    argv = _split_command(command)
    cwd = job.get("dir") or None
    if cwd is not None and not os.path.isdir(cwd):
        raise RunError(f"dir {cwd!r} does not exist or is not a directory")
    identity = _resolve_user(job.get("user") or None)
    env = dict(os.environ)
    if identity is not None:
        env.update(identity.env)
    env.update(_parse_environment(job.get("environment") or []))

    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            cwd=cwd,
            env=env,
            start_new_session=True,
            user=identity.uid if identity else None,
            group=identity.gid if identity else None,
            # Always set the groups when switching user, or root's would be kept.
            extra_groups=identity.groups if identity else None,
        )
    except FileNotFoundError as exc:
        if cwd is not None and exc.filename == cwd:
            raise RunError(f"cannot enter dir {cwd!r}: {exc.strerror}") from None
        raise RunError(f"command not found: {argv[0]!r} (command: {command!r})") from None
    except PermissionError as exc:
        if cwd is not None and exc.filename == cwd:
            raise RunError(f"cannot enter dir {cwd!r}: {exc.strerror}") from None
        raise RunError(f"cannot execute {argv[0]!r}: {exc.strerror} (command: {command!r})") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot start {command!r}: {exc}") from None
    return _supervise(proc, context)


def _split_command(command: str) -> list[str]:
    """Split like a POSIX shell (quotes and backslashes), without running one."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise RunError(f"cannot parse command {command!r}: {exc}") from None
    if not argv:
        raise RunError(f"empty command {command!r}")
    return argv


def _parse_environment(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RunError(f"environment item {item!r} is not KEY=value")
        env[key] = value
    return env


def _resolve_user(spec: str | None) -> _Identity | None:
    """``name``, ``uid``, ``name:group`` or ``uid:gid``; None when no switch is needed."""
    if spec is None:
        return None
    user_part, _, group_part = spec.partition(":")
    entry = _passwd_entry(user_part, spec)
    uid = entry.pw_uid if entry is not None else int(user_part)
    if group_part:
        gid = _group_id(group_part, spec)
    elif entry is not None:
        gid = entry.pw_gid
    else:
        # A uid the host does not know is allowed (as Docker does) only with an
        # explicit gid: defaulting to group 0 would hand out root's group.
        raise RunError(f"user {spec!r}: uid {user_part} has no passwd entry; give its group as uid:gid")

    if os.geteuid() != 0:
        if uid == os.geteuid() and (not group_part or gid == os.getegid()):
            return None
        raise RunError(f"user {spec!r} requires running as root")
    if entry is None:
        return _Identity(uid, gid, [gid], {"HOME": "/", "USER": user_part, "LOGNAME": user_part})
    env = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name}
    return _Identity(uid, gid, os.getgrouplist(entry.pw_name, gid), env)


def _passwd_entry(user: str, spec: str) -> pwd.struct_passwd | None:
    if not user:
        raise RunError(f"user {spec!r}: empty user name")
    try:
        if user.isdigit():
            return pwd.getpwuid(int(user))
        return pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():
            return None
        raise RunError(f"unknown user {user!r}") from None


def _group_id(group: str, spec: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise RunError(f"user {spec!r}: unknown group {group!r}") from None


# --- supervising a started process ----------------------------------------------


def _supervise(proc: subprocess.Popen[bytes], context: RunContext) -> int:
    """Pump output until ``proc`` exits, enforcing max-runtime and cancellation."""
    assert proc.stdout is not None and proc.stderr is not None
    # start_new_session made the child a session and group leader: its pid is the pgid.
    pgid = proc.pid
    deadline = None if context.max_runtime is None else time.monotonic() + context.max_runtime
    selector: selectors.BaseSelector | None = None
    pidfd: int | None = None
    finished = False
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ, context.stdout)
        selector.register(proc.stderr, selectors.EVENT_READ, context.stderr)
        pidfd = _open_pidfd(proc.pid)
        if pidfd is not None:
            # Readable once the process exits: wakes the loop even when the pipes stay open.
            selector.register(pidfd, selectors.EVENT_READ, None)
        while not _has_exited(proc.pid):
            if context.cancel.is_set():
                _kill_group(proc, pgid, selector)
                raise RunCancelled("cancelled at shutdown; process group killed")
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                _kill_group(proc, pgid, selector)
                assert context.max_runtime is not None
                raise RunTimedOut(f"max-runtime {format_duration(context.max_runtime)} exceeded; process group killed")
            timeout = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - now)
            _pump(selector, timeout)
        returncode = proc.wait()
        _drain(selector)
        finished = True
    finally:
        if not finished and proc.returncode is None:
            # An unexpected error (or the kill sequence failing): never leave the tree running.
            _signal_group(pgid, signal.SIGKILL)
            _reap(proc)
        if selector is not None:
            selector.close()
        proc.stdout.close()
        proc.stderr.close()
        if pidfd is not None:
            os.close(pidfd)
    return 128 - returncode if returncode < 0 else returncode


def _pump(selector: selectors.BaseSelector, timeout: float) -> None:
    """Wait up to ``timeout`` and copy whatever output is ready into its buffer."""
    for key, _ in selector.select(max(timeout, 0.0)):
        if key.data is None:
            # The pidfd: the process exited (the caller checks). It stays readable,
            # so it must go or every later select would return at once.
            selector.unregister(key.fd)
            continue
        data = os.read(key.fd, READ_SIZE)
        if data:
            key.data.write(data)
        else:
            selector.unregister(key.fileobj)
            cast("IO[bytes]", key.fileobj).close()


def _pipes_open(selector: selectors.BaseSelector) -> bool:
    return any(key.data is not None for key in selector.get_map().values())


def _drain(selector: selectors.BaseSelector) -> None:
    """Read until every pipe is closed, but for no longer than DRAIN_TIMEOUT."""
    end = time.monotonic() + DRAIN_TIMEOUT
    while _pipes_open(selector):
        left = end - time.monotonic()
        if left <= 0:
            break
        _pump(selector, left)


def _kill_group(proc: subprocess.Popen[bytes], pgid: int, selector: selectors.BaseSelector) -> None:
    """SIGTERM the group, give it KILL_GRACE to finish (still reading its output), SIGKILL it, reap.

    The leader is reaped only after SIGKILL: an unreaped leader keeps its pid,
    so the pgid cannot be reused by an unrelated group while we signal it.
    """
    _signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + KILL_GRACE
    # Wait for the leader to exit and for the pipes to close (children holding
    # them are still shutting down), whichever takes longer, up to the grace.
    while not (_has_exited(proc.pid) and not _pipes_open(selector)):
        left = end - time.monotonic()
        if left <= 0:
            break
        _pump(selector, min(left, POLL_INTERVAL))
    _signal_group(pgid, signal.SIGKILL)
    _reap(proc)
    _drain(selector)


def _signal_group(pgid: int, signum: int) -> None:
    # The group may be gone, or what is left of it changed user (setuid): nothing to signal then.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    # A process stuck in the kernel (uninterruptible sleep) is left to Popen to reap if it ever exits.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=REAP_TIMEOUT)


def _has_exited(pid: int) -> bool:
    """Whether ``pid`` exited, without reaping it (see :func:`_kill_group`)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # already reaped by someone else (SIGCHLD ignored)


def _open_pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None  # kernel before 5.3: exit is noticed at the next poll instead
    return fd
