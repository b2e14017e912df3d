#!/usr/bin/env bash
# Starts, stops and reports on the development Kafka broker: nisshi 0.8.1 (Kafka API, Rust).
#
#   scripts/broker.sh start    install nisshi if missing, start it, wait until it accepts connections
#   scripts/broker.sh stop     stop the broker this script started
#   scripts/broker.sh status   exit 0 only when the broker is running and accepting connections
#   scripts/broker.sh restart  stop, then start (with BROKER_STORAGE=sqlite the data survives)
#
# Environment:
#   FLOWCTL_KAFKA_BOOTSTRAP  host:port flowctl connects to (default 127.0.0.1:19092); the port is used here
#   FLOWCTL_HOME             state dir (default ./.flowctl); pid file and log go to $FLOWCTL_HOME/broker/
#   NISSHI_BIN               a prebuilt nisshi binary to use instead of installing one
#   BROKER_STORAGE           memory (default, fast) or sqlite (data survives a broker restart)
#   BROKER_TLS_CERT, BROKER_TLS_KEY
#                            PEM certificate chain and key: the listener then speaks TLS only
#                            (clients: security.protocol=SSL or SASL_SSL, ssl.ca.location=CA)
#   BROKER_SCRAM_USERS       name:password[,name:password…]: require SASL/SCRAM logins by these
#                            users (the secured mode; implies BROKER_STORAGE=sqlite, where nisshi
#                            keeps users). Each start first runs the broker in plaintext on the
#                            port for a moment to create them (nisshi's `user create` speaks
#                            plaintext only), then restarts it secured.
#   BROKER_SCRAM_MECHANISM   scram512 (default, SCRAM-SHA-512) or scram256
#   XDG_CACHE_HOME           install cache root (default ~/.cache); nisshi goes to flowctl/nisshi/
#
# `start` is idempotent and safe to call from several processes at once (tests do): calls are
# serialised with flock, and a broker already listening on the port is reused.
set -euo pipefail

NISSHI_VERSION=0.8.1
MIN_RUSTC_MINOR=96
# Default features on purpose: `--no-default-features --features dynostore,libsql` (memory:// and
# sqlite:// only) was measured to build the same 653 units as the default set (dropping `postgres`
# removes two small crates), so trimming buys nothing.

bootstrap="${FLOWCTL_KAFKA_BOOTSTRAP:-127.0.0.1:19092}"
first="${bootstrap%%,*}"
port="${first##*:}"
host=127.0.0.1
case "$port" in '' | *[!0-9]*)
  echo "broker.sh: cannot read a port from FLOWCTL_KAFKA_BOOTSTRAP=$bootstrap (expected host:port)" >&2
  exit 2
  ;;
esac

home="${FLOWCTL_HOME:-.flowctl}"
mkdir -p "$home/broker"
state="$(cd "$home/broker" && pwd)"
pidfile="$state/nisshi.pid"
logfile="$state/nisshi.log"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/flowctl/nisshi"

listening() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

our_pid() {
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

new_enough() { # rustc version string, e.g. 1.97.0-nightly
  local major minor
  major="$(echo "$1" | cut -d. -f1)"
  minor="$(echo "$1" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] && { [[ "$major" -gt 1 ]] || [[ "$minor" -ge $MIN_RUSTC_MINOR ]]; }
}

# Prints the cargo invocation to install with: `cargo +TC` for the first installed rustup
# toolchain new enough, or plain `cargo` when there is no rustup and the default rustc is.
pick_cargo() {
  local tc ver
  if command -v rustup >/dev/null 2>&1; then
    while read -r tc _; do
      [[ -n "$tc" ]] || continue
      ver="$(rustc +"$tc" --version 2>/dev/null | awk '{print $2}')" || continue
      if new_enough "$ver"; then
        echo "cargo +$tc"
        return 0
      fi
    done < <(rustup toolchain list 2>/dev/null)
    return 1
  fi
  ver="$(rustc --version 2>/dev/null | awk '{print $2}')" || return 1
  new_enough "$ver" && echo "cargo"
}

nisshi_bin() {
  if [[ -n "${NISSHI_BIN:-}" ]]; then
    [[ -x "$NISSHI_BIN" ]] || { echo "broker.sh: NISSHI_BIN=$NISSHI_BIN is not an executable" >&2; return 1; }
    echo "$NISSHI_BIN"
    return 0
  fi
  if [[ -x "$cache/bin/nisshi" ]]; then
    echo "$cache/bin/nisshi"
    return 0
  fi
  local cargo_cmd
  cargo_cmd="$(pick_cargo)" || {
    echo "broker.sh: nisshi $NISSHI_VERSION needs rustc >= 1.$MIN_RUSTC_MINOR; installed toolchains:" >&2
    rustup toolchain list >&2 || rustc --version >&2 || true
    echo "install one (e.g. rustup toolchain install nightly) or set NISSHI_BIN" >&2
    return 1
  }
  echo "broker.sh: installing the broker, nisshi $NISSHI_VERSION, with \`$cargo_cmd install\` into $cache: about 11 minutes on 2 cores, once; cargo's progress follows" >&2
  mkdir -p "$cache"
  # shellcheck disable=SC2086 # "cargo +TC" is two words on purpose
  $cargo_cmd install nisshi --version "$NISSHI_VERSION" --locked --root "$cache" >&2
  echo "$cache/bin/nisshi"
}

# Starts nisshi in the background on $host:$port with storage $1 and the extra flags after it;
# waits until it accepts connections.
launch() {
  local bin="$1" storage="$2" work="$state/work"
  shift 2
  # nisshi reads a .env in its working directory: start it from a directory of its own that
  # holds nothing but its sqlite file (kept so that data survives a restart).
  mkdir -p "$work"
  find "$work" -mindepth 1 -maxdepth 1 ! -name 'nisshi.db*' -exec rm -rf {} +
  (
    cd "$work"
    env -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u SCHEMA_REGISTRY -u CLUSTER_ID \
      nohup "$bin" broker \
      --listener-url "tcp://$host:$port" \
      --advertised-listener-url "tcp://$host:$port" \
      --storage-engine "$storage" \
      --group-initial-rebalance-delay 0s \
      "$@" \
      >>"$logfile" 2>&1 </dev/null 9>&- &
    echo $! >"$pidfile"
  )
  local i
  for i in $(seq 1 300); do
    if listening; then
      return 0
    fi
    if ! our_pid >/dev/null; then
      echo "broker.sh: nisshi exited during start; last lines of $logfile:" >&2
      tail -n 20 "$logfile" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  echo "broker.sh: nisshi did not accept connections on $host:$port within 60 s; see $logfile" >&2
  return 1
}

start() {
  exec 9>"$state/start.lock"
  flock 9
  if pid="$(our_pid)" && listening; then
    echo "broker running (pid $pid) on $host:$port"
    return 0
  fi
  if listening; then
    echo "broker.sh: something already listens on $host:$port (not started by this FLOWCTL_HOME); using it"
    return 0
  fi
  local bin storage
  bin="$(nisshi_bin)"
  local users="${BROKER_SCRAM_USERS:-}" kind="${BROKER_STORAGE:-memory}"
  [[ -n "$users" ]] && kind=sqlite
  case "$kind" in
    memory) storage="memory://nisshi/" ;;
    # nisshi resolves the sqlite path against its working directory (an absolute path loses its
    # leading slash), so the file lives there: $FLOWCTL_HOME/broker/work/nisshi.db.
    sqlite) storage="sqlite://nisshi.db" ;;
    *) echo "broker.sh: BROKER_STORAGE must be memory or sqlite, found ${BROKER_STORAGE}" >&2; return 2 ;;
  esac
  local secured=() mode=plaintext
  if [[ -n "${BROKER_TLS_CERT:-}${BROKER_TLS_KEY:-}" ]]; then
    [[ -r "${BROKER_TLS_CERT:-}" && -r "${BROKER_TLS_KEY:-}" ]] || {
      echo "broker.sh: BROKER_TLS_CERT and BROKER_TLS_KEY must both name readable PEM files" >&2
      return 2
    }
    secured+=(--cert "$BROKER_TLS_CERT" --key "$BROKER_TLS_KEY")
    mode=TLS
  fi
  if [[ -n "$users" ]]; then
    local mechanism="${BROKER_SCRAM_MECHANISM:-scram512}" pair
    launch "$bin" "$storage" || return 1
    IFS=, read -r -a pairs <<<"$users"
    for pair in "${pairs[@]}"; do
      [[ "$pair" == *:* && -n "${pair%%:*}" ]] || {
        echo "broker.sh: BROKER_SCRAM_USERS takes name:password pairs separated by commas" >&2
        stop >/dev/null
        return 2
      }
      # The password is never echoed.
      if ! "$bin" user create "${pair%%:*}" "${pair#*:}" --mechanism "$mechanism" \
        --broker "tcp://$host:$port" >>"$logfile" 2>&1; then
        echo "broker.sh: creating SCRAM user ${pair%%:*} failed; see $logfile" >&2
        stop >/dev/null
        return 1
      fi
    done
    stop >/dev/null
    secured+=(--authentication)
    mode="$mode + SASL/SCRAM (${#pairs[@]} users, $mechanism)"
  fi
  launch "$bin" "$storage" "${secured[@]}" || return 1
  echo "broker started (pid $(cat "$pidfile")) on $host:$port, $mode, storage $storage, log $logfile"
}

stop() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$pidfile"
    echo "broker not running"
    return 0
  fi
  kill "$pid"
  local i
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "broker stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(our_pid)" && listening; then
    echo "broker running (pid $pid) on $host:$port"
    return 0
  fi
  if listening; then
    echo "a broker listens on $host:$port, not started by this FLOWCTL_HOME"
    return 0
  fi
  echo "broker not running on $host:$port"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart)
    stop
    start
    ;;
  *)
    echo "usage: $0 start|stop|status|restart" >&2
    exit 2
    ;;
esac
