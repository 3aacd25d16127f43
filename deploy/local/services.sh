#!/usr/bin/env bash
# The three Giao services as background processes of the project's venv.
# Usage: deploy/local/services.sh start|stop|status [process...]
#
# A service may run as several instances sharing its port (GIAO_<SERVICE>_INSTANCES, 1 by
# default): each binds the port with SO_REUSEPORT, the kernel spreads new connections among
# them, and each also serves the API alone on port + 10 x its number (dispatch: 8012 and 8022).
# Every process has an ops port of its own, 100 above the port that reaches it alone (8101,
# 8102, 8103; instances: 8112, 8122; the split worker: 8104): /metrics answers there only, with
# /healthz and /readyz, which this script probes there. The processes are then `dispatch`, `dispatch-2`, ... (the
# consumers of a service share one group, so at most GIAO_KAFKA_TOPIC_PARTITIONS of them get
# work). On this 2-core machine one instance each is the default: with two of dispatch its CPU per
# order was 13% higher at the machine's usual speed (all processes: 2%), and the tail better
# only while the machine was slow (p99 placed -> offered,
# one / two instances, six interleaved pairs of 60 s runs at 152 orders/s: 7304 / 1936,
# 7305 / 4252, 3253 / 2582 ms with the machine slow, 576 / 2021, 679 / 1527, 1186 / 1229 ms
# at its usual speed; two of orders as well were no better).
#
# With GIAO_DISPATCH_SPLIT=true dispatch runs instead as two processes of another kind:
# `dispatch` serves the HTTP API only and `dispatch-worker` (:8004) consumes the orders' events
# and runs the matcher and the expirer (GIAO_DISPATCH_BACKGROUND). Not the default: see the
# docs/performance.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PY="$ROOT/.venv/bin/python"
declare -A SERVICE_PORT=([orders]="${GIAO_ORDERS_PORT:-8001}" [dispatch]="${GIAO_DISPATCH_PORT:-8002}"
                         [tracking]="${GIAO_TRACKING_PORT:-8003}")
declare -A INSTANCES=([orders]="${GIAO_ORDERS_INSTANCES:-1}" [dispatch]="${GIAO_DISPATCH_INSTANCES:-1}"
                      [tracking]="${GIAO_TRACKING_INSTANCES:-1}")
declare -A SERVICE=()   # process -> the service it runs
declare -A PORT=()      # process -> the port its service answers on (shared by its instances)
declare -A OWN_PORT=()  # process -> the port it alone listens on, when it has instances beside it
declare -A OPS_PORT=()  # process -> its ops port (/metrics, /healthz, /readyz)
declare -A ROLE=()      # process -> what it is beyond its service's defaults (env assignments)
ALL=()
add_process() {  # NAME SERVICE PORT [OWN_PORT] [ENV...]
  ALL+=("$1"); SERVICE[$1]=$2; PORT[$1]=$3; OWN_PORT[$1]=${4:-}
  OPS_PORT[$1]=$((${4:-$3} + 100)); ROLE[$1]="GIAO_OPS_PORT=${OPS_PORT[$1]} ${*:5}"
}
for s in orders dispatch tracking; do
  if [[ $s == dispatch && "${GIAO_DISPATCH_SPLIT:-false}" == true ]]; then
    worker_port="${GIAO_DISPATCH_WORKER_PORT:-8004}"
    add_process dispatch-worker dispatch "$worker_port" "" GIAO_DISPATCH_BACKGROUND=true \
      "GIAO_DISPATCH_PORT=$worker_port" "GIAO_DISPATCH_MATCH_POLL_S=${GIAO_DISPATCH_MATCH_POLL_S:-0.05}"
    add_process dispatch dispatch "${SERVICE_PORT[dispatch]}" "" GIAO_DISPATCH_BACKGROUND=false
    continue
  fi
  n=${INSTANCES[$s]}
  [[ $n =~ ^[1-9]$ ]] || die "GIAO_${s^^}_INSTANCES must be 1 to 9 (it is '$n')"
  for ((i = 1; i <= n; i++)); do
    name=$s; ((i > 1)) && name=$s-$i
    if ((n > 1)); then
      own=$((SERVICE_PORT[$s] + 10 * i))
      # GIAO_<SERVICE>_INSTANCES tells each its share of the rate limits (shared/ratelimit.py)
      add_process "$name" "$s" "${SERVICE_PORT[$s]}" "$own" "GIAO_INSTANCE_PORT=$own" "GIAO_${s^^}_INSTANCES=$n"
    else
      add_process "$name" "$s" "${SERVICE_PORT[$s]}"
    fi
  done
done
# Locally the simulator and benchmark stand in for thousands of customers from one address:
# tracking's per-client rate limit exempts loopback here (tests of the limit use their own settings),
# and so do the per-address limits of orders and dispatch on failed authentications. Their limits
# per merchant and per courier still apply: their defaults are far above what the two need.
for s in orders dispatch tracking; do
  exempt="GIAO_${s^^}_RATE_LIMIT_EXEMPT"
  export "$exempt=${!exempt:-127.0.0.1,::1}"
done
# A development system: merchants' webhooks may go to a receiver on this machine (the demo's shop
# listens on 127.0.0.1); production refuses private and loopback targets.
export GIAO_ORDERS_WEBHOOK_ALLOW_PRIVATE="${GIAO_ORDERS_WEBHOOK_ALLOW_PRIVATE:-true}"
# Two partitions per topic here instead of the default six: enough for two instances of a
# service (what one 2-core machine can run), and every partition costs CPU on each fetch, in
# the broker and in each consumer. Measured at 150 orders/s, three interleaved pairs: Kafka's
# CPU per order -12%, all processes -4%. It applies to topics created from now on. Size it up
# front: after adding partitions a subject's next event may overtake its previous one, which
# consumers would then skip as stale.
export GIAO_KAFKA_TOPIC_PARTITIONS="${GIAO_KAFKA_TOPIC_PARTITIONS:-2}"
# Each service reaches the project's PostgreSQL (deploy/local/postgres.sh) through its Unix
# socket in var/pg: on one machine a statement costs less CPU that way than over TCP on
# loopback, on both ends. It runs as its own role (giao_<service>: DML on its own database only)
# and migrates as its database's owner (giao_<service>_owner). A URL already set wins; setting
# GIAO_<SERVICE>_DATABASE_URL alone (a test's database) makes that role migrate too.
for s in orders dispatch tracking; do
  url="GIAO_${s^^}_DATABASE_URL" migration_url="GIAO_${s^^}_MIGRATION_DATABASE_URL"
  socket="host=$VAR/pg&port=${GIAO_PG_PORT:-5432}"
  if [[ -z "${!url:-}" ]]; then
    export "$migration_url=${!migration_url:-postgresql://giao_${s}_owner@/giao_$s?$socket}"
    export "$url=postgresql://giao_$s@/giao_$s?$socket"
  fi
done
# SIGTERM lets a service finish its in-flight work (see shared/service.py); past this, SIGKILL.
GRACE="${GIAO_STOP_GRACE_S:-30}"

# The port that reaches this process and no other, for its operators.
probe_port() { echo "${OPS_PORT[$1]}"; }
ready() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$(probe_port "$1")/readyz"; }

# Is a process sharing this one's port (this one included) running?
port_shared_with_ours() {
  local p; for p in "${ALL[@]}"; do
    if [[ ${PORT[$p]} == "${PORT[$1]}" ]] && pid_alive "$RUN/$p.pid"; then return 0; fi
  done; return 1
}

start_one() {
  local s=$1 pidfile="$RUN/$1.pid"
  if pid_alive "$pidfile"; then say "$s: already running (pid $(cat "$pidfile"))"; return 0; fi
  # The shared port may be held by this service's other instances; anyone else's is an error.
  if ! port_shared_with_ours "$s" && port_open "${PORT[$s]}"; then
    die "$s: port ${PORT[$s]} is taken by a process this project did not start"
  fi
  local own; for own in ${OWN_PORT[$s]} ${OPS_PORT[$s]}; do
    if port_open "$own"; then die "$s: port $own is taken by a process this project did not start"; fi
  done
  # exec: the background subshell becomes the service, so the recorded PID is the service's own
  # and nothing of ours keeps the caller's stdout open.
  local role; read -ra role <<< "${ROLE[$s]:-}"
  # Each service is its own Kafka user (deploy/kafka-acls.txt: only its topics), unless the
  # caller names one for all (the tests: admin, with topic prefixes no ACL names). Exported, not
  # given to `env`, so that the password does not show in a process list.
  local service=${SERVICE[$s]}
  (cd "$ROOT" && export GIAO_KAFKA_USERNAME="${GIAO_KAFKA_USERNAME:-$service}" \
     GIAO_KAFKA_PASSWORD="${GIAO_KAFKA_PASSWORD:-$(kafka_password "${GIAO_KAFKA_USERNAME:-$service}")}" \
   && exec env "${role[@]}" nohup "$PY" -m "services.$service" >> "$LOGS/$s.log" 2>&1 < /dev/null) &
  echo $! > "$pidfile"
  say "$s: starting on 127.0.0.1:${PORT[$s]}${OWN_PORT[$s]:+ and :${OWN_PORT[$s]}}, ops :${OPS_PORT[$s]} (pid $(cat "$pidfile"))"
}

wait_ready() {
  local s=$1
  wait_for 60 "$s /readyz" bash -c "kill -0 $(cat "$RUN/$s.pid") 2>/dev/null || exit 0; curl -fs -o /dev/null --max-time 2 http://127.0.0.1:$(probe_port "$s")/readyz"
  pid_alive "$RUN/$s.pid" || { tail -30 "$LOGS/$s.log" >&2; die "$s: exited; log in $LOGS/$s.log"; }
  ready "$s" || { tail -30 "$LOGS/$s.log" >&2; die "$s: not ready after 60 s; log in $LOGS/$s.log"; }
  say "$s: ready; log in $LOGS/$s.log"
}

names=("${@:2}"); [[ ${#names[@]} -gt 0 ]] || names=("${ALL[@]}")
for s in "${names[@]}"; do [[ -n "${SERVICE[$s]:-}" ]] || die "no process '$s' here (these are: ${ALL[*]})"; done
# stop and status also cover processes started with other settings (a split worker, a third
# instance) that the current ones do not name
if [[ "${1:-}" != start && $# -lt 2 ]]; then
  for f in "$RUN"/orders*.pid "$RUN"/dispatch*.pid "$RUN"/tracking*.pid; do
    [[ -e $f ]] || continue
    p=$(basename "$f" .pid)
    if [[ -z "${SERVICE[$p]:-}" ]]; then names+=("$p"); SERVICE[$p]=${p%%-*}; fi
  done
fi
case "${1:-}" in
  start) for s in "${names[@]}"; do start_one "$s"; done
         for s in "${names[@]}"; do wait_ready "$s"; done ;;
  stop) for s in "${names[@]}"; do stop_pid "$s" "$RUN/$s.pid" "$GRACE"; done ;;
  status) rc=0; for s in "${names[@]}"; do
            if pid_alive "$RUN/$s.pid"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: stopped"; rc=3; fi
          done; exit $rc ;;
  *) die "usage: $0 start|stop|status [process...]" ;;
esac
