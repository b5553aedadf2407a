"""Fixtures for tests that need the project's own Docker engine (``scripts/docker-engine.sh``).

Loaded for the whole suite by ``tests/conftest.py``. The engine is found through
``OFELIA_TEST_DOCKER_HOST``, else the script's default socket. When it does not
answer, tests that use these fixtures are skipped with the command that starts
it; under CI (``CI=true``) they fail instead, since an engine that should be
there and is not is a red build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

#: Same default as scripts/docker-engine.sh.
DEFAULT_ENGINE_DIR = "/var/lib/ofelia-test-engine"
TEST_IMAGE = "ofelia-test/busybox:latest"
START_HINT = "start it with: scripts/docker-engine.sh start"


def engine_url() -> str:
    """The test engine's address (never the machine's own /var/run/docker.sock by default)."""
    explicit = os.environ.get("OFELIA_TEST_DOCKER_HOST", "").strip()
    if explicit:
        return explicit
    engine_dir = os.environ.get("OFELIA_TEST_ENGINE_DIR", "").strip() or DEFAULT_ENGINE_DIR
    return f"unix://{engine_dir}/docker.sock"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def engine_missing(reason: str) -> None:
    """Skip, or fail under CI."""
    message = f"the test Docker engine is not usable: {reason}; {START_HINT}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def admin_client(url: str, timeout: float = 10) -> Any:
    """A plain SDK client for set-up work the driver under test is not asked to do."""
    return docker.APIClient(base_url=url, version="auto", timeout=timeout)


@pytest.fixture(scope="session")
def docker_engine_url() -> str:
    url = engine_url()
    try:
        api = admin_client(url, timeout=5)
        try:
            api.ping()
        finally:
            api.close()
    except Exception as exc:
        engine_missing(f"{url} does not answer ({type(exc).__name__}: {exc})")
    return url


@pytest.fixture(scope="session", name="test_image")
def docker_test_image(docker_engine_url: str) -> str:
    api = admin_client(docker_engine_url)
    try:
        api.inspect_image(TEST_IMAGE)
    except docker.errors.NotFound:
        engine_missing(f"the image {TEST_IMAGE} is missing (the script builds it)")
    finally:
        api.close()
    return TEST_IMAGE


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _swarm_state(url: str) -> Iterator[dict[str, Any]]:
    """The shared record of who uses the test swarm, under a file lock: pytest-xdist
    workers each run the session fixture, and the last one out leaves."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"ofelia-test-swarm-{digest}.json"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            state = {}
        # Users that died without leaving (a killed run) no longer count.
        state["pids"] = [pid for pid in state.get("pids", []) if _pid_alive(pid)]
        state.setdefault("ours", False)
        yield state
        path.write_text(json.dumps(state))


@pytest.fixture(scope="session")
def docker_swarm(docker_engine_url: str) -> Iterator[None]:
    """A one-node swarm on the test engine (``--advertise-addr 127.0.0.1``), left
    afterwards if this suite created it."""
    api = admin_client(docker_engine_url, timeout=60)
    try:
        with _swarm_state(docker_engine_url) as state:
            node_state = api.info()["Swarm"]["LocalNodeState"]
            if node_state != "active":
                if node_state != "inactive":
                    engine_missing(f"its swarm is in state {node_state!r}")
                # A free port of our own: never collides with a swarm the machine already runs.
                api.init_swarm(advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{_free_port()}")
                state["ours"] = True
            state["pids"].append(os.getpid())
        yield
    finally:
        with _swarm_state(docker_engine_url) as state:
            state["pids"] = [pid for pid in state["pids"] if pid != os.getpid()]
            if not state["pids"] and state["ours"]:
                with contextlib.suppress(docker.errors.APIError):
                    api.leave_swarm(force=True)
                state["ours"] = False
        api.close()
