#!/usr/bin/env bash
# The real Apache Kafka broker, single-node KRaft, from its Maven Central jars, on Java 17.
# Usage: deploy/local/kafka.sh fetch|start|stop|status|acls
#
# Every client authenticates with SASL/SCRAM as one of the users created when the storage is
# formatted (broker, admin, orders, dispatch, tracking; passwords: common.sh's kafka_password)
# and may do only what deploy/kafka-acls.txt allows it (applied at each start, or with `acls`).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/local/kafka/pom.xml")
KAFKA_PORT="${GIAO_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${GIAO_KAFKA_CONTROLLER_PORT:-9093}"
# A second listener for clients that reach the broker through a proxy (the fault tests'
# Toxiproxy): it listens on GIAO_KAFKA_PROXIED_PORT and is advertised at
# GIAO_KAFKA_PROXIED_ADVERTISED_PORT, the proxy's, so that the broker addresses a client gets
# in metadata lead it back through the proxy. Unset: no such listener.
KAFKA_PROXIED_PORT="${GIAO_KAFKA_PROXIED_PORT:-}"
KAFKA_PROXIED_ADVERTISED_PORT="${GIAO_KAFKA_PROXIED_ADVERTISED_PORT:-}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
DATA="$VAR/kafka/data"
CONF="$VAR/kafka/server.properties"
PIDFILE="$RUN/kafka.pid"
LOGDIR="$LOGS/kafka"
ACLS="$ROOT/deploy/kafka-acls.txt"
SCRAM_USERS=(broker admin orders dispatch tracking)
FORMATTED_WITH_USERS="$DATA/.giao-scram-users"  # storage formatted with SCRAM_USERS

fetch() {
  if [[ -f "$LIBS/.complete" ]]; then return 0; fi
  command -v java >/dev/null || die "java (17+) is needed for Kafka"
  command -v mvn >/dev/null || die "mvn is needed to fetch Kafka's jars from Maven Central"
  say "kafka: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  rm -rf "$LIBS"
  mvn -q -B -Dstyle.color=never -f "$ROOT/deploy/local/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS"
  ls "$LIBS"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null
  touch "$LIBS/.complete"
}

# sed_escaped TEXT: TEXT as the replacement of a sed s||| command.
sed_escaped() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

configure() {
  mkdir -p "$DATA" "$LOGDIR"
  local broker_password; broker_password=$(sed_escaped "$(kafka_password broker)")
  (umask 077; sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$DATA|g" -e "s|@BROKER_PASSWORD@|$broker_password|g" \
      "$ROOT/deploy/local/kafka/server.properties.in" > "$CONF")
  if [[ -n $KAFKA_PROXIED_PORT ]]; then
    [[ -n $KAFKA_PROXIED_ADVERTISED_PORT ]] || die "kafka: GIAO_KAFKA_PROXIED_PORT needs GIAO_KAFKA_PROXIED_ADVERTISED_PORT"
    # The last occurrence of a key wins in a Java properties file. The proxied listener takes
    # the same SCRAM logins as the client one.
    (umask 077; cat >> "$CONF" <<PROXIED
listeners=CLIENT://127.0.0.1:$KAFKA_PORT,PROXIED://127.0.0.1:$KAFKA_PROXIED_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=CLIENT://127.0.0.1:$KAFKA_PORT,PROXIED://127.0.0.1:$KAFKA_PROXIED_ADVERTISED_PORT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT,PROXIED:SASL_PLAINTEXT
listener.name.proxied.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(kafka_password broker)";
listener.name.proxied.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(kafka_password broker)";
PROXIED
    )
  fi
  if [[ -f "$DATA/meta.properties" && ! -f "$FORMATTED_WITH_USERS" ]]; then
    die "kafka: $DATA was formatted without the SCRAM users that every client now needs; remove it (make clean-data) and start again"
  fi
  if [[ ! -f "$DATA/meta.properties" ]]; then
    local cluster_id user scram=()
    # What `StorageTool random-uuid` prints (16 random bytes, base64url), without a JVM's start.
    until [[ -n "${cluster_id:-}" && $cluster_id != -* ]]; do
      cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    for user in "${SCRAM_USERS[@]}"; do
      scram+=(--add-scram "SCRAM-SHA-256=[name=$user,password=$(kafka_password "$user")]"
              --add-scram "SCRAM-SHA-512=[name=$user,password=$(kafka_password "$user")]")
    done
    say "kafka: formatting storage in $DATA (cluster $cluster_id) with users ${SCRAM_USERS[*]}"
    java -cp "$LIBS/*" -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
      -Dkafka.logs.dir="$LOGDIR" kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF" "${scram[@]}" \
      > "$LOGDIR/format.log" 2>&1 || { cat "$LOGDIR/format.log" >&2; die "kafka: format failed"; }
    echo "${SCRAM_USERS[*]}" > "$FORMATTED_WITH_USERS"
  fi
}

# The ACLs of deploy/kafka-acls.txt, as the admin user (a single-file Java program on Kafka's
# jars: no Python client has Kafka's ACL API).
apply_acls() {
  command -v javac >/dev/null || die "kafka: a JDK (javac) is needed to apply the ACLs (deploy/local/tools.sh installs one)"
  KAFKA_ADMIN_PASSWORD="$(kafka_password admin)" java -XX:TieredStopAtLevel=1 -Xshare:auto -cp "$LIBS/*" \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" -Dkafka.logs.dir="$LOGDIR" \
    "$ROOT/deploy/local/kafka/KafkaAcls.java" "127.0.0.1:$KAFKA_PORT" "$ACLS" >&2 \
    || die "kafka: applying $ACLS failed; logs in $LOGDIR"
}

start() {
  if pid_alive "$PIDFILE"; then say "kafka: already running (pid $(cat "$PIDFILE"))"; return 0; fi
  if port_open "$KAFKA_PORT"; then die "kafka: port $KAFKA_PORT is taken by a process this project did not start"; fi
  fetch
  configure
  say "kafka: starting on 127.0.0.1:$KAFKA_PORT"
  # Parallel GC: on a small heap and two cores it spends less CPU than G1's concurrent work.
  # C1 only (TieredStopAtLevel=1): the C2 compiler's thread took 6.8 s of CPU during the first
  # `make bench` after a start and 1.9 s in the second, all of it taken from the system under
  # load. Measured per run (fresh var/, then two runs of make bench): Kafka's CPU 12.7 and
  # 7.0 s with C2, 8.1 and 7.3 s with C1 only; two interleaved pairs of the first run, C2 / C1:
  # Kafka 1.38 / 0.88 and 1.30 / 0.88 ms per order, p99 placed -> offered 424 / 291 and
  # 764 / 206 ms. A broker that runs for hours would gain from C2 (its network threads then spent
  # 3.9 s against C1's 5.7 s); this one serves a session.
  nohup java -Xms256m -Xmx512m -XX:TieredStopAtLevel=1 -XX:+UseParallelGC -XX:ParallelGCThreads=2 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$LOGDIR" -cp "$LIBS/*" kafka.Kafka "$CONF" \
    > "$LOGDIR/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  if ! wait_for 90 "kafka to start" ready; then
    tail -20 "$LOGDIR/server.log" >&2 || true
    die "kafka: not ready after 90 s; logs in $LOGDIR"
  fi
  apply_acls
  say "kafka: ready (pid $(cat "$PIDFILE")); logs in $LOGDIR"
}

# Ready means: our process lives, the port accepts, and the broker logged that it started.
ready() {
  pid_alive "$PIDFILE" || { tail -20 "$LOGDIR/stdout.log" >&2; die "kafka: process exited; logs in $LOGDIR"; }
  port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$LOGDIR/server.log" 2>/dev/null
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop_pid kafka "$PIDFILE" 60 ;;
  acls) apply_acls ;;
  status) if pid_alive "$PIDFILE"; then echo "kafka: running (pid $(cat "$PIDFILE"))"; else echo "kafka: stopped"; exit 3; fi ;;
  *) die "usage: $0 fetch|start|stop|status|acls" ;;
esac
