# shellcheck shell=bash
# Real test servers for questline: install (cached), start on free loopback ports, stop by PID.
#
# Source this file from bash (scripts/test does), then:
#
#   ql_stop_on_exit       # or: trap ql_stop_servers EXIT
#   ql_start_tansu        # Kafka protocol: exports QUESTLINE_TEST_KAFKA=127.0.0.1:PORT
#   ql_start_cql          # CQL protocol:   exports QUESTLINE_TEST_CQL=127.0.0.1:PORT
#   ... run tests ...
#
# Functions (all return non-zero with a message on stderr when something fails):
#   ql_install_tansu          cargo install tansu 0.6.0 (feature dynostore) into $QL_CACHE/tansu,
#                             once per machine (~16 min on 2 cores). Exports QL_TANSU_BIN.
#   ql_install_python_client  venv at $QL_CACHE/venv with confluent-kafka from PyPI, once.
#                             Exports QL_PYTHON (the venv's python).
#   ql_start_tansu            installs both above if needed, starts `tansu broker` with in-memory
#                             storage from an empty folder, waits until a metadata request answers.
#                             Exports QUESTLINE_TEST_KAFKA, QL_TANSU_PID.
#   ql_start_cql              builds and starts tools/cql-test-server (kassandra), waits until the
#                             port accepts. Exports QUESTLINE_TEST_CQL, QL_CQL_PID.
#   ql_stop_servers           stops every server started by this shell (TERM, then KILL after 5 s)
#                             and removes the run folder (kept when QL_KEEP_LOGS=1).
#   ql_stop_on_exit           registers ql_stop_servers on EXIT, and makes INT/TERM exit the
#                             shell so the EXIT trap runs then too (bash skips it on a signal
#                             that has no trap). Use this instead of a bare trap when you can.
#   ql_free_port              prints a free loopback TCP port.
#
# Settings (environment):
#   QL_CACHE        cache root, default ~/.cache/questline (tansu build, python venv)
#   QL_CQL_PROFILE  cargo profile for cql-test-server: dev (default, shared with `cargo test`)
#                   or release
#   QL_KEEP_LOGS=1  keep $QL_RUN_DIR (server logs) after ql_stop_servers
#   QL_RUN_DIR      set by the first start: per-run folder with logs and pid files
#
# Servers are children of the sourcing shell and only ever stopped by the PIDs recorded here.

QL_CACHE="${QL_CACHE:-$HOME/.cache/questline}"
QL_TANSU_VERSION="0.6.0"
QL_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
QL_SERVER_PIDS=()

_ql_log() { printf 'servers: %s\n' "$*" >&2; }
_ql_fail() { printf 'servers: ERROR: %s\n' "$*" >&2; return 1; }

# Per-run folder for logs, pid files and tansu's empty working directory.
_ql_run_dir() {
  if [[ -z "${QL_RUN_DIR:-}" || ! -d "$QL_RUN_DIR" ]]; then
    QL_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/questline-servers.XXXXXX")" || return 1
    export QL_RUN_DIR
  fi
}

_ql_log_tail() {
  local log="$1"
  printf -- '----- last lines of %s -----\n' "$log" >&2
  tail -n 40 "$log" >&2 2>/dev/null || true
  printf -- '-----\n' >&2
}

ql_free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

ql_install_tansu() {
  local root="$QL_CACHE/tansu"
  export QL_TANSU_BIN="$root/bin/tansu"
  [[ -x "$QL_TANSU_BIN" ]] && return 0
  mkdir -p "$QL_CACHE" || return 1
  local log="$QL_CACHE/tansu-install.log"
  # One install per machine at a time; a second caller waits and then finds the binary.
  (
    flock 9
    [[ -x "$QL_TANSU_BIN" ]] && exit 0
    _ql_log "installing tansu $QL_TANSU_VERSION into $root (first run only, ~16 min on 2 cores); log: $log"
    local start=$SECONDS
    if ! cargo install tansu --version "$QL_TANSU_VERSION" --locked --features dynostore \
        --root "$root" >"$log" 2>&1; then
      _ql_log_tail "$log"
      _ql_fail "cargo install tansu failed"
      exit 1
    fi
    _ql_log "tansu installed in $((SECONDS - start)) s"
  ) 9>"$QL_CACHE/tansu-install.lock" || return 1
  [[ -x "$QL_TANSU_BIN" ]] || _ql_fail "tansu binary missing after install: $QL_TANSU_BIN"
}

ql_install_python_client() {
  local venv="$QL_CACHE/venv"
  export QL_PYTHON="$venv/bin/python"
  if [[ -x "$QL_PYTHON" ]] && "$QL_PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
    return 0
  fi
  mkdir -p "$QL_CACHE" || return 1
  local log="$QL_CACHE/venv-install.log"
  (
    flock 9
    if [[ -x "$QL_PYTHON" ]] && "$QL_PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
      exit 0
    fi
    _ql_log "creating $venv with confluent-kafka (first run only); log: $log"
    {
      python3 -m venv "$venv" &&
        "$venv/bin/python" -m pip install --quiet --upgrade pip &&
        "$venv/bin/python" -m pip install --quiet confluent-kafka
    } >"$log" 2>&1 || {
      _ql_log_tail "$log"
      _ql_fail "could not create the python venv with confluent-kafka"
      exit 1
    }
  ) 9>"$QL_CACHE/venv-install.lock" || return 1
  "$QL_PYTHON" -c 'import confluent_kafka' ||
    _ql_fail "confluent_kafka not importable from $QL_PYTHON"
}

# _ql_record NAME PID: remembers a server for ql_stop_servers.
_ql_record() {
  QL_SERVER_PIDS+=("$2")
  echo "$2" >"$QL_RUN_DIR/$1.pid"
}

# _ql_stop_pid PID: TERM, wait up to 5 s, then KILL; reaps the child.
_ql_stop_pid() {
  local pid="$1" i
  # Every step tolerates failure: callers may run under `set -e`.
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  return 0
}

ql_start_tansu() {
  ql_install_tansu || return 1
  ql_install_python_client || return 1
  _ql_run_dir || return 1

  local port addr workdir log pid
  port="$(ql_free_port)" || return 1
  addr="127.0.0.1:$port"
  workdir="$QL_RUN_DIR/tansu"            # empty: tansu reads a stray .env from its cwd
  log="$QL_RUN_DIR/tansu.log"
  mkdir -p "$workdir" || return 1

  # Unset the variables tansu would also read from the environment.
  (
    cd "$workdir" &&
      exec env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u LISTENER_URL \
        -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u CLUSTER_ID \
        "$QL_TANSU_BIN" broker \
        --listener-url "tcp://$addr" \
        --advertised-listener-url "tcp://$addr" \
        --storage-engine memory://tansu/ \
        --cluster-id test
  ) </dev/null >"$log" 2>&1 &
  pid=$!
  _ql_record tansu "$pid"
  export QL_TANSU_PID="$pid"

  # Ready when a metadata request answers (~200 ms normally); give up after ~20 s.
  if ! QL_WAIT_PID="$pid" "$QL_PYTHON" - "$addr" <<'PY'
import logging, os, sys, time
from confluent_kafka.admin import AdminClient

addr, pid = sys.argv[1], int(os.environ["QL_WAIT_PID"])
quiet = logging.getLogger("ql-wait")          # no "connection refused" noise while starting
quiet.addHandler(logging.NullHandler())
quiet.propagate = False
admin = AdminClient({"bootstrap.servers": addr, "logger": quiet})
deadline = time.monotonic() + 20
last = None
while time.monotonic() < deadline:
    try:
        with open(f"/proc/{pid}/stat") as f:     # gone, or a zombie not yet reaped
            alive = f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        alive = False
    if not alive:
        sys.exit(f"tansu (pid {pid}) exited during start-up")
    try:
        if admin.list_topics(timeout=1).brokers:
            sys.exit(0)
    except Exception as e:  # not up yet
        last = e
    time.sleep(0.1)
sys.exit(f"no metadata answer from {addr} within 20 s (last error: {last})")
PY
  then
    _ql_log_tail "$log"
    _ql_stop_pid "$pid"
    _ql_fail "tansu did not come up on $addr"
    return 1
  fi
  export QUESTLINE_TEST_KAFKA="$addr"
  _ql_log "tansu (pid $pid) ready on $addr; log: $log"
}

# Path of the built cql-test-server binary for the chosen profile.
_ql_cql_binary() {
  local profile="$1" target_dir dir
  target_dir="$(cd "$QL_REPO_ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" || return 1
  case "$profile" in
    dev | debug) dir=debug ;;
    *) dir="$profile" ;;
  esac
  echo "$target_dir/$dir/cql-test-server"
}

ql_start_cql() {
  _ql_run_dir || return 1
  local profile="${QL_CQL_PROFILE:-dev}" bin log pid addr="" i
  log="$QL_RUN_DIR/cql.log"
  _ql_log "building cql-test-server ($profile profile)"
  if ! (cd "$QL_REPO_ROOT" && cargo build --quiet -p cql-test-server --bin cql-test-server \
      --profile "$profile") >"$QL_RUN_DIR/cql-build.log" 2>&1; then
    _ql_log_tail "$QL_RUN_DIR/cql-build.log"
    _ql_fail "cargo build -p cql-test-server failed"
    return 1
  fi
  bin="$(_ql_cql_binary "$profile")" || return 1
  [[ -x "$bin" ]] || { _ql_fail "built binary not found at $bin"; return 1; }

  # Port 0: the server binds a free port itself and prints it, so there is no port race.
  "$bin" --listen 127.0.0.1:0 </dev/null >"$log" 2>&1 &
  pid=$!
  _ql_record cql "$pid"
  export QL_CQL_PID="$pid"

  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    addr="$(sed -n '1s/^listening on //p' "$log" 2>/dev/null)"
    if [[ -n "$addr" ]] && python3 -c 'import socket, sys
h, p = sys.argv[1].rsplit(":", 1)
socket.create_connection((h, int(p)), timeout=1).close()' "$addr" 2>/dev/null; then
      export QUESTLINE_TEST_CQL="$addr"
      _ql_log "cql-test-server (pid $pid) ready on $addr; log: $log"
      return 0
    fi
    sleep 0.1
  done
  _ql_log_tail "$log"
  _ql_stop_pid "$pid"
  _ql_fail "cql-test-server did not come up"
}

ql_stop_on_exit() {
  trap ql_stop_servers EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

ql_stop_servers() {
  local pid
  for pid in "${QL_SERVER_PIDS[@]}"; do
    _ql_stop_pid "$pid"
  done
  QL_SERVER_PIDS=()
  unset QUESTLINE_TEST_KAFKA QUESTLINE_TEST_CQL QL_TANSU_PID QL_CQL_PID
  if [[ -n "${QL_RUN_DIR:-}" && -d "$QL_RUN_DIR" ]]; then
    if [[ "${QL_KEEP_LOGS:-0}" == 1 ]]; then
      _ql_log "server logs kept in $QL_RUN_DIR"
    else
      rm -rf "$QL_RUN_DIR"
    fi
  fi
  unset QL_RUN_DIR
  return 0
}
