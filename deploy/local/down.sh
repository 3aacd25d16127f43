#!/usr/bin/env bash
# `make down`: stop the services and Toxiproxy, then Kafka and PostgreSQL. Data stays in var/.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$ROOT/deploy/local/services.sh" stop
"$ROOT/deploy/local/toxiproxy.sh" stop
"$ROOT/deploy/local/kafka.sh" stop
"$ROOT/deploy/local/postgres.sh" stop
