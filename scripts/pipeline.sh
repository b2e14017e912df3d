#!/usr/bin/env bash
# Quick start: builds flowctl and runs `pipeline_full` end to end on embedded defaults
# (state, lake and registry under ./.flowctl; nothing to install by hand).
# Extra arguments go to `flowctl trigger`, e.g. scripts/pipeline.sh --param from=2026-01-01
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowctl/target}"
cargo build --release --quiet
exec "$CARGO_TARGET_DIR/release/flowctl" trigger pipeline_full "$@"
