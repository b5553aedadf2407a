"""The pooled driver's circuit breaker under a real engine outage, through the daemon.

The engine is stopped while job-run jobs fire every second: runs fail, the breaker
opens after its threshold, later runs fail fast with the clear error, the daemon stays
up. The engine is started again: the breaker half-opens, closes, runs succeed, and
the process holds no more threads or sockets than before. Stops the shared engine:
see engine_control.py for when it runs.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_control import engine
from labels_support import LiveDaemon
from polling import wait_for

from ofelia_core.runs import RunState

pytest.importorskip("ofelia_docker_pooled", reason="plugins/docker-pooled is not installed")

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.engine_restart]

JOBS = ("a", "b", "c", "d")


def threads() -> int:
    """Threads other than the dispatcher's run workers, which grow with a backlog of runs
    and age out after their idle timeout: a leak would be anything else."""
    return sum(1 for thread in threading.enumerate() if not thread.name.startswith("ofelia-run-"))


def sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def unpooled_sockets(daemon: LiveDaemon) -> int:
    """Open sockets the driver's pools do not account for (idle or in use): a leaked
    connection would show here; the pools may keep more idle ones after a backlog."""
    pools = breaker(daemon)["pools"]
    return sockets() - sum(pool["idle"] + pool["in_use"] for pool in pools.values())


def breaker(daemon: LiveDaemon) -> dict[str, Any]:
    assert daemon.daemon.runtime is not None
    stats: dict[str, Any] = daemon.daemon.runtime.drivers.docker_client.stats()["driver"]
    return stats


def successes(daemon: LiveDaemon) -> int:
    return sum(1 for job in JOBS for run in daemon.runs(job) if run.state == RunState.SUCCESS)


def test_the_breaker_opens_fails_fast_and_closes_across_an_engine_outage(
    tmp_path: Path, own_engine: str, test_image: str
) -> None:
    jobs = "".join(
        f'[job-run "{name}"]\nschedule = @every 1s\nimage = {test_image}\npull = false\nnetwork = none\n'
        f"command = echo {name}\nhistory-limit = 0\n"
        for name in JOBS
    )
    settings = "breaker-failure-threshold = 10\nbreaker-open-timeout = 2s\n[drivers]\ndocker-client = pooled\n"
    daemon = LiveDaemon(tmp_path, own_engine, secrets.token_hex(4), poll="0", files=settings + jobs)
    try:
        assert breaker(daemon)["driver"] == "pooled"
        assert wait_for(lambda: successes(daemon) >= 8), daemon.text()
        threads_before = max(threads() for _ in range(3))
        sockets_before = max(unpooled_sockets(daemon) for _ in range(3))

        try:
            engine("stop")
            assert wait_for(lambda: breaker(daemon)["breaker"]["times_opened"] >= 1, timeout=60), daemon.text()
            fast: list[Any] = []

            def failed_fast() -> bool:
                fast[:] = [r for job in JOBS for r in daemon.runs(job)
                           if r.state == RunState.FAILED and "circuit open since" in (r.error or "")]
                return len(fast) >= 4

            assert wait_for(failed_fast, timeout=30), daemon.text()
            assert "Docker engine unavailable, circuit open since" in fast[0].error
            assert daemon.thread.is_alive()
            assert "Docker circuit breaker closed -> open" in daemon.text()
        finally:
            engine("start")  # whatever happened: the other tests need the engine

        succeeded = successes(daemon)
        assert wait_for(lambda: successes(daemon) >= succeeded + 8, timeout=90), daemon.text()
        stats = breaker(daemon)
        assert stats["breaker"]["state"] == "closed"
        moves = [(t["before"], t["after"]) for t in stats["breaker"]["transitions"]]
        assert ("open", "half-open") in moves and ("half-open", "closed") in moves, moves
        # No leak: steady state again, with no more threads or sockets than before the outage.
        assert wait_for(lambda: threads() <= threads_before, timeout=30), \
            ([t.name for t in threading.enumerate()], threads_before)
        assert wait_for(lambda: unpooled_sockets(daemon) <= sockets_before + 2, timeout=30), \
            (unpooled_sockets(daemon), sockets_before, breaker(daemon)["pools"])
    finally:
        code = daemon.stop()
    assert code == 0
