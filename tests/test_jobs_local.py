"""The job-local runner, against real processes."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ofelia_hookspecs.errors import RunCancelled, RunError, RunTimedOut
from ofelia_hookspecs.types import ConfigKeys, RunContext

from ofelia_core import jobs_local
from ofelia_core.baseline.buffers import FreshBufferPool
from ofelia_core.config.model import Location, Section
from ofelia_core.jobs import Job, build_job
from ofelia_core.jobtypes import JOB_KEYS, JOB_TYPES
from ofelia_core.runs import Run

LOCAL = next(spec for spec in JOB_TYPES if spec.name == "job-local")
EXTRA_KEYS = [ConfigKeys("job", JOB_KEYS)]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")


def make_job(command: str, **values: Any) -> Job:
    """A job-local Job as the config would build it; ``max_runtime=`` becomes ``max-runtime``."""
    where = Location("test.ini", line=1)
    section = Section("job-local", "test", where)
    section.set("schedule", "@every 1h", where)
    section.set("command", command, where)
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            section.set(key.replace("_", "-"), item, where)
    return build_job(section, LOCAL, EXTRA_KEYS)


class Outcome:
    def __init__(self, code: int | None, context: RunContext) -> None:
        self.code = code
        self.context = context

    @property
    def stdout(self) -> bytes:
        return self.context.stdout.getvalue()

    @property
    def stderr(self) -> bytes:
        return self.context.stderr.getvalue()


def new_context(max_runtime: float | None = None, max_size: int = 1024 * 1024) -> RunContext:
    pool = FreshBufferPool(max_size=max_size)
    return RunContext(pool.get("test", "stdout"), pool.get("test", "stderr"), max_runtime=max_runtime)


def run(command: str, *, context: RunContext | None = None, **values: Any) -> Outcome:
    """Run through the job type's registered runner, as the executor does."""
    job = make_job(command, **values)
    context = context or new_context(job.max_runtime)
    assert LOCAL.runner is not None
    code = LOCAL.runner(job, Run(job.name, job.type), context)
    return Outcome(code, context)


def python(code: str) -> str:
    """A command line running ``code`` with this interpreter."""
    return shlex.join([sys.executable, "-c", code])


def wait_for_group_gone(pgid: int, within: float = 15.0) -> None:
    """Bounded wait for every process of ``pgid`` to be gone.

    Killed grandchildren are orphans reaped by PID 1, which may take a moment
    (or, in a container whose init does not reap, be left as zombies): those
    count as gone, since they are dead; any live member fails the test.
    """
    end = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        live = [pid for pid, state in group_members(pgid) if state not in "ZX"]
        if not live and time.monotonic() > end:
            return
        if time.monotonic() > end:
            pytest.fail(f"process group {pgid} still has live processes: {live}")
        time.sleep(0.05)


def group_members(pgid: int) -> list[tuple[int, str]]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) == pgid:
            members.append((int(entry.name), fields[0]))
    return members


@pytest.fixture
def reap_groups() -> Iterator[list[int]]:
    """Process groups a test leaves running on purpose; killed afterwards."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


# --- exit codes ---------------------------------------------------------------


@pytest.mark.parametrize(("command", "code"), [("true", 0), ("false", 1), ("sh -c 'exit 3'", 3)])
def test_exit_code(command: str, code: int) -> None:
    assert run(command).code == code


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGUSR1])
def test_killed_by_signal_returns_128_plus_n(signum: int) -> None:
    assert run(f"sh -c 'kill -{int(signum)} $$'").code == 128 + signum


# --- output ---------------------------------------------------------------------


def test_stdout_and_stderr_are_separate() -> None:
    outcome = run("sh -c 'echo out; echo err >&2; echo out2'")
    assert outcome.stdout == b"out\nout2\n"
    assert outcome.stderr == b"err\n"


def test_large_binary_output_on_both_streams_is_complete() -> None:
    # Interleaved writes well past a pipe buffer on both streams: a runner that
    # drained one pipe at a time would deadlock here.
    code = (
        "import sys\n"
        "out = bytes(range(256)) * 1024\n"
        "err = bytes(reversed(range(256))) * 1024\n"
        "for i in range(0, len(out), 4096):\n"
        "    sys.stdout.buffer.write(out[i:i + 4096]); sys.stdout.buffer.flush()\n"
        "    sys.stderr.buffer.write(err[i:i + 4096]); sys.stderr.buffer.flush()\n"
    )
    outcome = run(python(code))
    assert outcome.code == 0
    assert outcome.stdout == bytes(range(256)) * 1024
    assert outcome.stderr == bytes(reversed(range(256))) * 1024


def test_output_written_just_before_exit_is_kept() -> None:
    outcome = run("sh -c 'printf tail; printf err >&2; exit 5'")
    assert (outcome.code, outcome.stdout, outcome.stderr) == (5, b"tail", b"err")


def test_output_cap_keeps_the_newest_bytes() -> None:
    context = new_context(max_size=1024)
    outcome = run(python("import sys\nfor i in range(20000): sys.stdout.write(f'{i:08d}\\n')"), context=context)
    expected = "".join(f"{i:08d}\n" for i in range(20000)).encode()
    assert outcome.stdout == expected[-1024:]
    assert context.stdout.truncated


def test_stdin_is_dev_null() -> None:
    outcome = run("cat")  # would block forever on an inherited terminal or pipe
    assert (outcome.code, outcome.stdout) == (0, b"")


# --- command splitting ------------------------------------------------------------


def test_double_quotes_make_one_argument() -> None:
    assert run("""printf '[%s]' "a b" c""").stdout == b"[a b][c]"


def test_escaped_quotes_are_kept_as_ofelia_does() -> None:
    # The INI reader keeps `\"` as written; the split turns it into a literal quote.
    assert run('echo \\"foo\\"').stdout == b'"foo"\n'


def test_no_shell_unless_asked_for() -> None:
    assert run("echo $HOME").stdout == b"$HOME\n"
    assert run("echo a;b | c").stdout == b"a;b | c\n"
    assert run("sh -c 'echo $HOME'", environment="HOME=/some/home").stdout == b"/some/home\n"


def test_command_errors_name_the_command() -> None:
    with pytest.raises(RunError, match="command not found: 'no-such-command-xyz'"):
        run("no-such-command-xyz --flag")
    with pytest.raises(RunError, match="empty command"):
        run("   ")
    with pytest.raises(RunError, match=r"cannot parse command .*echo 'unclosed"):
        run("echo 'unclosed")


def test_a_file_that_is_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    with pytest.raises(RunError, match=re.escape(f"cannot execute '{script}'")):
        run(str(script))


# --- dir and environment ---------------------------------------------------------


def test_dir_is_the_working_directory(tmp_path: Path) -> None:
    assert run("pwd", dir=str(tmp_path)).stdout == f"{tmp_path}\n".encode()
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho relative\n")
    (tmp_path / "run.sh").chmod(0o755)
    assert run("./run.sh", dir=str(tmp_path)).stdout == b"relative\n"


def test_missing_dir_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(RunError, match=re.escape(f"dir '{missing}' does not exist")):
        run("pwd", dir=str(missing))


def test_environment_is_added_to_the_schedulers_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFELIA_TEST_INHERITED", "from-scheduler")
    outcome = run(
        """sh -c 'echo "$OFELIA_TEST_INHERITED|$FOO|$EQ|$EMPTY|"'""",
        environment=["FOO=bar baz", "EQ=a=b", "EMPTY="],
    )
    assert outcome.stdout == b"from-scheduler|bar baz|a=b||\n"


def test_environment_path_is_used_to_find_the_command(tmp_path: Path) -> None:
    tool = tmp_path / "ofelia-test-tool"
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)
    assert run("ofelia-test-tool", environment=f"PATH={tmp_path}:/usr/bin:/bin").stdout == b"found\n"


@pytest.mark.parametrize("item", ["NOEQUALS", "=value"])
def test_environment_item_without_key_is_an_error(item: str) -> None:
    with pytest.raises(RunError, match=f"environment item '{item}' is not KEY=value"):
        run("true", environment=item)


# --- user ----------------------------------------------------------------------------


@as_root
@pytest.mark.parametrize("user", ["nobody", "65534", "nobody:nogroup", "65534:65534"])
def test_user_switch(user: str) -> None:
    outcome = run("""sh -c 'id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"'""", user=user)
    uid, gid, groups, env = outcome.stdout.decode().splitlines()
    assert (uid, gid) == ("65534", "65534")
    # Root's supplementary groups must not leak into the job.
    assert groups.split() == ["65534"]
    assert env == "/nonexistent nobody nobody"


@as_root
def test_uid_without_passwd_entry_needs_a_gid() -> None:
    assert run("sh -c 'id -u; id -g; id -G'", user="4242:4343").stdout == b"4242\n4343\n4343\n"
    with pytest.raises(RunError, match="uid 4242 has no passwd entry; give its group as uid:gid"):
        run("true", user="4242")


def test_unknown_user_or_group_is_an_error() -> None:
    with pytest.raises(RunError, match="unknown user 'no-such-user-xyz'"):
        run("true", user="no-such-user-xyz")
    with pytest.raises(RunError, match="unknown group 'no-such-group-xyz'"):
        run("true", user="nobody:no-such-group-xyz")


def test_switching_user_without_root_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The interpreter cannot run as nobody here (it lives under /root), so the
    # scheduler's uid is what is pretended; the switch check reads it at run time.
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    monkeypatch.setattr(os, "getegid", lambda: 65534)
    with pytest.raises(RunError, match="user 'root' requires running as root"):
        run("true", user="root")
    # Asking for the user it already is needs no switch.
    assert run("true", user="nobody").code == 0


# --- max-runtime, cancellation, leftovers -----------------------------------------------


def first_line_pid(outcome_stdout: bytes) -> int:
    return int(outcome_stdout.split(b"\n", 1)[0])


def test_max_runtime_kills_the_whole_process_group() -> None:
    context = new_context(max_runtime=0.5)
    with pytest.raises(RunTimedOut, match=r"max-runtime 500ms exceeded; process group killed"):
        run("sh -c 'echo $$; sleep 100 & sleep 100'", context=context)
    pgid = first_line_pid(context.stdout.getvalue())
    wait_for_group_gone(pgid)


def test_processes_ignoring_sigterm_get_sigkill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_local, "KILL_GRACE", 0.3)
    context = new_context(max_runtime=0.3)
    with pytest.raises(RunTimedOut):
        # An ignored signal stays ignored across fork and exec: the sleeps ignore it too.
        run("""sh -c 'trap "" TERM; echo $$; sleep 100 & sleep 100'""", context=context)
    wait_for_group_gone(first_line_pid(context.stdout.getvalue()))


def test_max_runtime_from_the_job() -> None:
    with pytest.raises(RunTimedOut, match="max-runtime 300ms exceeded"):
        run("sleep 100", max_runtime="300ms")


def test_output_during_sigterm_grace_is_kept() -> None:
    context = new_context(max_runtime=0.3)
    with pytest.raises(RunTimedOut):
        run("""sh -c 'trap "echo bye; exit 1" TERM; echo hi; while :; do sleep 0.05; done'""", context=context)
    assert context.stdout.getvalue() == b"hi\nbye\n"


def test_closed_stdout_does_not_outlive_max_runtime() -> None:
    context = new_context(max_runtime=0.5)
    with pytest.raises(RunTimedOut):
        run("sh -c 'echo $$; exec >&- 2>&-; sleep 100'", context=context)
    wait_for_group_gone(first_line_pid(context.stdout.getvalue()))


def test_children_holding_the_pipes_do_not_block_the_run(reap_groups: list[int]) -> None:
    # Go's exec.Cmd.Wait (and so Ofelia) would wait for the background sleep.
    outcome = run("sh -c 'echo $$; sleep 100 & echo started'", max_runtime="1h")
    pgid = first_line_pid(outcome.stdout)
    reap_groups.append(pgid)
    assert outcome.code == 0
    assert outcome.stdout == f"{pgid}\nstarted\n".encode()


def run_in_thread(command: str, context: RunContext) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(command, context=context)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def test_cancel_stops_the_run_and_kills_the_group() -> None:
    context = new_context()
    thread, errors = run_in_thread("sh -c 'echo $$; sleep 100 & sleep 100'", context)
    end = time.monotonic() + 15
    while b"\n" not in context.stdout.getvalue():
        assert time.monotonic() < end, "the command never started"
        time.sleep(0.02)
    context.cancel.set()
    thread.join(15)
    assert not thread.is_alive(), "the runner did not notice the cancel event"
    assert len(errors) == 1 and isinstance(errors[0], RunCancelled), errors
    assert "process group killed" in str(errors[0])
    wait_for_group_gone(first_line_pid(context.stdout.getvalue()))


def test_cancel_set_before_the_start() -> None:
    context = new_context()
    context.cancel.set()
    with pytest.raises(RunCancelled):
        run("sleep 100", context=context)


# --- wiring ----------------------------------------------------------------------------


def test_jobtypes_does_not_import_the_runner() -> None:
    # `ofelia validate` imports jobtypes; the runner (subprocess, selectors) loads on first run.
    code = "import sys, ofelia_core.jobtypes; print('ofelia_core.jobs_local' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
