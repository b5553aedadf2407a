#!/usr/bin/env bash
# Set everything up and run ofelia on the example config: validate it, show the
# driver choice and the next fire times, then run the daemon in the foreground
# (Ctrl-C stops it gracefully). Local jobs need nothing else; Docker jobs run when
# DOCKER_HOST (or the default socket) points at an engine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OFELIA=.venv/bin/ofelia
CONFIG=${1:-examples/config.ini}
export OFELIA_STATE_DIR=${OFELIA_STATE_DIR:-$PWD/.state}
echo "== ofelia validate --config $CONFIG"
$OFELIA validate --config "$CONFIG"
echo "== ofelia plugins"
$OFELIA plugins
echo "== ofelia schedule --config $CONFIG --count 2"
$OFELIA schedule --config "$CONFIG" --count 2
echo "== ofelia daemon --config $CONFIG   (state in $OFELIA_STATE_DIR; Ctrl-C to stop;"
echo "   then: $OFELIA history --output)"
exec $OFELIA daemon --config "$CONFIG"
