#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the integration test binary (real SQLite files, the real
# flowctl binary, and — as the data issues land — the real broker), and doc tests.
# Usage: scripts/test.sh [extra nextest/cargo-test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowctl/target}"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
