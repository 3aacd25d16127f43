#!/usr/bin/env bash
# docker-compose.yml's Kafka, in the apache/kafka image, with the authentication and ACLs of
# deploy/local/kafka.sh (SASL/SCRAM users formatted in; shared/kafka_acls.py).
#   kafka.sh broker: write the configuration, format the storage once (with the users), run Kafka
#   kafka.sh acls:   add the grants of /giao/kafka-acls.txt, as the admin user (a one-shot service)
# Passwords: KAFKA_<USER>_PASSWORD (the compose file passes GIAO_KAFKA_<USER>_PASSWORD), else the
# public development ones, which the services refuse unless GIAO_ENV is development or test.
# The broker's other settings are the compose file's KAFKA_* variables (KAFKA_NUM_PARTITIONS is
# num.partitions), as the image itself reads them.
set -euo pipefail
BIN=/opt/kafka/bin
CONF=/tmp/server.properties
ADMIN_CONF=/tmp/admin.properties
DATA=/var/lib/kafka/data
USERS=(broker admin orders dispatch tracking)

password() { local v="KAFKA_${1^^}_PASSWORD"; printf '%s' "${!v:-dev-kafka-$1}"; }
scram_login() { echo "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$1\" password=\"$(password "$1")\";"; }

admin_client_config() {
  umask 077
  cat > "$ADMIN_CONF" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=$(scram_login admin)
EOF
}

broker() {
  local name key
  umask 077
  {
    for name in $(compgen -v KAFKA_); do
      case $name in KAFKA_HEAP_OPTS | KAFKA_OPTS | *_PASSWORD) continue ;; esac
      key=${name#KAFKA_}; key=${key,,}; echo "${key//_/.}=${!name}"
    done
    cat <<EOF
log.dirs=$DATA
# Every connection authenticates. Clients use SCRAM (its users live in the cluster's metadata);
# the controller's listener uses PLAIN with the broker's one user, as the controller cannot read
# that metadata before it runs.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.internal.scram-sha-256.sasl.jaas.config=$(scram_login broker)
listener.name.internal.scram-sha-512.sasl.jaas.config=$(scram_login broker)
listener.name.host.scram-sha-256.sasl.jaas.config=$(scram_login broker)
listener.name.host.scram-sha-512.sasl.jaas.config=$(scram_login broker)
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="$(password broker)" user_broker="$(password broker)";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:admin
EOF
  } > "$CONF"
  admin_client_config  # for the health check
  if [[ ! -f $DATA/meta.properties ]]; then
    local scram=() user
    for user in "${USERS[@]}"; do
      scram+=(--add-scram "SCRAM-SHA-256=[name=$user,password=$(password "$user")]"
              --add-scram "SCRAM-SHA-512=[name=$user,password=$(password "$user")]")
    done
    "$BIN/kafka-storage.sh" format -t "$("$BIN/kafka-storage.sh" random-uuid)" -c "$CONF" "${scram[@]}"
  fi
  exec "$BIN/kafka-server-start.sh" "$CONF"
}

acls() {
  admin_client_config
  local principal resource pattern operations names args op name
  while read -r principal resource pattern operations names; do
    [[ -z $principal || $principal == \#* ]] && continue
    args=(--allow-principal "$principal" --resource-pattern-type "$pattern")
    for op in ${operations//,/ }; do args+=(--operation "$op"); done
    for name in $names; do args+=("--$resource" "$name"); done
    "$BIN/kafka-acls.sh" --bootstrap-server "${KAFKA_BOOTSTRAP:-kafka:29092}" --command-config "$ADMIN_CONF" \
      --add "${args[@]}" < /dev/null > /dev/null
    echo "kafka ACLs: $principal may ${operations} ${resource}s ${names}"
  done < /giao/kafka-acls.txt
}

case "${1:-}" in
  broker) broker ;;
  acls) acls ;;
  *) echo "usage: $0 broker|acls" >&2; exit 2 ;;
esac
