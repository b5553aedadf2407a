"""job-run end to end against the test engine. Containers use network ``none``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import JOB_PREFIX, Containers, JobRunner, Outcome, make_job, wait_until
from ofelia_hookspecs.errors import RunCancelled, RunError, RunTimedOut

from ofelia_core.docker_jobs import run_job as run_job_module
from ofelia_core.docker_jobs.run_job import pull_policy
from ofelia_core.jobs import Job
from ofelia_core.runs import Run

pytestmark = pytest.mark.docker

UNPULLABLE = "registry.invalid/x:1"


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # busybox sleep as PID 1 ignores SIGTERM: keep the wait for SIGKILL short.
    monkeypatch.setattr(run_job_module, "STOP_GRACE", 1.0)
    monkeypatch.setattr(run_job_module, "CANCEL_GRACE", 1.0)


def run_job_of(name: str, image: str, command: str | None = None, **values: Any) -> Job:
    values.setdefault("network", "none")
    if command is not None:
        values["command"] = command
    return make_job("job-run", name, image=image, **values)


def containers_of(admin_api: Any, run: Run) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = admin_api.containers(all=True, filters={"label": f"ofelia.run-id={run.id}"})
    return found


def run_and_check_removed(run_job: JobRunner, admin_api: Any, job: Job, **kwargs: Any) -> Outcome:
    run = Run(job.name, job.type)
    try:
        return run_job(job, run=run, **kwargs)
    finally:
        assert containers_of(admin_api, run) == []


def operation_calls(run_job: JobRunner) -> dict[str, int]:
    operations = run_job.drivers.docker_client.stats()["operations"]
    return {name: figures["calls"] for name, figures in operations.items()}


# --- success and failure ---------------------------------------------------------------


def test_output_and_exit_code_and_the_container_is_removed(
    run_job: JobRunner, admin_api: Any, test_image: str
) -> None:
    job = run_job_of("ok", test_image, "sh -c 'echo out; echo err >&2'", pull="false")
    outcome = run_and_check_removed(run_job, admin_api, job)
    assert (outcome.code, outcome.stdout, outcome.stderr) == (0, b"out\n", b"err\n")


def test_non_zero_exit_is_returned_and_the_container_removed(
    run_job: JobRunner, admin_api: Any, test_image: str
) -> None:
    outcome = run_and_check_removed(run_job, admin_api, run_job_of("exit7", test_image, "sh -c 'exit 7'"))
    assert outcome.code == 7


def test_empty_command_runs_the_image_default(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    # The test image's CMD is /bin/sh, which exits at once without a stdin.
    assert run_and_check_removed(run_job, admin_api, run_job_of("default", test_image)).code == 0


def test_a_command_that_cannot_start_is_a_run_error(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    with pytest.raises(RunError, match=r"cannot start the container: .*no-such-binary"):
        run_and_check_removed(run_job, admin_api, run_job_of("nostart", test_image, "no-such-binary"))


def test_a_missing_network_is_a_run_error(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    job = run_job_of("nonet", test_image, "true", network=f"{JOB_PREFIX}no-such-net")
    with pytest.raises(RunError, match="no-such-net"):
        run_and_check_removed(run_job, admin_api, job)


def test_neither_image_nor_container_is_a_run_error(run_job: JobRunner) -> None:
    with pytest.raises(RunError, match="needs an image"):
        run_job(make_job("job-run", "nothing", command="true"))


# --- labels and delete ------------------------------------------------------------------------


def test_delete_false_keeps_the_labelled_container(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    job = run_job_of("keep", test_image, "echo kept", delete="false")
    run = Run(job.name, job.type)
    assert run_job(job, run=run).stdout == b"kept\n"
    kept = containers_of(admin_api, run)
    try:
        assert len(kept) == 1
        info = admin_api.inspect_container(kept[0]["Id"])
        labels = info["Config"]["Labels"]
        assert labels["ofelia.managed"] == "true"
        assert labels["ofelia.job"] == job.name
        assert labels["ofelia.run-id"] == run.id
        assert info["HostConfig"]["NetworkMode"] == "none"
        assert info["State"]["Status"] == "exited"
    finally:
        for item in kept:
            admin_api.remove_container(item["Id"], force=True)


# --- options -------------------------------------------------------------------------------


def test_environment_user_hostname_and_working_dir(
    run_job: JobRunner, admin_api: Any, test_image: str, tmp_path: Path
) -> None:
    env_file = tmp_path / "run.env"
    env_file.write_text("FROM_FILE=1\nFOO=overridden\n")
    job = run_job_of(
        "opts",
        test_image,
        """sh -c 'echo "$FOO $FROM_FILE $(id -u) $(hostname) $(pwd)"'""",
        environment=["FOO=bar baz"],
        env_file=str(env_file),
        user="nobody",
        hostname="job-host",
        working_dir="/etc",
    )
    assert run_and_check_removed(run_job, admin_api, job).stdout == b"bar baz 1 65534 job-host /etc\n"


def test_user_defaults_to_root(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    assert run_and_check_removed(run_job, admin_api, run_job_of("root", test_image, "id -u")).stdout == b"0\n"
    inherited = run_job_of("droot", test_image, "id -u")
    assert inherited.get("user") == "root"
    global_user = make_job(
        "job-run", "guser", {"default-user": "nobody"}, image=test_image, command="id -u", network="none"
    )
    assert run_and_check_removed(run_job, admin_api, global_user).stdout == b"65534\n"


def test_tty(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    job = run_job_of("tty", test_image, "sh -c '[ -t 1 ] && echo tty; echo err >&2'", tty="true")
    outcome = run_and_check_removed(run_job, admin_api, job)
    assert outcome.stdout == b"tty\r\nerr\r\n"
    assert outcome.stderr == b""


def test_entrypoint_is_split_and_prepended(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    job = run_job_of("ep", test_image, "'b c' d", entrypoint="echo 'from entrypoint'")
    assert run_and_check_removed(run_job, admin_api, job).stdout == b"from entrypoint b c d\n"
    cleared = run_job_of("ep2", test_image, "echo only-the-command", entrypoint="")
    assert run_and_check_removed(run_job, admin_api, cleared).stdout == b"only-the-command\n"


def test_volumes_bind_host_directories(run_job: JobRunner, admin_api: Any, test_image: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from host\n")
    job = run_job_of(
        "vol", test_image, "sh -c 'cat /data/in.txt; echo from container > /data/out.txt'", volume=f"{data}:/data"
    )
    assert run_and_check_removed(run_job, admin_api, job).stdout == b"from host\n"
    assert (data / "out.txt").read_text() == "from container\n"
    readonly = run_job_of("volro", test_image, "sh -c 'echo x > /data/ro.txt'", volume=[f"{data}:/data:ro"])
    assert run_and_check_removed(run_job, admin_api, readonly).code != 0
    assert not (data / "ro.txt").exists()


def test_volumes_from_another_container(
    run_job: JobRunner, admin_api: Any, containers: Containers, test_image: str
) -> None:
    source = containers.create(["sh", "-c", "echo shared > /shared/f"], volumes=["/shared"])
    assert admin_api.wait(source)["StatusCode"] == 0
    job = run_job_of("volfrom", test_image, "cat /shared/f", volumes_from=source)
    assert run_and_check_removed(run_job, admin_api, job).stdout == b"shared\n"


def test_output_past_the_cap_keeps_the_newest_bytes(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    job = run_job_of("big", test_image, "sh -c 'i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done'")
    outcome = run_and_check_removed(run_job, admin_api, job, context=run_job.context(max_size=1000))
    assert len(outcome.stdout) == 1000 and outcome.context.stdout.truncated
    assert outcome.stdout.endswith(b"line1998\nline1999\n")


# --- pull policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pull", "message"),
    [
        ("true", "is not present locally and could not be pulled: "),
        ("false", "is not present locally and could not be pulled: "),
        ("if-missing", "is not present locally and could not be pulled: "),
        ("always", r"could not be pulled \(pull = always\): "),
        ("never", r"is not present locally \(pull = never\)"),
    ],
)
def test_an_image_that_cannot_be_pulled(run_job: JobRunner, admin_api: Any, pull: str, message: str) -> None:
    job = run_job_of(f"pull-{pull}", UNPULLABLE, "true", pull=pull)
    with pytest.raises(RunError, match=f"image '{UNPULLABLE}' {message}") as caught:
        run_and_check_removed(run_job, admin_api, job)
    assert "pull failed: " not in str(caught.value)  # said once, not twice


@pytest.mark.parametrize(("pull", "pulls"), [("true", 1), ("yes", 1), ("false", 0), ("if-missing", 0), ("never", 0)])
def test_the_local_image_is_used_as_the_policy_says(
    run_job: JobRunner, admin_api: Any, test_image: str, pull: str, pulls: int
) -> None:
    # The test image exists only locally, so every pull of it fails.
    before = operation_calls(run_job).get("image_pull", 0)
    job = run_job_of(f"local-{pull}", test_image, "echo ran", pull=pull)
    assert run_and_check_removed(run_job, admin_api, job).stdout == b"ran\n"
    assert operation_calls(run_job).get("image_pull", 0) - before == pulls


def test_pull_always_fails_when_the_pull_fails(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    with pytest.raises(RunError, match=r"could not be pulled \(pull = always\)"):
        run_and_check_removed(run_job, admin_api, run_job_of("always-local", test_image, "true", pull="always"))


def test_pull_policy_words() -> None:
    assert [pull_policy(v) for v in ("TRUE", "on", True, "0", False, "Always", "never", "if-missing")] == [
        "true", "true", "true", "if-missing", "if-missing", "always", "never", "if-missing"
    ]
    with pytest.raises(RunError, match="pull must be one of"):
        pull_policy("sometimes")


# --- max-runtime and cancel ------------------------------------------------------------------


def test_max_runtime_stops_and_removes_the_container(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    job = run_job_of("slow", test_image, "sh -c 'echo before; sleep 300'", max_runtime="1s")
    started = time.monotonic()
    with pytest.raises(RunTimedOut, match="max-runtime 1s exceeded; container stopped"):
        run_and_check_removed(run_job, admin_api, job)
    assert time.monotonic() - started < 15


def test_a_timed_out_run_keeps_its_output(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    job = run_job_of("slowout", test_image, "sh -c 'echo before; sleep 300'", max_runtime="1s")
    context = run_job.context(max_runtime=job.max_runtime)
    with pytest.raises(RunTimedOut):
        run_and_check_removed(run_job, admin_api, job, context=context)
    assert context.stdout.getvalue() == b"before\n"


def test_max_runtime_with_delete_false_leaves_it_stopped(
    run_job: JobRunner, admin_api: Any, test_image: str
) -> None:
    job = run_job_of("slowkeep", test_image, "sleep 300", max_runtime="1s", delete="false")
    run = Run(job.name, job.type)
    with pytest.raises(RunTimedOut):
        run_job(job, run=run)
    kept = containers_of(admin_api, run)
    try:
        assert len(kept) == 1
        assert admin_api.inspect_container(kept[0]["Id"])["State"]["Running"] is False
    finally:
        for item in kept:
            admin_api.remove_container(item["Id"], force=True)


def test_cancel_stops_and_removes_the_container(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    job = run_job_of("cancel", test_image, "sleep 300")
    run = Run(job.name, job.type)
    cancel = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_job(job, run_job.context(cancel=cancel), run=run)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    assert wait_until(
        lambda: any(c["State"] == "running" for c in containers_of(admin_api, run)), timeout=15
    )
    cancel.set()
    thread.join(20)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RunCancelled), errors
    assert containers_of(admin_api, run) == []


def test_cancel_before_the_start_creates_nothing(run_job: JobRunner, admin_api: Any, test_image: str) -> None:
    cancel = threading.Event()
    cancel.set()
    job = run_job_of("precancel", test_image, "true", pull="never")
    with pytest.raises(RunCancelled):
        run_and_check_removed(run_job, admin_api, job, context=run_job.context(cancel=cancel))


# --- an existing container --------------------------------------------------------------------


def test_an_existing_container_is_started_and_kept(run_job: JobRunner, containers: Containers) -> None:
    container = containers.create(["sh", "-c", "echo x >> /count; wc -l < /count; echo e >&2"], start=False)
    job = make_job("job-run", "existing", container=container)
    first = run_job(job)
    assert (first.code, first.stdout, first.stderr) == (0, b"1\n", b"e\n")
    second = run_job(job)
    # Only this run's output, not the earlier runs' logs.
    assert (second.code, second.stdout, second.stderr) == (0, b"2\n", b"e\n")
    assert containers.api.inspect_container(container)["State"]["Status"] == "exited"


def test_an_existing_container_that_times_out_is_stopped_not_removed(
    run_job: JobRunner, containers: Containers
) -> None:
    container = containers.create(["sleep", "300"], start=False)
    with pytest.raises(RunTimedOut):
        run_job(make_job("job-run", "existing-slow", container=container, max_runtime="1s"))
    assert containers.api.inspect_container(container)["State"]["Running"] is False


def test_an_existing_container_missing_running_or_paused(run_job: JobRunner, containers: Containers) -> None:
    with pytest.raises(RunError, match="not found"):
        run_job(make_job("job-run", "existing-missing", container=f"{JOB_PREFIX}no-such"))
    running = containers.create()
    with pytest.raises(RunError, match="already running"):
        run_job(make_job("job-run", "existing-running", container=running))
    containers.api.pause(running)
    try:
        with pytest.raises(RunError, match="is paused"):
            run_job(make_job("job-run", "existing-paused", container=running))
    finally:
        containers.api.unpause(running)


# --- through the CLI, as the daemon runs jobs -----------------------------------------------------


def test_ofelia_run_executes_a_job_run(docker_engine_url: str, admin_api: Any, test_image: str, tmp_path: Path) -> None:
    name = f"{JOB_PREFIX}cli-run"
    config = tmp_path / "config.ini"
    config.write_text(
        f'[job-run "{name}"]\nschedule = @manual\nimage = {test_image}\npull = false\nnetwork = none\n'
        f"command = sh -c 'echo from-run; echo to-stderr >&2; exit 3'\n"
    )
    env = {**os.environ, "DOCKER_HOST": docker_engine_url, "OFELIA_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(
        [sys.executable, "-m", "ofelia_core", "run", "--config", str(config), name],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == "from-run\n"
    assert "to-stderr" in result.stderr
    assert admin_api.containers(all=True, filters={"label": f"ofelia.job={name}"}) == []
