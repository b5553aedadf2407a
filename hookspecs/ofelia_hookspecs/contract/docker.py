"""Contract tests for a :class:`~ofelia_hookspecs.protocols.DockerClient` driver.

They run against a real Docker engine, never a fake. Subclass the kits in a
test module and provide these fixtures (class scope or wider: the kit keeps
one long-running container per class for the exec tests):

``docker_client``
    Your driver, built the way its factory hook builds it and pointed at a
    live engine.
``test_image``
    A local image with busybox (or coreutils) and an ``/etc/passwd`` that has
    ``nobody`` as uid 65534, for example ``ofelia-test/busybox:latest``. Nothing
    is pulled.
``unreachable_docker_client``
    Your driver pointed at an address where nothing listens.
``docker_engine_url``
    The engine's address (``unix:///path/docker.sock`` or ``tcp://host:port``
    without TLS): the kit pauses a container through it, which the Protocol
    cannot do. Needed by one test only.
``swarm_docker_client`` (:class:`DockerServiceContract` only)
    Your driver pointed at an engine that is a swarm manager.

::

    from ofelia_hookspecs.contract.docker import DockerClientContract

    class TestMyDockerClient(DockerClientContract):
        pass  # the fixtures come from your conftest

Everything a test creates carries the label ``ofelia.test=1`` and a label unique
to the test, and is removed when the test ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

try:
    import pytest
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the ofelia contract test kit needs pytest: pip install 'ofelia-hookspecs[contract]'"
    ) from exc

from ..errors import Conflict, DockerError, DockerTimeout, EngineUnavailable, NotFound, PullFailed
from ..protocols import DockerClient
from ..types import ContainerSpec, ServiceSpec, StreamChunk

T = TypeVar("T")

#: Every object a contract test creates carries this label.
TEST_LABEL = "ofelia.test"
#: And this one, unique to the test, so filters never see another test's objects.
RUN_LABEL = "ofelia.test.run"
#: A registry name that can never resolve (RFC 2606), so a pull fails the same way
#: with or without a network.
UNPULLABLE_IMAGE = "registry.invalid/ofelia-contract/never:1"
MISSING_IMAGE = "ofelia-contract/missing-image:never"
MISSING_NAME = "ofelia-contract-missing-object"
#: Upper bound for anything that should take well under a second.
DEADLINE = 30.0


# --- helpers ----------------------------------------------------------------------


def collect(chunks: Iterable[StreamChunk]) -> dict[str, bytes]:
    """Join a demultiplexed stream into ``{"stdout": ..., "stderr": ...}``."""
    out = {"stdout": b"", "stderr": b""}
    for stream, data in chunks:
        assert stream in out, f"unknown stream name {stream!r}"
        assert isinstance(data, bytes), f"chunk data must be bytes, got {type(data).__name__}"
        out[stream] += data
    return out


def wait_for(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``check`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def close_stream(stream: Any) -> None:
    close = getattr(stream, "close", None)
    assert callable(close), f"{type(stream).__name__} has no close(): a stream must be closable"
    close()


def first_match(stream: Iterator[T], predicate: Callable[[T], bool], timeout: float = DEADLINE) -> T:
    """The first item of a (blocking) stream that matches, read in a thread so a
    driver that never delivers fails the test instead of hanging it."""
    found: queue.Queue[tuple[str, Any]] = queue.Queue()

    def read() -> None:
        try:
            for item in stream:
                if predicate(item):
                    found.put(("item", item))
                    return
            found.put(("end", None))
        except BaseException as exc:
            found.put(("error", exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        kind, value = found.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no matching item within {timeout:.0f} s") from None
    finally:
        close_stream(stream)
    if kind == "error":
        raise value
    assert kind == "item", "the stream ended before a matching item arrived"
    result: T = value
    return result


def exec_run(
    client: DockerClient, container: str, cmd: list[str], *, tty: bool = False, **options: Any
) -> tuple[int, dict[str, bytes]]:
    """exec_create, read the whole stream, then exec_inspect until it stops running."""
    exec_id = client.exec_create(container, cmd, tty=tty, **options)
    assert isinstance(exec_id, str) and exec_id
    output = collect(client.exec_start(exec_id, tty=tty))
    state = wait_for(
        lambda: (s if not (s := client.exec_inspect(exec_id))["Running"] else None), "the exec to stop"
    )
    return int(state["ExitCode"]), output


def _engine_request(engine_url: str, method: str, path: str) -> tuple[int, bytes]:
    """One call to the engine's API without any Docker library."""
    url = urlsplit(engine_url)
    connection: http.client.HTTPConnection
    if url.scheme == "unix":
        connection = _UnixConnection(url.path)
    elif url.scheme in ("tcp", "http"):
        connection = http.client.HTTPConnection(url.hostname or "localhost", url.port or 2375, timeout=DEADLINE)
    else:
        raise ValueError(f"docker_engine_url: unsupported address {engine_url!r} (unix:// or tcp://)")
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=DEADLINE)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _Objects:
    """Creates containers for one test and removes them afterwards."""

    def __init__(self, client: DockerClient, image: str) -> None:
        self.client = client
        self.image = image
        self.run_id = uuid.uuid4().hex[:12]
        self.labels = {TEST_LABEL: "1", RUN_LABEL: self.run_id}
        self.containers: list[str] = []
        self.services: list[str] = []

    def spec(self, command: list[str] | None = None, **fields: Any) -> ContainerSpec:
        labels = {**self.labels, **fields.pop("labels", {})}
        # No test needs a network; "none" also spares engines started with --bridge=none a
        # stale sandbox record per container (dockerd removes those at its next start,
        # about 0.1 s each). Pass network=None to exercise the engine's default.
        fields.setdefault("network", "none")
        return ContainerSpec(image=fields.pop("image", self.image), command=command, labels=labels, **fields)

    def create(self, command: list[str] | None = None, **fields: Any) -> str:
        container_id = self.client.container_create(self.spec(command, **fields))
        assert isinstance(container_id, str) and container_id
        self.containers.append(container_id)
        return container_id

    def run(self, command: list[str] | None = None, **fields: Any) -> str:
        container_id = self.create(command, **fields)
        self.client.container_start(container_id)
        return container_id

    def service(self, command: list[str], **fields: Any) -> str:
        labels = {**self.labels, **fields.pop("labels", {})}
        spec = ServiceSpec(image=self.image, command=command, labels=labels, **fields)
        service_id = self.client.service_create(spec)
        assert isinstance(service_id, str) and service_id
        self.services.append(service_id)
        return service_id

    def cleanup(self) -> None:
        for service_id in self.services:
            with contextlib.suppress(NotFound):
                self.client.service_remove(service_id)
        # Also what a failed test created without recording it.
        leftovers = self.client.container_list(filters={"label": [f"{RUN_LABEL}={self.run_id}"]}, all=True)
        ids = set(self.containers) | {str(c["Id"]) for c in leftovers}
        for container_id in ids:
            # Already gone, or being removed by the engine.
            with contextlib.suppress(NotFound, Conflict):
                self.client.container_remove(container_id, force=True)


def _is_stopped(state: dict[str, Any]) -> bool:
    return state.get("Status", {}).get("State") in {"complete", "failed", "rejected", "shutdown", "orphaned"}


# --- the kits ---------------------------------------------------------------------


class DockerClientContract:
    """What the core relies on from every Docker client driver."""

    @pytest.fixture
    def objects(self, docker_client: DockerClient, test_image: str) -> Iterator[_Objects]:
        made = _Objects(docker_client, test_image)
        yield made
        made.cleanup()

    @pytest.fixture(scope="class")
    @classmethod
    def exec_container(cls, docker_client: DockerClient, test_image: str) -> Iterator[str]:
        """One running container shared by the exec tests of the class."""
        made = _Objects(docker_client, test_image)
        container_id = made.run(["sleep", "3600"])
        yield container_id
        made.cleanup()

    # -- engine

    def test_ping_returns_when_the_engine_answers(self, docker_client: DockerClient) -> None:
        ping: Callable[[], object] = docker_client.ping
        assert ping() is None

    def test_version_is_the_engine_document(self, docker_client: DockerClient) -> None:
        version = docker_client.version()
        assert isinstance(version, dict)
        assert version.get("ApiVersion") and version.get("Version")

    def test_stats_is_a_dict(self, docker_client: DockerClient) -> None:
        assert isinstance(docker_client.stats(), dict)

    def test_unreachable_engine_is_engine_unavailable(self, unreachable_docker_client: DockerClient) -> None:
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as caught:
            unreachable_docker_client.ping()
        assert caught.value.engine_failure is True
        assert caught.value.operation == "ping"
        assert time.monotonic() - started < DEADLINE

    # -- exec

    def test_exec_splits_stdout_and_stderr(self, docker_client: DockerClient, exec_container: str) -> None:
        code, output = exec_run(
            docker_client, exec_container, ["sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2"]
        )
        assert code == 0
        assert output == {"stdout": b"out1\nout2\n", "stderr": b"err1\nerr2\n"}

    def test_exec_exit_code_after_the_stream_ends(self, docker_client: DockerClient, exec_container: str) -> None:
        code, output = exec_run(docker_client, exec_container, ["sh", "-c", "echo failing >&2; exit 7"])
        assert code == 7
        assert output["stderr"] == b"failing\n"

    def test_exec_inspect_reports_pid_and_state(self, docker_client: DockerClient, exec_container: str) -> None:
        exec_id = docker_client.exec_create(exec_container, ["true"])
        assert docker_client.exec_inspect(exec_id)["Running"] is False  # created, not started
        collect(docker_client.exec_start(exec_id))
        state = wait_for(
            lambda: (s if not (s := docker_client.exec_inspect(exec_id))["Running"] else None), "exec end"
        )
        assert state["ExitCode"] == 0
        assert "Pid" in state

    def test_exec_applies_user_environment_and_workdir(
        self, docker_client: DockerClient, exec_container: str
    ) -> None:
        code, output = exec_run(
            docker_client,
            exec_container,
            ["sh", "-c", 'id -u; echo "$GREETING"; pwd'],
            user="nobody",
            environment={"GREETING": "hello world"},
            workdir="/tmp",
        )
        assert code == 0, output
        assert output["stdout"] == b"65534\nhello world\n/tmp\n"

    def test_exec_with_tty_sends_everything_to_stdout(
        self, docker_client: DockerClient, exec_container: str
    ) -> None:
        code, output = exec_run(
            docker_client, exec_container, ["sh", "-c", "echo out; echo err >&2; exit 3"], tty=True
        )
        assert code == 3
        assert output["stderr"] == b""
        assert b"out" in output["stdout"] and b"err" in output["stdout"]

    def test_exec_large_output_arrives_whole(self, docker_client: DockerClient, exec_container: str) -> None:
        size = 3 * 1024 * 1024 + 17  # several frames, not a multiple of any buffer size
        code, output = exec_run(
            docker_client, exec_container, ["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x; echo done >&2"]
        )
        assert code == 0
        assert output["stdout"] == b"x" * size
        assert output["stderr"] == b"done\n"

    def test_exec_stream_can_be_closed_early(self, docker_client: DockerClient, exec_container: str) -> None:
        exec_id = docker_client.exec_create(exec_container, ["sh", "-c", "echo first; sleep 30"])
        stream = docker_client.exec_start(exec_id)
        assert next(stream) == ("stdout", b"first\n")
        close_stream(stream)
        assert list(stream) == []

    def test_concurrent_execs_keep_their_own_output(
        self, docker_client: DockerClient, exec_container: str
    ) -> None:
        results: dict[int, tuple[int, dict[str, bytes]]] = {}
        errors: list[BaseException] = []

        def job(n: int) -> None:
            try:
                results[n] = exec_run(
                    docker_client, exec_container, ["sh", "-c", f"echo job{n}; echo err{n} >&2; exit {n}"]
                )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=job, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        assert not errors, errors
        assert results == {
            n: (n, {"stdout": f"job{n}\n".encode(), "stderr": f"err{n}\n".encode()}) for n in range(12)
        }

    def test_exec_in_missing_container_is_not_found(self, docker_client: DockerClient) -> None:
        with pytest.raises(NotFound) as caught:
            docker_client.exec_create(MISSING_NAME, ["true"])
        assert caught.value.engine_failure is False
        assert caught.value.operation == "exec_create"

    def test_exec_in_stopped_container_is_conflict(self, docker_client: DockerClient, objects: _Objects) -> None:
        container_id = objects.create(["true"])  # created, never started
        with pytest.raises(Conflict) as caught:
            docker_client.exec_create(container_id, ["true"])
        assert caught.value.engine_failure is False

    def test_exec_in_paused_container_is_conflict(
        self, docker_client: DockerClient, objects: _Objects, docker_engine_url: str
    ) -> None:
        container_id = objects.run(["sleep", "60"])
        status, body = _engine_request(docker_engine_url, "POST", f"/containers/{container_id}/pause")
        assert status == 204, body
        try:
            with pytest.raises(Conflict) as caught:
                docker_client.exec_create(container_id, ["true"])
            assert caught.value.engine_failure is False
        finally:
            _engine_request(docker_engine_url, "POST", f"/containers/{container_id}/unpause")

    def test_exec_inspect_of_missing_exec_is_not_found(self, docker_client: DockerClient) -> None:
        with pytest.raises(NotFound):
            docker_client.exec_inspect(MISSING_NAME)

    # -- containers

    def test_container_run_exit_code_and_split_logs(self, docker_client: DockerClient, objects: _Objects) -> None:
        container_id = objects.run(["sh", "-c", "echo out; echo err >&2; echo more; exit 3"], network=None)
        assert docker_client.container_wait(container_id, timeout=DEADLINE) == 3
        assert collect(docker_client.container_logs(container_id)) == {
            "stdout": b"out\nmore\n",
            "stderr": b"err\n",
        }
        docker_client.container_remove(container_id)
        with pytest.raises(NotFound):
            docker_client.container_inspect(container_id)

    def test_container_create_applies_the_spec(self, docker_client: DockerClient, objects: _Objects) -> None:
        container_id = objects.create(
            ['echo "$GREETING"; pwd; hostname; id -u; echo "$@"', "script", "arg1"],
            entrypoint=["/bin/sh", "-c"],
            user="nobody",
            environment={"GREETING": "hello world"},
            working_dir="/tmp",
            hostname="ofelia-contract",
            labels={"com.example.role": "contract"},
            network="none",
        )
        inspect = docker_client.container_inspect(container_id)
        config = inspect["Config"]
        assert config["Labels"]["com.example.role"] == "contract"
        assert config["Labels"][TEST_LABEL] == "1"
        assert "GREETING=hello world" in config["Env"]
        assert config["Entrypoint"] == ["/bin/sh", "-c"]
        assert config["WorkingDir"] == "/tmp"
        assert config["Hostname"] == "ofelia-contract"
        assert config["User"] == "nobody"
        assert inspect["HostConfig"]["NetworkMode"] == "none"
        docker_client.container_start(container_id)
        assert docker_client.container_wait(container_id, timeout=DEADLINE) == 0
        assert collect(docker_client.container_logs(container_id)) == {
            "stdout": b"hello world\n/tmp\nofelia-contract\n65534\narg1\n",
            "stderr": b"",
        }

    def test_container_name_and_name_conflict(self, docker_client: DockerClient, objects: _Objects) -> None:
        name = f"ofelia-contract-{objects.run_id}"
        container_id = objects.create(["true"], name=name)
        assert docker_client.container_inspect(name)["Id"] == container_id
        with pytest.raises(Conflict):
            objects.create(["true"], name=name)

    def test_container_volumes_and_volumes_from(self, docker_client: DockerClient, objects: _Objects) -> None:
        # /etc exists on every engine's host: a read-only bind works for local and remote engines.
        source = objects.create(["true"], volumes=["/etc:/mnt/host-etc:ro", "/shared"])
        binds = docker_client.container_inspect(source)["HostConfig"]["Binds"]
        assert "/etc:/mnt/host-etc:ro" in binds
        container_id = objects.run(
            ["sh", "-c", "test -f /mnt/host-etc/passwd && test -d /shared && echo ok"], volumes_from=[source]
        )
        assert docker_client.container_wait(container_id, timeout=DEADLINE) == 0
        assert collect(docker_client.container_logs(container_id))["stdout"] == b"ok\n"

    def test_container_logs_with_tty_are_stdout(self, docker_client: DockerClient, objects: _Objects) -> None:
        container_id = objects.run(["sh", "-c", "echo out; echo err >&2"], tty=True)
        assert docker_client.container_wait(container_id, timeout=DEADLINE) == 0
        output = collect(docker_client.container_logs(container_id))
        assert output["stderr"] == b""
        assert output["stdout"].replace(b"\r\n", b"\n") == b"out\nerr\n"

    def test_container_logs_follow_until_exit(self, docker_client: DockerClient, objects: _Objects) -> None:
        container_id = objects.run(["sh", "-c", "echo first; sleep 0.3; echo second >&2; sleep 0.3; echo third"])
        output = collect(docker_client.container_logs(container_id, follow=True))
        assert output == {"stdout": b"first\nthird\n", "stderr": b"second\n"}

    def test_container_wait_timeout_is_docker_timeout(
        self, docker_client: DockerClient, objects: _Objects
    ) -> None:
        container_id = objects.run(["sleep", "60"])
        started = time.monotonic()
        with pytest.raises(DockerTimeout) as caught:
            docker_client.container_wait(container_id, timeout=0.5)
        assert 0.4 < time.monotonic() - started < 10
        assert caught.value.operation == "container_wait"
        # The driver stays usable after a timed-out call.
        docker_client.container_kill(container_id)
        assert docker_client.container_wait(container_id, timeout=DEADLINE) == 137

    def test_container_stop_sends_sigterm_first(self, docker_client: DockerClient, objects: _Objects) -> None:
        container_id = objects.run(["sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done"])
        wait_for(
            lambda: True if docker_client.container_inspect(container_id)["State"]["Running"] else None,
            "the container to run",
        )
        time.sleep(0.2)  # let the shell install its trap
        docker_client.container_stop(container_id, timeout=20)
        assert docker_client.container_wait(container_id, timeout=DEADLINE) == 42

    def test_kill_stopped_container_is_conflict(self, docker_client: DockerClient, objects: _Objects) -> None:
        container_id = objects.create(["true"])
        with pytest.raises(Conflict):
            docker_client.container_kill(container_id)

    def test_missing_container_is_not_found(self, docker_client: DockerClient) -> None:
        calls: list[Callable[[], object]] = [
            lambda: docker_client.container_inspect(MISSING_NAME),
            lambda: docker_client.container_start(MISSING_NAME),
            lambda: docker_client.container_wait(MISSING_NAME, timeout=5),
            lambda: docker_client.container_remove(MISSING_NAME),
            lambda: docker_client.container_remove(MISSING_NAME, force=True),
            lambda: docker_client.container_kill(MISSING_NAME),
            lambda: collect(docker_client.container_logs(MISSING_NAME)),
        ]
        for call in calls:
            with pytest.raises(NotFound) as caught:
                call()
            assert caught.value.engine_failure is False

    def test_create_with_missing_image_is_not_found(self, docker_client: DockerClient, objects: _Objects) -> None:
        with pytest.raises(NotFound) as caught:
            objects.create(["true"], image=MISSING_IMAGE)
        assert caught.value.operation == "container_create"
        assert caught.value.engine_failure is False

    def test_container_list_filters_by_label(self, docker_client: DockerClient, objects: _Objects) -> None:
        running = objects.run(["sleep", "60"], labels={"com.example.pick": "yes"})
        created = objects.create(["true"], labels={"com.example.pick": "yes"})
        objects.create(["true"], labels={"com.example.pick": "no"})
        selector = {"label": [f"{RUN_LABEL}={objects.run_id}", "com.example.pick=yes"]}
        listed = docker_client.container_list(filters=selector)
        assert [c["Id"] for c in listed] == [running]
        listed_all = docker_client.container_list(filters=selector, all=True)
        assert {c["Id"] for c in listed_all} == {running, created}
        assert all(c["Labels"]["com.example.pick"] == "yes" for c in listed_all)

    # -- images

    def test_image_inspect(self, docker_client: DockerClient, test_image: str) -> None:
        assert docker_client.image_inspect(test_image)["Id"].startswith("sha256:")

    def test_image_inspect_missing_is_not_found(self, docker_client: DockerClient) -> None:
        with pytest.raises(NotFound):
            docker_client.image_inspect(MISSING_IMAGE)

    def test_failed_pull_is_pull_failed_not_an_engine_failure(self, docker_client: DockerClient) -> None:
        with pytest.raises(PullFailed) as caught:
            docker_client.image_pull(UNPULLABLE_IMAGE)
        assert caught.value.engine_failure is False
        assert not isinstance(caught.value, EngineUnavailable)
        assert caught.value.operation == "image_pull"

    # -- events

    def test_events_show_a_container_start(self, docker_client: DockerClient, objects: _Objects) -> None:
        since = time.time() - 5
        container_id = objects.run(["true"])
        stream = docker_client.events(
            since=since, filters={"type": ["container"], "label": [f"{RUN_LABEL}={objects.run_id}"]}
        )
        event = first_match(
            stream, lambda e: e.get("Action", e.get("status")) == "start" and e.get("id") == container_id
        )
        assert isinstance(event, dict)
        assert event["Actor"]["Attributes"][RUN_LABEL] == objects.run_id

    def test_events_stream_ends_when_closed_from_another_thread(
        self, docker_client: DockerClient, objects: _Objects
    ) -> None:
        # Nothing matches this filter: the reader blocks until the stream is closed.
        stream = docker_client.events(filters={"label": [f"{RUN_LABEL}=never-{objects.run_id}"]})
        outcome: queue.Queue[str] = queue.Queue()

        def read() -> None:
            try:
                for _ in stream:
                    outcome.put("item")
                    return
                outcome.put("ended")
            except DockerError as exc:
                outcome.put(f"error {type(exc).__name__}: {exc}")
            except BaseException as exc:
                outcome.put(f"untyped error {type(exc).__name__}: {exc}")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.3)
        assert reader.is_alive(), "the events stream ended on its own"
        close_stream(stream)
        reader.join(10)
        assert not reader.is_alive(), "closing the events stream did not end the reading thread"
        assert outcome.get_nowait() == "ended"


class DockerServiceContract:
    """Swarm services, on an engine that is a swarm manager."""

    @pytest.fixture
    def services(self, swarm_docker_client: DockerClient, test_image: str) -> Iterator[_Objects]:
        made = _Objects(swarm_docker_client, test_image)
        yield made
        made.cleanup()

    def _finished_task(self, client: DockerClient, service_id: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            tasks = client.service_tasks(service_id)
            done = [t for t in tasks if _is_stopped(t)]
            return done[0] if done else None

        return wait_for(check, "the service's task to finish")

    def _logs(
        self, client: DockerClient, service_id: str, expected: Callable[[dict[str, bytes]], bool]
    ) -> dict[str, bytes]:
        # The swarm log broker may lag the task's end by a moment.
        def check() -> dict[str, bytes] | None:
            output = collect(client.service_logs(service_id))
            return output if expected(output) else None

        return wait_for(check, "the service's logs", timeout=10)

    def test_service_runs_once_to_completion(self, swarm_docker_client: DockerClient, services: _Objects) -> None:
        client = swarm_docker_client
        service_id = services.service(["sh", "-c", "echo out; echo err >&2"], labels={"com.example.kind": "svc"})
        spec = client.service_inspect(service_id)["Spec"]
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
        assert spec["Labels"]["com.example.kind"] == "svc"
        task = self._finished_task(client, service_id)
        assert task["Status"]["State"] == "complete", task["Status"]
        assert task["Status"]["ContainerStatus"]["ExitCode"] == 0
        output = self._logs(client, service_id, lambda o: b"out" in o["stdout"] and b"err" in o["stderr"])
        assert output["stdout"].endswith(b"out\n") and output["stderr"].endswith(b"err\n")
        client.service_remove(service_id)
        with pytest.raises(NotFound):
            client.service_inspect(service_id)

    def test_service_applies_user_environment_and_tty_and_never_restarts(
        self, swarm_docker_client: DockerClient, services: _Objects
    ) -> None:
        client = swarm_docker_client
        service_id = services.service(
            ["sh", "-c", 'id -u; echo "$GREETING"; echo err >&2; exit 3'],
            user="nobody",
            environment={"GREETING": "hello world"},
            tty=True,
        )
        task = self._finished_task(client, service_id)
        assert task["Status"]["State"] == "failed", task["Status"]
        assert task["Status"]["ContainerStatus"]["ExitCode"] == 3
        output = self._logs(client, service_id, lambda o: b"err" in o["stdout"])
        assert output["stderr"] == b""
        assert b"65534" in output["stdout"] and b"hello world" in output["stdout"]
        time.sleep(0.5)  # a restart would show up as a second task by now
        assert len(client.service_tasks(service_id)) == 1

    def test_missing_service_is_not_found(self, swarm_docker_client: DockerClient) -> None:
        for call in (swarm_docker_client.service_inspect, swarm_docker_client.service_remove):
            with pytest.raises(NotFound):
                call(MISSING_NAME)


__all__ = [
    "RUN_LABEL",
    "TEST_LABEL",
    "UNPULLABLE_IMAGE",
    "DockerClientContract",
    "DockerServiceContract",
    "collect",
    "exec_run",
    "first_match",
    "wait_for",
]
