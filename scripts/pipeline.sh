#!/usr/bin/env bash
# Quick start: builds flowctl, starts the development broker (installing it once if needed) and
# runs `pipeline_full` end to end on embedded defaults: state, registry and lake under ./.flowctl.
# Extra arguments go to `flowctl trigger`, e.g. scripts/pipeline.sh --param events=100000
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowctl/target}"
cargo build --release --quiet
scripts/broker.sh start
exec "$CARGO_TARGET_DIR/release/flowctl" trigger pipeline_full "$@"
