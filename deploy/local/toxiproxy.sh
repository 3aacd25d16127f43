#!/usr/bin/env bash
# Toxiproxy (github.com/Shopify/toxiproxy/v2): a TCP proxy whose links can be made slow, cut or
# reset through its HTTP API. The fault tests (tests/e2e/test_wire_faults.py) put it between the
# services and Kafka and PostgreSQL. Built from its Go module with the Go toolchain (1.23 or
# newer) at a pinned version, once, into the cache; it serves its API on 127.0.0.1 only.
# Usage: deploy/local/toxiproxy.sh fetch|start|stop|status
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TOXIPROXY_VERSION=v2.12.0
TOXIPROXY_PORT="${GIAO_TOXIPROXY_PORT:-8474}"
BIN="$CACHE/toxiproxy-$TOXIPROXY_VERSION/bin"
PIDFILE="$RUN/toxiproxy.pid"
LOGDIR="$LOGS/toxiproxy"

go_tool() {
  local go; go=$(command -v go || echo /usr/local/go/bin/go)
  [[ -x $go ]] || die "the Go toolchain (1.23+) is needed to build Toxiproxy; put go on PATH"
  echo "$go"
}

fetch() {
  if [[ -x "$BIN/toxiproxy-server" ]]; then return 0; fi
  local go; go=$(go_tool)
  say "toxiproxy: building github.com/Shopify/toxiproxy/v2 $TOXIPROXY_VERSION into $BIN (a few minutes once)"
  mkdir -p "$BIN"
  # GOBIN: the binary lands in our cache, not in ~/go/bin; the module comes from the Go module proxy.
  GOBIN="$BIN" GOFLAGS=-mod=mod "$go" install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
  mv "$BIN/server" "$BIN/toxiproxy-server"
}

start() {
  if pid_alive "$PIDFILE"; then say "toxiproxy: already running (pid $(cat "$PIDFILE"))"; return 0; fi
  if port_open "$TOXIPROXY_PORT"; then die "toxiproxy: port $TOXIPROXY_PORT is taken by a process this project did not start"; fi
  fetch
  mkdir -p "$LOGDIR"
  say "toxiproxy: starting its API on 127.0.0.1:$TOXIPROXY_PORT"
  # LOG_LEVEL: without it every chunk passing through a toxic is logged.
  LOG_LEVEL=info nohup "$BIN/toxiproxy-server" -host 127.0.0.1 -port "$TOXIPROXY_PORT" >> "$LOGDIR/toxiproxy.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  if ! wait_for 30 "toxiproxy to start" ready; then
    tail -20 "$LOGDIR/toxiproxy.log" >&2 || true
    die "toxiproxy: not ready after 30 s; log in $LOGDIR"
  fi
  say "toxiproxy: ready (pid $(cat "$PIDFILE")); log in $LOGDIR"
}

ready() {
  pid_alive "$PIDFILE" || { tail -20 "$LOGDIR/toxiproxy.log" >&2; die "toxiproxy: process exited; log in $LOGDIR"; }
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$TOXIPROXY_PORT/version"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop_pid toxiproxy "$PIDFILE" 10 ;;
  status) if pid_alive "$PIDFILE"; then echo "toxiproxy: running (pid $(cat "$PIDFILE"))"; else echo "toxiproxy: stopped"; exit 3; fi ;;
  *) die "usage: $0 fetch|start|stop|status" ;;
esac
