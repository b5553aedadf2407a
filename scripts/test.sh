#!/usr/bin/env bash
# Set everything up, start the real components the tests need (the project's own
# Docker engine), lint, type-check and run the whole test suite.
# Extra arguments go to pytest, for example: scripts/test.sh -m "not slow and not docker"
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

scripts/setup.sh
scripts/install-browser.sh
echo "test: starting the test Docker engine"
scripts/docker-engine.sh start
eval "$(scripts/docker-engine.sh env)"
export OFELIA_TEST_DOCKER_HOST="$DOCKER_HOST"

echo "test: ruff"
.venv/bin/ruff check .
echo "test: mypy"
.venv/bin/mypy
if [ $# -eq 0 ]; then
    # Restarts the engine, so it runs on its own, before the suite (which then
    # also proves the engine came back healthy).
    echo "test: pytest (engine restart and outage while a daemon runs)"
    OFELIA_TEST_ENGINE_RESTART=1 .venv/bin/pytest -q -p no:xdist -m engine_restart tests/docker
fi
echo "test: pytest"
.venv/bin/pytest "$@"
echo "test: finished in $(( $(date +%s) - started )) s"
