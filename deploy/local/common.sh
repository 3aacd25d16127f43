# Shared paths and helpers for the local (no Docker) Kafka, PostgreSQL and services.
# Sourced by the other scripts here; nothing in it runs on its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VAR="${GIAO_VAR_DIR:-$ROOT/var}"
CACHE="${GIAO_CACHE_DIR:-$HOME/.cache/giao}"
RUN="$VAR/run"
LOGS="$VAR/log"
mkdir -p "$RUN" "$LOGS"

# The password of one of Kafka's SASL/SCRAM users here (broker, admin, orders, dispatch,
# tracking): GIAO_KAFKA_<USER>_PASSWORD, else its public development one, which the services
# refuse unless GIAO_ENV is development or test (shared/settings.py).
kafka_password() { local v="GIAO_KAFKA_${1^^}_PASSWORD"; echo "${!v:-dev-kafka-$1}"; }

say() { printf '[giao] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# pid_alive FILE: true when FILE names a PID that is still running.
pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds
# or the deadline passes.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    (( SECONDS < deadline )) || return 1
    sleep 0.2
  done
}

# stop_pid NAME PIDFILE GRACE: SIGTERM the recorded PID, wait GRACE seconds, then SIGKILL.
# Only ever touches the PID this project recorded.
stop_pid() {
  local name=$1 file=$2 grace=$3
  if ! pid_alive "$file"; then rm -f "$file"; say "$name: not running"; return 0; fi
  local pid; pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "$grace" "$name to stop" bash -c "! kill -0 $pid 2>/dev/null"; then
    say "$name: still running after ${grace}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 10 "$name to die" bash -c "! kill -0 $pid 2>/dev/null" || true
  fi
  rm -f "$file"
  say "$name: stopped (pid $pid)"
}
