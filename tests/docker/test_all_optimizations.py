"""All four optimizations in one daemon, then each rolled back alone.

With every flag on, one daemon runs a job-exec through the pooled Docker client, its
output through the tiered buffer pool, serves the API behind a login whose token the
heap manager issued, and exposes the metrics of all of them. Then, for each flag in
turn, a daemon started with just that flag off reports the baseline for that concern
and the optimized driver for the other three.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from conftest import JOB_PREFIX, Containers
from polling import wait_for

from ofelia_core.daemon import Daemon
from ofelia_core.drivers.selection import installed_drivers
from ofelia_core.drivers.table import CONCERNS

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
ALL_ON = {concern.flag: "true" for concern in CONCERNS}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Running:
    """A daemon in a thread with the web API on a loopback port, and a logged-in client."""

    def __init__(self, tmp_path: Path, engine_url: str, container: str, env: dict[str, str]) -> None:
        self.port = free_port()
        password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        config = tmp_path / "ofelia.ini"
        config.write_text(
            "[global]\nconfig-watch-interval = 0\nweb-auth-enabled = true\nweb-username = admin\n"
            f"web-password-hash = {password_hash}\n\n"
            f"[docker-client]\nbase-url = {engine_url}\n\n"
            f'[job-exec "{JOB_PREFIX}all-on"]\nschedule = @every 1s\ncontainer = {container}\n'
            "command = echo optimized\nhistory-limit = 0\n"
        )
        self.daemon = Daemon(str(config), env={"OFELIA_STATE_DIR": str(tmp_path / "state"), **env},
                             enable_web=True, web_address=f"127.0.0.1:{self.port}")
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.daemon.started.wait(60), "the daemon did not start"
        login = self.request("POST", "/api/login", {"username": "admin", "password": PASSWORD}, auth=False)
        self.token = login["token"]

    def _run(self) -> None:
        self.code = self.daemon.run(install_signals=False)

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True, raw: bool = False) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            data = response.read().decode()
        finally:
            conn.close()
        assert response.status == 200, (method, path, response.status, data[:500])
        return data if raw else json.loads(data)

    def drivers(self) -> dict[str, str]:
        report = self.request("GET", "/api/plugins")
        return {row["concern"]: row["driver"] for row in report["drivers"]}

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the daemon did not stop"
        assert self.code == 0


@pytest.fixture
def target(containers: Containers) -> Iterator[str]:
    yield containers.create(["sleep", "600"])


@pytest.fixture(autouse=True)
def every_optimization_installed() -> None:
    missing = [c.optimized_distribution for c in CONCERNS if c.optimized not in installed_drivers(c)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/setup.sh installs every plugins/*)")


def test_all_four_optimizations_in_one_daemon(tmp_path: Path, docker_engine_url: str, target: str) -> None:
    running = Running(tmp_path, docker_engine_url, target, ALL_ON)
    try:
        assert running.drivers() == {c.key: c.optimized for c in CONCERNS}
        job = f"{JOB_PREFIX}all-on"

        def ran() -> bool:
            runs = running.request("GET", f"/api/jobs/{job}/history?limit=5")["runs"]
            return any(run["state"] == "success" and run["stdout"] == "optimized\n" for run in runs)

        assert wait_for(ran, timeout=30), "the job-exec never succeeded"
        text = running.request("GET", "/metrics", auth=False, raw=True)
        for needle in (
            'ofelia_operation_duration_seconds_count{concern="docker-client",operation="exec_create"}',
            f'ofelia_job_runs_total{{job="{job}",state="success"}}',
            'ofelia_docker_client_breaker_state{state="closed"} 1.0',
            "ofelia_buffer_pool_",
            "ofelia_token_manager_active",
            "ofelia_process_resident_memory_bytes",
        ):
            assert needle in text, f"{needle} not in /metrics"
        stats = {row["concern"]: row["stats"] for row in running.request("GET", "/api/plugins")["drivers"]}
        assert stats["token-manager"]["driver"]["active"] >= 1
    finally:
        running.stop()


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.key)
def test_one_flag_off_rolls_back_only_its_concern(
    tmp_path: Path, docker_engine_url: str, target: str, concern: Any
) -> None:
    running = Running(tmp_path, docker_engine_url, target, {**ALL_ON, concern.flag: "false"})
    try:
        expected = {c.key: c.baseline if c is concern else c.optimized for c in CONCERNS}
        assert running.drivers() == expected
    finally:
        running.stop()
