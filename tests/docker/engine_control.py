"""Stopping and starting the suite's own engine, for the tests that must (engine restart,
engine outage). They change the engine every other test uses, so they run only when asked
(``OFELIA_TEST_ENGINE_RESTART=1``), serially, and only against scripts/docker-engine.sh's
engine; scripts/test.sh runs them on their own before the rest of the suite:

    OFELIA_TEST_ENGINE_RESTART=1 pytest -p no:xdist -m engine_restart tests/docker
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from docker_engine_fixtures import DEFAULT_ENGINE_DIR

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "docker-engine.sh"
#: Another pytest session may be using the engine: only an explicit request restarts it.
OPT_IN = "OFELIA_TEST_ENGINE_RESTART"


def engine(command: str) -> None:
    result = subprocess.run([str(SCRIPT), command], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"docker-engine.sh {command}: {result.stderr}"


@pytest.fixture
def own_engine(docker_engine_url: str) -> str:
    """The engine's address, when this test may stop and start it; else the test is skipped."""
    if os.environ.get(OPT_IN, "").strip().lower() not in {"1", "true", "yes"}:
        pytest.skip(f"restarts the shared test engine: set {OPT_IN}=1 and run it alone, after the other tests")
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        pytest.skip("restarts the shared test engine: run it serially (-p no:xdist), after the other tests")
    engine_dir = os.environ.get("OFELIA_TEST_ENGINE_DIR", "").strip() or DEFAULT_ENGINE_DIR
    if docker_engine_url != f"unix://{engine_dir}/docker.sock":
        pytest.skip(f"{docker_engine_url} is not the engine scripts/docker-engine.sh manages")
    return docker_engine_url
