"""The job-service-run runner, on a one-node swarm of the project's own engine.

Runs go through the instrumented baseline driver the daemon would use
(``docker_drivers`` from this directory's conftest), wrapped to count engine
requests. Every service a test runs belongs to a job name unique to the test;
the ``job_name`` fixture checks afterwards that no service (and, within a
bound, no task container) of that job is left. The mapping of task states,
service names and the not-a-swarm error are also tested without the engine.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import docker.errors
import pytest
from ofelia_hookspecs.errors import DockerError, DockerTimeout, NotFound, RunCancelled, RunError, RunTimedOut
from ofelia_hookspecs.types import ConfigKeys, RunContext, ServiceSpec

from ofelia_core.baseline.buffers import FreshBufferPool
from ofelia_core.baseline.docker_sdk import SdkDockerClient
from ofelia_core.config.model import Location, Section
from ofelia_core.docker_jobs import service_job
from ofelia_core.docker_jobs.options import JOB_LABEL, MANAGED_LABEL, RUN_ID_LABEL
from ofelia_core.drivers.loading import ActiveDrivers
from ofelia_core.jobs import Job, build_job
from ofelia_core.jobtypes import JOB_KEYS, JOB_TYPES
from ofelia_core.runs import Run

SERVICE_RUN = next(spec for spec in JOB_TYPES if spec.name == "job-service-run")
EXTRA_KEYS = [ConfigKeys("job", JOB_KEYS)]
#: The engine's own answer to a service call on a node outside any swarm (HTTP 503).
NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node '
    "to swarm and try again."
)
#: Exits promptly on SIGTERM, so a removed service's container goes within a second or two.
LONG_COMMAND = "sh -c 'echo started; trap \"exit 0\" TERM; sleep 60 & wait'"
CLEANUP_TIMEOUT = 30.0

docker_test = pytest.mark.docker


# --- helpers ---------------------------------------------------------------------------


class CountingClient:
    """The driver under test, counting the engine operations a run asks for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def make_job(
    name: str, image: str, command: str = "", global_values: dict[str, Any] | None = None, **values: Any
) -> Job:
    """A job-service-run Job as the config builds it; ``max_runtime=`` becomes ``max-runtime``."""
    where = Location("test.ini", line=1)
    section = Section("job-service-run", name, where)
    section.set("schedule", "@manual", where)
    section.set("image", image, where)
    if command:
        section.set("command", command, where)
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            section.set(key.replace("_", "-"), item, where)
    return build_job(section, SERVICE_RUN, EXTRA_KEYS, global_values)


class Outcome:
    def __init__(self, code: int | None, run: Run, context: RunContext, calls: Counter[str]) -> None:
        self.code = code
        self.run = run
        self.context = context
        self.calls = calls

    @property
    def stdout(self) -> bytes:
        return self.context.stdout.getvalue()

    @property
    def stderr(self) -> bytes:
        return self.context.stderr.getvalue()


def new_context(client: Any, max_runtime: float | None = None) -> RunContext:
    pool = FreshBufferPool(max_size=1024 * 1024)
    return RunContext(
        pool.get("test", "stdout"),
        pool.get("test", "stderr"),
        max_runtime=max_runtime,
        drivers=SimpleNamespace(docker_client=client),
    )


def run_service_job(client: Any, job: Job, run: Run | None = None, context: RunContext | None = None) -> Outcome:
    """Run through the job type's registered runner, as the executor does."""
    counting = CountingClient(client)
    run = run or Run(job.name, job.type)
    context = context or new_context(counting, job.max_runtime)
    context.drivers = SimpleNamespace(docker_client=counting)
    assert SERVICE_RUN.runner is not None
    code = SERVICE_RUN.runner(job, run, context)
    return Outcome(code, run, context, counting.calls)


def services_of(api: Any, label: str) -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = api.services(filters={"label": label})
    return services


def wait_until(check: Callable[[], bool], what: str, timeout: float = CLEANUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture
def swarm_client(docker_drivers: ActiveDrivers, docker_swarm: None, test_image: str) -> Any:
    """The daemon's (instrumented) Docker client on the test engine, a swarm manager meanwhile."""
    return docker_drivers.docker_client


@pytest.fixture
def job_name(admin_api: Any, docker_swarm: None) -> Iterator[str]:
    """A job name unique to the test; nothing of its runs may be left afterwards."""
    name = f"svc-test-{uuid.uuid4().hex[:10]}"
    yield name
    label = f"{JOB_LABEL}={name}"
    leftovers = services_of(admin_api, label)
    for service in leftovers:
        with contextlib.suppress(docker.errors.NotFound):
            admin_api.remove_service(service["ID"])
    # Task containers go once their service is removed (after the task stops).
    wait_until(lambda: not admin_api.containers(all=True, filters={"label": label}), f"the containers of {name} to go")
    assert not leftovers, f"services left behind: {[s['Spec']['Name'] for s in leftovers]}"


@pytest.fixture
def overlay_network(admin_api: Any, docker_swarm: None) -> Iterator[tuple[str, str]]:
    """An attachable overlay network: (name, subnet prefix)."""
    token = uuid.uuid4()
    name = f"ofelia-test-overlay-{token.hex[:8]}"
    # A subnet of its own, so concurrent sessions do not overlap.
    prefix = f"10.231.{token.int % 256}."
    subnet = f"{prefix}0/24"
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
    network = admin_api.create_network(name, driver="overlay", attachable=True, ipam=ipam,
                                   labels={"ofelia.test": "1"})
    yield name, prefix

    def removed() -> bool:
        try:
            admin_api.remove_network(network["Id"])
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError:
            return False  # still in use by a task container that is going away
        return True

    wait_until(removed, f"network {name} to be removable")


# --- on the swarm ---------------------------------------------------------------------


@docker_test
def test_success_with_output_and_the_service_removed(
    swarm_client: Any, admin_api: Any, test_image: str, job_name: str
) -> None:
    job = make_job(job_name, test_image, "sh -c 'echo out; echo err >&2'")
    outcome = run_service_job(swarm_client, job)
    assert outcome.code == 0
    assert outcome.stdout == b"out\n" and outcome.stderr == b"err\n"
    assert outcome.run.error is None
    # delete defaults to true: gone as soon as the runner returns.
    assert services_of(admin_api, f"{RUN_ID_LABEL}={outcome.run.id}") == []
    calls = outcome.calls
    assert calls["service_create"] == 1 and calls["service_remove"] == 1 and calls["service_logs"] == 1
    # Backoff from 0.1 s: a sub-second task is seen finished within a handful of polls.
    assert 1 <= calls["service_tasks"] <= 10, calls
    assert set(calls) == {"service_create", "service_tasks", "service_logs", "service_remove"}


@docker_test
def test_non_zero_exit_code_is_the_task_s(swarm_client: Any, test_image: str, job_name: str) -> None:
    outcome = run_service_job(swarm_client, make_job(job_name, test_image, "sh -c 'echo before; exit 3'"))
    assert outcome.code == 3
    assert outcome.stdout == b"before\n"
    # The exit code says it all: the executor writes "exit code 3".
    assert outcome.run.error is None


@docker_test
def test_a_command_that_cannot_start_fails_with_the_engine_s_reason(
    swarm_client: Any, test_image: str, job_name: str
) -> None:
    outcome = run_service_job(swarm_client, make_job(job_name, test_image, "/no/such/binary"))
    assert outcome.code == 127
    assert outcome.run.error is not None
    assert outcome.run.error.startswith("task failed: starting container failed")
    assert "/no/such/binary" in outcome.run.error


@docker_test
def test_environment(
    swarm_client: Any, test_image: str, job_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bare KEY passes the scheduler's value, as `docker run -e KEY` does (and as job-run reads it).
    monkeypatch.setenv("FROM_SCHEDULER", "passed")
    monkeypatch.delenv("UNSET_HERE", raising=False)
    job = make_job(
        job_name, test_image,
        """sh -c 'echo "$GREETING|$EMPTY|$WITH_EQUALS|$FROM_SCHEDULER|${UNSET_HERE-unset}"'""",
        environment=["GREETING=hello world", "EMPTY=", "WITH_EQUALS=a=b", "FROM_SCHEDULER", "UNSET_HERE"],
    )
    outcome = run_service_job(swarm_client, job)
    assert outcome.code == 0
    assert outcome.stdout == b"hello world||a=b|passed|unset\n"


@docker_test
@pytest.mark.parametrize(
    ("user", "expected"),
    [("", b"0 0\n"), ("root", b"0 0\n"), ("nobody", b"65534 65534\n"), ("1234:5678", b"1234 5678\n")],
)
def test_user_is_applied(
    swarm_client: Any, test_image: str, job_name: str, user: str, expected: bytes
) -> None:
    # The image's /etc/passwd has root (0) and nobody (65534); "" is the image's default user.
    values = {"user": user} if user else {}
    outcome = run_service_job(swarm_client, make_job(job_name, test_image, "sh -c 'echo $(id -u) $(id -g)'", **values))
    assert outcome.code == 0
    assert outcome.stdout == expected


@docker_test
def test_global_default_user_applies_when_the_job_sets_none(
    swarm_client: Any, test_image: str, job_name: str
) -> None:
    job = make_job(job_name, test_image, "id -u", global_values={"default-user": "nobody"})
    outcome = run_service_job(swarm_client, job)
    assert outcome.code == 0 and outcome.stdout == b"65534\n"


@docker_test
def test_an_unknown_user_fails_clearly(swarm_client: Any, test_image: str, job_name: str) -> None:
    outcome = run_service_job(swarm_client, make_job(job_name, test_image, "true", user="no-such-user"))
    assert outcome.code != 0
    assert "unable to find user no-such-user" in (outcome.run.error or "")


@docker_test
def test_tty_is_applied(swarm_client: Any, test_image: str, job_name: str) -> None:
    command = "sh -c 'echo err >&2; if [ -t 1 ]; then echo tty; else echo no-tty; fi'"
    with_tty = run_service_job(swarm_client, make_job(job_name, test_image, command, tty="true"))
    assert with_tty.code == 0
    # A tty merges the streams (and turns \n into \r\n).
    assert with_tty.stdout == b"err\r\ntty\r\n" and with_tty.stderr == b""
    without = run_service_job(swarm_client, make_job(job_name, test_image, command))
    assert without.stdout == b"no-tty\n" and without.stderr == b"err\n"


@docker_test
def test_delete_false_keeps_the_service_with_its_labels(
    swarm_client: Any, admin_api: Any, test_image: str, job_name: str
) -> None:
    outcome = run_service_job(swarm_client, make_job(job_name, test_image, "echo kept", delete="false"))
    assert outcome.code == 0 and outcome.stdout == b"kept\n"
    assert outcome.calls["service_remove"] == 0
    services = services_of(admin_api, f"{RUN_ID_LABEL}={outcome.run.id}")
    assert len(services) == 1
    spec = services[0]["Spec"]
    try:
        assert spec["Name"] == f"ofelia-{job_name}-{outcome.run.id}"
        assert spec["Labels"] == {JOB_LABEL: job_name, RUN_ID_LABEL: outcome.run.id, MANAGED_LABEL: "true"}
        assert (JOB_LABEL, RUN_ID_LABEL, MANAGED_LABEL) == ("ofelia.job", "ofelia.run-id", "ofelia.managed")
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
        assert spec["TaskTemplate"]["ContainerSpec"]["Labels"][MANAGED_LABEL] == "true"
        assert spec["TaskTemplate"]["ContainerSpec"]["User"] == "root"
    finally:
        admin_api.remove_service(services[0]["ID"])


@docker_test
def test_network(
    swarm_client: Any, test_image: str, job_name: str, overlay_network: tuple[str, str]
) -> None:
    name, prefix = overlay_network
    outcome = run_service_job(swarm_client, make_job(job_name, test_image, "ip -4 addr", network=name))
    assert outcome.code == 0
    assert f"inet {prefix}".encode() in outcome.stdout, outcome.stdout


@docker_test
def test_a_missing_network_is_a_clear_error(swarm_client: Any, test_image: str, job_name: str) -> None:
    with pytest.raises(RunError, match=r"cannot create service ofelia-svc-test-\S+ from image .*"
                                       r"network ofelia-no-such-net not found"):
        run_service_job(swarm_client, make_job(job_name, test_image, "true", network="ofelia-no-such-net"))


@docker_test
def test_max_runtime_removes_the_service_and_times_out(
    swarm_client: Any, admin_api: Any, test_image: str, job_name: str
) -> None:
    job = make_job(job_name, test_image, LONG_COMMAND, max_runtime="2s")
    run = Run(job.name, job.type)
    started = time.monotonic()
    # The task runs by then (it starts within a second): no "(its task was ...)" suffix expected.
    with pytest.raises(RunTimedOut, match=r"^max-runtime 2s exceeded; service removed$"):
        run_service_job(swarm_client, job, run)
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 5.0, elapsed
    assert services_of(admin_api, f"{RUN_ID_LABEL}={run.id}") == []


@docker_test
def test_max_runtime_keeps_the_output_so_far(swarm_client: Any, test_image: str, job_name: str) -> None:
    job = make_job(job_name, test_image, LONG_COMMAND, max_runtime="3s")
    context = new_context(None, job.max_runtime)
    with pytest.raises(RunTimedOut):
        run_service_job(swarm_client, job, context=context)
    assert context.stdout.getvalue() == b"started\n"


@docker_test
def test_max_runtime_applies_even_when_delete_is_false(
    swarm_client: Any, admin_api: Any, test_image: str, job_name: str
) -> None:
    job = make_job(job_name, test_image, LONG_COMMAND, max_runtime="1s", delete="false")
    run = Run(job.name, job.type)
    with pytest.raises(RunTimedOut):
        run_service_job(swarm_client, job, run)
    assert services_of(admin_api, f"{RUN_ID_LABEL}={run.id}") == []


@docker_test
def test_cancel_removes_the_service(
    swarm_client: Any, admin_api: Any, test_image: str, job_name: str
) -> None:
    job = make_job(job_name, test_image, LONG_COMMAND)
    run = Run(job.name, job.type)
    context = new_context(None, job.max_runtime)
    raised: list[BaseException] = []

    def target() -> None:
        try:
            run_service_job(swarm_client, job, run, context)
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    try:
        label = f"{RUN_ID_LABEL}={run.id}"

        def task_running() -> bool:
            services = services_of(admin_api, label)
            if not services:
                return False
            tasks = admin_api.tasks(filters={"service": services[0]["ID"]})
            return any(task["Status"]["State"] == "running" for task in tasks)

        wait_until(task_running, "the service's task to run")
        cancelled_at = time.monotonic()
        context.cancel.set()
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert time.monotonic() - cancelled_at < 2.0
    finally:
        context.cancel.set()
        worker.join(timeout=30)
    assert len(raised) == 1 and isinstance(raised[0], RunCancelled), raised
    assert str(raised[0]) == "cancelled at shutdown; service removed"
    assert services_of(admin_api, label) == []


@docker_test
def test_a_missing_image_is_one_clear_error(swarm_client: Any, admin_api: Any, job_name: str) -> None:
    # Never pullable (RFC 2606), with or without a network.
    image = "registry.invalid/ofelia-test/never:1"
    outcome = run_service_job(swarm_client, make_job(job_name, image, "true"))
    assert outcome.code == 255
    assert outcome.run.error == (
        f"image {image!r} is not on the node and could not be pulled (task rejected: No such image: {image})"
    )
    assert outcome.stdout == b"" and outcome.stderr == b""
    # A rejected task never had a container: no logs asked for.
    assert outcome.calls["service_logs"] == 0
    assert services_of(admin_api, f"{RUN_ID_LABEL}={outcome.run.id}") == []


@docker_test
def test_through_ofelia_run(docker_engine_url: str, admin_api: Any, test_image: str, job_name: str,
                            tmp_path: Path) -> None:
    """The real path: the CLI, the executor, the baseline driver from DOCKER_HOST."""
    config = tmp_path / "config.ini"
    config.write_text(
        "[global]\n"
        f"state-dir = {tmp_path / 'state'}\n"
        f'[job-service-run "{job_name}"]\n'
        "schedule = @manual\n"
        f"image = {test_image}\n"
        "user = nobody\n"
        "environment = WHO=service\n"
        "command = sh -c 'echo hello from $WHO $(id -u); echo oops >&2; exit 4'\n"
    )
    env = {**os.environ, "DOCKER_HOST": docker_engine_url}
    env.pop("DOCKER_TLS_VERIFY", None)
    env.pop("DOCKER_CERT_PATH", None)
    ofelia = Path(sys.executable).with_name("ofelia")
    result = subprocess.run(
        [str(ofelia), "run", "--config", str(config), job_name],
        capture_output=True, env=env, timeout=120, check=False,
    )
    assert result.returncode == 4, result.stderr.decode()
    assert result.stdout == b"hello from service 65534\n"
    assert b"oops\n" in result.stderr
    assert b": failed: exit code 4" in result.stderr
    assert services_of(admin_api, f"{JOB_LABEL}={job_name}") == []


# --- not a swarm: an engine that answers as one outside a swarm does ---------------------


class _NotASwarmHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request as an engine that is in no swarm answers a service call."""

    requests_seen: list[str]

    def _answer(self) -> None:
        self.requests_seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"message": NOT_A_MANAGER}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def address_string(self) -> str:
        return "unix"  # a unix socket's peer has no address

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def not_a_swarm_engine(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """(base URL, requests seen) of a stand-in engine that is not a swarm manager.

    The real engine cannot be taken out of its swarm here: other tests share it
    (the swarm fixture is session-wide). The message is the engine's own.
    """
    path = tmp_path / "engine.sock"
    seen: list[str] = []
    handler = type("Handler", (_NotASwarmHandler,), {"requests_seen": seen})
    server = _UnixHTTPServer(str(path), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{path}", seen
    server.shutdown()
    server.server_close()


def test_not_a_swarm_is_a_clear_error(not_a_swarm_engine: tuple[str, list[str]]) -> None:
    url, seen = not_a_swarm_engine
    client = SdkDockerClient.from_settings({"base-url": url, "api-version": "1.41"})
    try:
        job = make_job("svc-no-swarm", "ofelia-test/busybox:latest", "true")
        with pytest.raises(RunError) as caught:
            run_service_job(client, job)
    finally:
        client.close()
    assert str(caught.value) == (
        "job-service-run needs a swarm: run `docker swarm init` (or point ofelia at a manager node); "
        f"the engine said: {NOT_A_MANAGER}"
    )
    # One request: nothing to clean up when the engine refused the service.
    assert seen == ["POST /v1.41/services/create"]


# --- without the engine -------------------------------------------------------------------


class StubClient:
    """Just enough of the Protocol for paths the engine cannot be made to take."""

    def __init__(self, create_error: DockerError | None = None, tasks: list[dict[str, Any]] | None = None) -> None:
        self.create_error = create_error
        self.tasks = tasks
        self.removed: list[str] = []

    def service_create(self, spec: ServiceSpec) -> str:
        if self.create_error is not None:
            raise self.create_error
        return "svc-id"

    def service_tasks(self, service_id: str) -> list[dict[str, Any]]:
        if self.tasks is None:
            raise NotFound(f"service {service_id} not found", operation="service_tasks", status=404)
        return self.tasks

    def service_logs(self, service_id: str) -> Iterator[tuple[str, bytes]]:
        return iter(self.output)

    output: tuple[tuple[str, bytes], ...] = ()

    def service_remove(self, service_id: str) -> None:
        self.removed.append(service_id)


def test_a_create_that_timed_out_is_cleaned_up_by_name() -> None:
    stub = StubClient(DockerTimeout("the engine did not answer in time", operation="service_create"))
    job = make_job("svc-timeout", "img", "true")
    run = Run(job.name, job.type)
    with pytest.raises(RunError, match=r"cannot create service .* did not answer in time"):
        run_service_job(stub, job, run)
    assert stub.removed == [f"ofelia-svc-timeout-{run.id}"]


def test_a_service_removed_by_someone_else_fails_the_run() -> None:
    stub = StubClient()
    with pytest.raises(RunError, match="service svc-id was removed by someone else"):
        run_service_job(stub, make_job("svc-gone", "img", "true"))
    assert stub.removed == ["svc-id"]


def test_a_task_that_never_ran_says_where_it_was_stuck() -> None:
    message = "no suitable node (scheduling constraints not satisfied on 1 node)"
    stub = StubClient(tasks=[{"Status": {"State": "pending", "Message": message}}])
    job = make_job("svc-stuck", "img", "true", max_runtime="300ms")
    with pytest.raises(RunTimedOut) as caught:
        run_service_job(stub, job)
    assert str(caught.value) == f"max-runtime 300ms exceeded; service removed (its task was pending: {message})"
    assert stub.removed == ["svc-id"]


def test_a_task_that_ended_as_the_deadline_passed_keeps_its_outcome() -> None:
    # The deadline passes before the first poll; the last look finds the task done.
    stub = StubClient(tasks=[_task("complete", 0)])
    stub.output = (("stdout", b"done\n"),)
    outcome = run_service_job(stub, make_job("svc-just-in-time", "img", "true", max_runtime="10ms"))
    assert outcome.code == 0 and outcome.stdout == b"done\n"
    assert outcome.calls["service_tasks"] == 1 and stub.removed == ["svc-id"]


def test_bad_command_and_environment_fail_before_anything_is_created() -> None:
    stub = StubClient()
    with pytest.raises(RunError, match="cannot parse command"):
        run_service_job(stub, make_job("svc-bad", "img", "sh -c 'unclosed"))
    with pytest.raises(RunError, match="environment: 'BAD KEY=x' is not KEY=value"):
        run_service_job(stub, make_job("svc-bad", "img", "true", environment=["BAD KEY=x"]))
    assert stub.removed == []


@pytest.mark.parametrize(
    ("job_name", "expected"),
    [
        ("backup", "ofelia-backup-0123456789ab"),
        ("db backup/nightly_2", "ofelia-db-backup-nightly-2-0123456789ab"),
        ("---", "ofelia-0123456789ab"),
        ("x" * 80, "ofelia-" + "x" * 43 + "-0123456789ab"),
    ],
)
def test_service_name_is_a_valid_dns_label(job_name: str, expected: str) -> None:
    name = service_job.service_name(job_name, "0123456789ab")
    assert name == expected and len(name) <= 63


def _task(state: str, exit_code: int | None = None, err: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Message": state}
    if err is not None:
        status["Err"] = err
    if exit_code is not None:
        status["ContainerStatus"] = {"ContainerID": "c", "ExitCode": exit_code}
    return {"Status": status}


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (_task("complete", 0), (0, None)),
        (_task("failed", 3, "task: non-zero exit (3)"), (3, None)),
        (_task("failed", 128, "starting container failed: x"), (128, "task failed: starting container failed: x")),
        # A failure never reports success, even without an exit code.
        (_task("failed", 0, "boom"), (255, "task failed: boom")),
        (_task("failed"), (255, None)),
        (_task("rejected", 0, "No such image: img"),
         (255, "image 'img' is not on the node and could not be pulled (task rejected: No such image: img)")),
        (_task("rejected", None, "invalid mount config"), (255, "task rejected: invalid mount config")),
    ],
)
def test_task_outcome(task: dict[str, Any], expected: tuple[int, str | None]) -> None:
    assert service_job.task_outcome(task, "img") == expected


@pytest.mark.parametrize("state", ["shutdown", "orphaned", "remove"])
def test_a_task_stopped_from_outside_is_a_run_error(state: str) -> None:
    with pytest.raises(RunError, match=f"ended in state '{state}'"):
        service_job.task_outcome(_task(state), "img")
