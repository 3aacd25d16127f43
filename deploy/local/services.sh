#!/usr/bin/env bash
# The three Giao services as background processes of the project's venv.
# Usage: deploy/local/services.sh start|stop|status [orders dispatch tracking]
#
# With GIAO_DISPATCH_SPLIT=true dispatch runs as two processes: `dispatch` serves the HTTP API
# only and `dispatch-worker` (:8004) consumes the orders' events and runs the matcher and the
# expirer (GIAO_DISPATCH_BACKGROUND). Not the default: see the README's performance section.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PY="$ROOT/.venv/bin/python"
declare -A PORTS=([orders]="${GIAO_ORDERS_PORT:-8001}" [dispatch]="${GIAO_DISPATCH_PORT:-8002}"
                  [dispatch-worker]="${GIAO_DISPATCH_WORKER_PORT:-8004}" [tracking]="${GIAO_TRACKING_PORT:-8003}")
declare -A ROLE=()  # what a process is beyond its service's defaults (env assignments)
if [[ "${GIAO_DISPATCH_SPLIT:-false}" == true ]]; then
  ALL=(orders dispatch-worker dispatch tracking)
  ROLE=([dispatch]="GIAO_DISPATCH_BACKGROUND=false"
        [dispatch-worker]="GIAO_DISPATCH_BACKGROUND=true GIAO_DISPATCH_PORT=${PORTS[dispatch-worker]} GIAO_DISPATCH_MATCH_POLL_S=${GIAO_DISPATCH_MATCH_POLL_S:-0.05}")
else
  ALL=(orders dispatch tracking)
fi
# Locally the simulator and benchmark stand in for thousands of customers from one address:
# tracking's per-client rate limit exempts loopback here (tests of the limit use their own settings).
export GIAO_TRACKING_RATE_LIMIT_EXEMPT="${GIAO_TRACKING_RATE_LIMIT_EXEMPT:-127.0.0.1,::1}"
# Two partitions per topic here instead of the default six: enough for two instances of a
# service (what one 2-core machine can run), and every partition costs CPU on each fetch, in
# the broker and in each consumer. Measured at 150 orders/s, three interleaved pairs: Kafka's
# CPU per order -12%, all processes -4%. It applies to topics created from now on. Size it up
# front: after adding partitions a subject's next event may overtake its previous one, which
# consumers would then skip as stale.
export GIAO_KAFKA_TOPIC_PARTITIONS="${GIAO_KAFKA_TOPIC_PARTITIONS:-2}"
# Each service reaches the project's PostgreSQL (deploy/local/postgres.sh) through its Unix
# socket in var/pg: on one machine a statement costs less CPU that way than over TCP on
# loopback, on both ends. A GIAO_<SERVICE>_DATABASE_URL already set wins.
for s in orders dispatch tracking; do
  url="GIAO_${s^^}_DATABASE_URL"
  export "$url=${!url:-postgresql://${GIAO_PG_USER:-giao}@/giao_$s?host=$VAR/pg&port=${GIAO_PG_PORT:-5432}}"
done
# SIGTERM lets a service finish its in-flight work (see shared/service.py); past this, SIGKILL.
GRACE="${GIAO_STOP_GRACE_S:-30}"

ready() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:${PORTS[$1]}/readyz"; }

start_one() {
  local s=$1 pidfile="$RUN/$s.pid"
  if pid_alive "$pidfile"; then say "$s: already running (pid $(cat "$pidfile"))"; return 0; fi
  if port_open "${PORTS[$s]}"; then die "$s: port ${PORTS[$s]} is taken by a process this project did not start"; fi
  # exec: the background subshell becomes the service, so the recorded PID is the service's own
  # and nothing of ours keeps the caller's stdout open.
  local role; read -ra role <<< "${ROLE[$s]:-}"
  (cd "$ROOT" && exec env "${role[@]}" nohup "$PY" -m "services.${s%-worker}" >> "$LOGS/$s.log" 2>&1 < /dev/null) &
  echo $! > "$pidfile"
  say "$s: starting on 127.0.0.1:${PORTS[$s]} (pid $(cat "$pidfile"))"
}

wait_ready() {
  local s=$1
  wait_for 60 "$s /readyz" bash -c "kill -0 $(cat "$RUN/$s.pid") 2>/dev/null || exit 0; curl -fs -o /dev/null --max-time 2 http://127.0.0.1:${PORTS[$s]}/readyz" 
  pid_alive "$RUN/$s.pid" || { tail -30 "$LOGS/$s.log" >&2; die "$s: exited; log in $LOGS/$s.log"; }
  ready "$s" || { tail -30 "$LOGS/$s.log" >&2; die "$s: not ready after 60 s; log in $LOGS/$s.log"; }
  say "$s: ready; log in $LOGS/$s.log"
}

names=("${@:2}"); [[ ${#names[@]} -gt 0 ]] || names=("${ALL[@]}")
# stop and status also cover a worker started with the split, whatever the setting says now
if [[ "${1:-}" != start && $# -lt 2 && -f "$RUN/dispatch-worker.pid" && ! " ${names[*]} " =~ " dispatch-worker " ]]; then
  names+=(dispatch-worker)
fi
case "${1:-}" in
  start) for s in "${names[@]}"; do start_one "$s"; done
         for s in "${names[@]}"; do wait_ready "$s"; done ;;
  stop) for s in "${names[@]}"; do stop_pid "$s" "$RUN/$s.pid" "$GRACE"; done ;;
  status) rc=0; for s in "${names[@]}"; do
            if pid_alive "$RUN/$s.pid"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: stopped"; rc=3; fi
          done; exit $rc ;;
  *) die "usage: $0 start|stop|status [service...]" ;;
esac
