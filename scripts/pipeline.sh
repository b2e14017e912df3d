#!/usr/bin/env bash
# Quick start: builds flowctl, starts the development broker (installing it once if needed) and
# runs `pipeline_full` end to end on embedded defaults: state, registry and lake under ./.flowctl.
# Extra arguments go to `flowctl trigger`, e.g. scripts/pipeline.sh --param events=100000
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowctl/target}"
cargo build --release --quiet
scripts/broker.sh start
bin="$CARGO_TARGET_DIR/release/flowctl"
status=0
"$bin" trigger pipeline_full "$@" || status=$?
if [ "$status" -eq 0 ]; then
  echo
  echo "gold_daily_revenue (latest version, first rows):"
  "$bin" tables show gold_daily_revenue --limit 10
  echo
  echo "gold_payment_success_rate:"
  "$bin" tables show gold_payment_success_rate --limit 8
  echo
  echo "where gold comes from: $bin lineage gold_daily_revenue; quality results: $bin checks RUN_ID"
fi
exit "$status"
