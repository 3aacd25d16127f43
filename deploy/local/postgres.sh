#!/usr/bin/env bash
# The project's own PostgreSQL cluster from Debian's packages, on 127.0.0.1, one database per service.
# Usage: deploy/local/postgres.sh install|start|stop|status
#
# Each service gets two roles on its database (deploy/postgres/service-database.sql): giao_<service>,
# which the service runs as (DML only), and giao_<service>_owner, which migrates it. Their passwords
# are GIAO_<SERVICE>_DB_PASSWORD and GIAO_<SERVICE>_DB_OWNER_PASSWORD (giao-dev, public: the
# services refuse it outside GIAO_ENV=development/test). The services connect through the Unix
# socket, which this development cluster trusts; over TCP the passwords are asked for.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PG_PORT="${GIAO_PG_PORT:-5432}"
PG_USER="${GIAO_PG_USER:-giao}"
PG_PASSWORD="${GIAO_PG_PASSWORD:-giao}"
SERVICES=(orders dispatch tracking)
DATA="$VAR/pg/data"
LOGDIR="$LOGS/postgres"
PIDFILE="$RUN/postgres.pid"

pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

install() {
  [[ -n "$(pgbin)" && -x "$(pgbin)/initdb" ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed; run 'apt-get install postgresql' as root"
  say "postgres: installing Debian's postgresql package"
  # Our cluster lives in var/; keep Debian from creating and starting its own on 5432.
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# PostgreSQL refuses to run as root: as root we run it as the 'postgres' user the package made.
as_owner() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

init() {
  [[ -f "$DATA/PG_VERSION" ]] && return 0
  say "postgres: creating a cluster in $DATA"
  mkdir -p "$DATA" "$LOGDIR"
  [[ $(id -u) -eq 0 ]] && chown -R postgres:postgres "$VAR/pg" "$LOGDIR"
  local pwfile; pwfile=$(mktemp); echo "$PG_PASSWORD" > "$pwfile"; chmod 644 "$pwfile"
  as_owner "$(pgbin)/initdb" -D "$DATA" -U "$PG_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$LOGDIR/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; cat "$LOGDIR/initdb.log" >&2; die "postgres: initdb failed"; }
  rm -f "$pwfile"
  cat >> "$DATA/postgresql.conf" <<CONF
# --- giao: local development cluster ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$VAR/pg'
max_connections = 300
shared_buffers = 256MB
# Commits stay synchronous: an order that got a 201 must survive a crash.
synchronous_commit = on
# Full-page images after each checkpoint are most of the WAL under load: lz4 compresses them
# for a fraction of pglz's CPU, and fewer checkpoints mean fewer of them.
wal_compression = lz4
max_wal_size = 4GB
checkpoint_timeout = 15min
logging_collector = off
log_min_duration_statement = 1000
CONF
}

start() {
  install
  if [[ -f "$PIDFILE" ]] && as_owner "$(pgbin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "postgres: already running (pid $(cat "$PIDFILE"))"; ensure_databases; return 0
  fi
  if port_open "$PG_PORT"; then die "postgres: port $PG_PORT is taken by a process this project did not start"; fi
  init
  mkdir -p "$LOGDIR"; [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$LOGDIR"
  say "postgres: starting on 127.0.0.1:$PG_PORT"
  as_owner "$(pgbin)/pg_ctl" -D "$DATA" -l "$LOGDIR/postgres.log" -w -t 60 start >/dev/null \
    || { tail -20 "$LOGDIR/postgres.log" >&2; die "postgres: did not start; logs in $LOGDIR"; }
  head -1 "$DATA/postmaster.pid" > "$PIDFILE"
  ensure_databases
  say "postgres: ready (pid $(cat "$PIDFILE")); logs in $LOGDIR"
}

psql_admin() { PGPASSWORD="$PG_PASSWORD" "$(pgbin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qAt "$@"; }

ensure_databases() {
  local s password owner_password
  for s in "${SERVICES[@]}"; do
    password="GIAO_${s^^}_DB_PASSWORD"; owner_password="GIAO_${s^^}_DB_OWNER_PASSWORD"
    psql_admin -v db="giao_$s" -v app="giao_$s" -v owner="giao_${s}_owner" \
      -v app_password="${!password:-giao-dev}" -v owner_password="${!owner_password:-giao-dev}" \
      -f "$ROOT/deploy/postgres/service-database.sql" >/dev/null
  done
  # Only the superuser may connect to the maintenance databases: a service's role reaches its own.
  psql_admin -c "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC" -c "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC"
}

stop() {
  if [[ -f "$DATA/postmaster.pid" ]] && pid_alive "$PIDFILE"; then
    # 'fast' rolls back open transactions and checkpoints: nothing committed is lost.
    as_owner "$(pgbin)/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null && say "postgres: stopped (pid $(cat "$PIDFILE"))"
  else
    say "postgres: not running"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if pid_alive "$PIDFILE"; then echo "postgres: running (pid $(cat "$PIDFILE"))"; else echo "postgres: stopped"; exit 3; fi ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
