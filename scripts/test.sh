#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration test binary against real parts —
# SQLite files, the flowctl binary, a Kafka-API broker (nisshi, started here), the official Python
# confluent-kafka client, headless Chromium, promtool.
#
# On a fresh machine it first installs what the tests need, or stops at once with the command
# to run when it cannot:
#   - Debian packages: make gcc g++ perl pkg-config libssl-dev (the bundled librdkafka, with
#     TLS and SASL, and SQLite builds), openssl (the secured-broker test makes its certificates),
#     chromium + chromium-driver (the browser test), prometheus (its promtool checks /metrics),
#     python3 (+ python3-venv when the system Python is externally managed);
#     installed with apt-get as root, or with sudo when it needs no password;
#   - the Python packages of tests/python/requirements.txt, into the `python3` on PATH when pip
#     may write there (a pyenv or an active virtualenv), else into a virtualenv under
#     ${XDG_CACHE_HOME:-~/.cache}/flowctl/venv that is put first on PATH for the tests;
#   - cargo-nextest (cargo install --locked);
#   - the broker (scripts/broker.sh installs nisshi once, starts it, and it is stopped after).
#
# Usage: scripts/test.sh [extra `cargo nextest run` args]
# Environment: CARGO_TARGET_DIR (default ${XDG_CACHE_HOME:-~/.cache}/flowctl/target), NISSHI_BIN
# (a prebuilt broker), FLOWCTL_TEST_NO_INSTALL=1 (check only: stop with the commands to run).
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/flowctl"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"

say() { echo "test.sh: $*"; }
die() {
  echo "test.sh: $*" >&2
  exit 1
}
may_install() { [[ "${FLOWCTL_TEST_NO_INSTALL:-0}" != 1 ]]; }

# --- system packages ---------------------------------------------------------------------------
say "checking system packages…"
need_apt=()
for pair in make:make gcc:gcc g++:g++ perl:perl pkg-config:pkg-config \
  chromium:chromium chromedriver:chromium-driver promtool:prometheus python3:python3 \
  openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
# librdkafka's TLS and SASL/SCRAM link the system OpenSSL, found through pkg-config.
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev)

# The Python the tests run is the `python3` on PATH. A previous run's virtualenv comes first.
venv="$cache_root/venv"
[[ -x "$venv/bin/python3" ]] && export PATH="$venv/bin:$PATH"

# Is the Python on PATH one pip refuses to write to (PEP 668, Debian's /usr/bin/python3)?
externally_managed() {
  python3 - <<'EOF'
import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if (not in_venv and os.path.exists(marker)) else 1)
EOF
}

# Exit 0 when every requirement of tests/python/requirements.txt is installed (`==`, `>=`, `<`
# on release numbers, which is all the file uses); else print what is missing and exit 1.
requirements_met() {
  python3 - tests/python/requirements.txt <<'EOF'
import re, sys
from importlib import metadata

def release(v):
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:4])

missing = []
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    m = re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*(.*)", line)
    name, spec = m.group(1), m.group(2)
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        missing.append(f"{name} (not installed)")
        continue
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        op, want = re.match(r"(==|>=|<=|<|>|~=|!=)\s*(.+)", clause).groups()
        h, w = release(have), release(want)
        ok = {"==": h == w, ">=": h >= w, "<=": h <= w, "<": h < w, ">": h > w,
              "!=": h != w, "~=": h >= w}[op]
        if not ok:
            missing.append(f"{name} {have} (need {clause})")
if missing:
    print(", ".join(missing))
    sys.exit(1)
EOF
}

py_plan=ok # ok | pip (install into the python3 on PATH) | venv (make $venv, install there)
if ! command -v python3 >/dev/null 2>&1; then
  py_plan=venv # Debian's python3 will be externally managed
  need_apt+=(python3-venv)
elif ! py_missing="$(requirements_met)"; then
  if externally_managed; then
    py_plan=venv
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
  else
    py_plan=pip
    python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
  fi
fi

if [[ ${#need_apt[@]} -gt 0 ]]; then
  apt_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${need_apt[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    die "missing: ${need_apt[*]} (Debian package names), and there is no apt-get here; install them with your package manager, then rerun"
  elif ! may_install; then
    die "missing Debian packages; run: sudo sh -c '$apt_cmd'"
  elif [[ "$(id -u)" -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    die "missing Debian packages ${need_apt[*]}; run: sudo sh -c '$apt_cmd'"
  fi
  say "installing Debian packages: ${need_apt[*]} (a few minutes; chromium is the big one)…"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${need_apt[@]}"
  for pair in make:make gcc:gcc g++:g++ perl:perl pkg-config:pkg-config \
    chromium:chromium chromedriver:chromium-driver promtool:prometheus python3:python3; do
    command -v "${pair%%:*}" >/dev/null 2>&1 ||
      die "\`${pair%%:*}\` is still not on PATH after installing Debian package ${pair#*:}"
  done
  pkg-config --exists openssl || die "pkg-config still finds no openssl after installing libssl-dev"
fi

# --- Python packages ---------------------------------------------------------------------------
say "checking Python packages (tests/python/requirements.txt)…"
pip_install=(-m pip install --disable-pip-version-check -r tests/python/requirements.txt)
case "$py_plan" in
  ok) ;;
  pip)
    may_install || die "missing Python packages ($py_missing); run: python3 ${pip_install[*]}"
    say "installing Python packages into $(command -v python3) (missing: $py_missing)…"
    python3 "${pip_install[@]}"
    ;;
  venv)
    if [[ ! -x "$venv/bin/python3" ]]; then
      may_install || die "missing Python packages; run: python3 -m venv $venv && $venv/bin/python3 ${pip_install[*]}"
      say "creating a Python virtualenv in $venv (the system Python is externally managed)…"
      python3 -m venv "$venv"
      export PATH="$venv/bin:$PATH"
    fi
    may_install || die "missing Python packages; run: $venv/bin/python3 ${pip_install[*]}"
    say "installing Python packages into $venv…"
    "$venv/bin/python3" "${pip_install[@]}"
    ;;
esac
py_missing="$(requirements_met)" || die "Python packages still missing after the install: $py_missing"

# --- cargo-nextest -----------------------------------------------------------------------------
say "checking cargo-nextest…"
if ! cargo nextest --version >/dev/null 2>&1; then
  may_install || die "cargo-nextest is missing; run: cargo install cargo-nextest --locked"
  say "installing cargo-nextest (cargo install, a few minutes, once)…"
  cargo install cargo-nextest --locked
fi

# --- the broker --------------------------------------------------------------------------------
say "starting the broker (scripts/broker.sh; the first time it installs nisshi, see its estimate)…"
scripts/broker.sh start
trap 'scripts/broker.sh stop >/dev/null 2>&1 || true' EXIT

# --- build and run -----------------------------------------------------------------------------
say "building flowctl and its tests (debug; CARGO_TARGET_DIR=$CARGO_TARGET_DIR)…"
cargo nextest run --no-run "$@"
# The count, when these args are ones `nextest list` takes too (filters, -p, --lib, …).
count="$(cargo nextest list -T oneline "$@" 2>/dev/null | grep -c . || true)"
if [[ "$count" =~ ^[0-9]+$ && "$count" -gt 0 ]]; then
  say "running $count tests…"
else
  say "running the tests…"
fi
cargo nextest run --no-fail-fast "$@"
