#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration test binary against real parts —
# SQLite files, the flowctl binary, a Kafka-API broker (nisshi, started here), the official Python
# confluent-kafka client, headless Chromium, promtool.
# Usage: scripts/test.sh [extra nextest/cargo-test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowctl/target}"

# The broker the tests produce to; stopped again however the tests end.
scripts/broker.sh start
trap 'scripts/broker.sh stop >/dev/null 2>&1 || true' EXIT

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
