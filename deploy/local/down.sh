#!/usr/bin/env bash
# `make down`: stop the services, then Kafka and PostgreSQL. Data stays in var/.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$ROOT/deploy/local/services.sh" stop
"$ROOT/deploy/local/kafka.sh" stop
"$ROOT/deploy/local/postgres.sh" stop
