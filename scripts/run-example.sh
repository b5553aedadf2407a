#!/usr/bin/env bash
# Set everything up and run ofelia on the example config: validate it, show the
# driver choice, and preview each job's next fire times.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OFELIA=.venv/bin/ofelia
CONFIG=${1:-examples/config.ini}
echo "== ofelia validate --config $CONFIG"
$OFELIA validate --config "$CONFIG"
echo "== ofelia plugins"
$OFELIA plugins
echo "== ofelia schedule --config $CONFIG --count 3"
$OFELIA schedule --config "$CONFIG" --count 3
