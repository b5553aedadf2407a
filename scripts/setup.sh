#!/usr/bin/env bash
# Install everything for a user and a developer, in editable mode, into .venv:
# the core, the hookspecs, every plugin distribution under plugins/, and the test tools.
# Idempotent: a second run only re-checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${OFELIA_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
echo "setup: upgrading pip, setuptools, wheel"
"${PIP[@]}" install --upgrade pip setuptools wheel

targets=(-e ./hookspecs"[contract]" -e ".[test,bench]")
for plugin in plugins/*/pyproject.toml; do
    [ -e "$plugin" ] || continue
    targets+=(-e "./$(dirname "$plugin")")
done
echo "setup: installing ${targets[*]}"
# The editable-install advice setuptools prints for every package is noise here.
PYTHONWARNINGS=ignore "${PIP[@]}" install "${targets[@]}"
echo "setup: done; run $VENV/bin/ofelia --help"
