#!/usr/bin/env bash
# Quick start: builds flowctl, starts the development broker (installing it once if needed) and
# runs `pipeline_full` end to end on embedded defaults: state, registry and lake under ./.flowctl.
# Extra arguments go to `flowctl trigger`, e.g. scripts/pipeline.sh --param events=100000
#
# The first run compiles everything: flowctl's release build (about 17 min on
# 2 cores) and the broker's one-time `cargo install` (about 11 min, cached under
# ~/.cache/flowctl/nisshi). Later runs take seconds to start.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowctl/target}"
bin="$CARGO_TARGET_DIR/release/flowctl"

say() { echo "pipeline.sh: $*"; }

if [[ -x "$bin" ]]; then
  say "building flowctl (release, in $CARGO_TARGET_DIR; seconds when nothing changed)…"
else
  say "building flowctl for the first time (release, in $CARGO_TARGET_DIR): about 17 min on 2 cores, cargo's progress below…"
fi
cargo build --release

say "starting the Kafka broker (scripts/broker.sh)…"
scripts/broker.sh start

say "running pipeline_full: registers the Avro contracts, produces events to Kafka, ingests bronze, builds silver and gold behind quality gates…"
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
