#!/usr/bin/env bash
# The compose file's PostgreSQL, on its first start (docker-entrypoint-initdb.d): each service's
# database and its two roles (deploy/postgres/service-database.sql, mounted at /etc/giao), with
# the passwords the compose file passes (GIAO_<SERVICE>_DB_PASSWORD and
# GIAO_<SERVICE>_DB_OWNER_PASSWORD; giao-dev, public, when not given: the services refuse it
# outside GIAO_ENV=development/test).
set -euo pipefail
for s in orders dispatch tracking; do
  password="GIAO_${s^^}_DB_PASSWORD" owner_password="GIAO_${s^^}_DB_OWNER_PASSWORD"
  psql -qAt --username "$POSTGRES_USER" --dbname postgres \
    -v db="giao_$s" -v app="giao_$s" -v owner="giao_${s}_owner" \
    -v app_password="${!password:-giao-dev}" -v owner_password="${!owner_password:-giao-dev}" \
    -f /etc/giao/service-database.sql >/dev/null
done
# Only the superuser may connect to the maintenance databases: a service's role reaches its own.
psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres \
  -c "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC" -c "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC"
