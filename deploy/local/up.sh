#!/usr/bin/env bash
# `make up`: start whatever is not running (Kafka, PostgreSQL, the services), wait until ready.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$ROOT/deploy/local/kafka.sh" start
"$ROOT/deploy/local/postgres.sh" start
"$ROOT/deploy/local/services.sh" start
say "up: orders http://127.0.0.1:${GIAO_ORDERS_PORT:-8001}  dispatch http://127.0.0.1:${GIAO_DISPATCH_PORT:-8002}  tracking http://127.0.0.1:${GIAO_TRACKING_PORT:-8003}  (logs in $LOGS)"
