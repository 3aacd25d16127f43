"""Least privilege in PostgreSQL, on databases and roles made by the very SQL deploy/local and the
compose file run (deploy/postgres/service-database.sql): a service's runtime role reaches its
own database only, may read and write its tables but change none, and the owner role that runs
the migrations hands it the tables a later migration makes.

Roles belong to the whole server: the test's have names of their own and are dropped after it."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from shared.db import migrate_as
from shared.service import Runtime
from shared.settings import CommonSettings
from tests import ROOT
from tests.infra import Postgres, need_tool
from tests.support import drop_databases

ROLES_SQL = ROOT / "deploy/postgres/service-database.sql"
MIGRATIONS = ROOT / "services"
# One set of databases and roles for the module: making them is most of its time.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class ServiceDatabase:
    """One service's database and its two roles, as deploy/local makes them (other names)."""

    service: str
    db: str
    owner_dsn: str
    app_dsn: str

    @property
    def app(self) -> str:
        return self.db  # the runtime role is named after its database, as giao_orders is


def dsn_as(admin_dsn: str, role: str, password: str, database: str) -> str:
    parts = urlsplit(admin_dsn)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


def make_service_database(postgres: Postgres, tag: str, service: str) -> ServiceDatabase:
    db, owner = f"{tag}_{service}", f"{tag}_{service}_owner"
    variables = {"db": db, "app": db, "owner": owner, "app_password": "app-pw", "owner_password": "owner-pw"}
    command = [need_tool("psql"), postgres.admin_dsn, "-qAt", "-f", str(ROLES_SQL)]
    for name, value in variables.items():
        command += ["-v", f"{name}={value}"]
    for _ in range(2):  # deploy/local/postgres.sh runs it at every start: the second run changes nothing
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ)
        assert result.returncode == 0, result.stderr
    return ServiceDatabase(
        service,
        db,
        dsn_as(postgres.admin_dsn, owner, "owner-pw", db),
        dsn_as(postgres.admin_dsn, db, "app-pw", db),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def services(postgres: Postgres) -> AsyncIterator[dict[str, ServiceDatabase]]:
    tag = f"roles_{uuid.uuid4().hex[:8]}"
    made: dict[str, ServiceDatabase] = {}
    try:
        for service in ("orders", "tracking"):
            made[service] = make_service_database(postgres, tag, service)
            await migrate_as(made[service].owner_dsn, MIGRATIONS / service / "migrations")
        yield made
    finally:
        await drop_databases(postgres.admin_dsn, [f"{tag}_{s}" for s in ("orders", "tracking")])
        admin = await asyncpg.connect(postgres.admin_dsn)
        try:
            for s in ("orders", "tracking"):
                for role in (f"{tag}_{s}", f"{tag}_{s}_owner"):
                    await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()


async def test_tracking_cannot_reach_orders_database_nor_read_its_tables(services, postgres):
    orders, tracking = services["orders"], services["tracking"]
    as_tracking = dsn_as(postgres.admin_dsn, tracking.app, "app-pw", orders.db)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="CONNECT"):
        await asyncpg.connect(as_tracking)
    # Even on a connection to orders' database, tracking's role may read none of its tables.
    admin = await asyncpg.connect(postgres.dsn_for(orders.db))
    try:
        for table in ("orders", "outbox", "inbox_positions"):
            privilege = "SELECT" if table == "orders" else "SELECT, INSERT"
            assert not await admin.fetchval(
                "SELECT has_table_privilege($1, $2, $3)", tracking.app, f"public.{table}", privilege
            )
        async with admin.transaction():
            await admin.execute(f'SET LOCAL ROLE "{tracking.app}"')
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema public"):
                await admin.fetch("SELECT * FROM public.orders")
    finally:
        await admin.close()
    own = await asyncpg.connect(tracking.app_dsn)  # its own database it reaches
    try:
        assert await own.fetchval("SELECT count(*) FROM parcels") == 0
    finally:
        await own.close()


async def test_a_runtime_role_writes_its_tables_but_changes_none(services):
    orders = services["orders"]
    app = await asyncpg.connect(orders.app_dsn)
    try:
        assert not await app.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        await app.execute("DELETE FROM orders")  # DML on the tables the migrations made
        for ddl in (
            "CREATE TABLE sneaky (x int)",
            "CREATE TEMPORARY TABLE sneaky (x int)",
            "ALTER TABLE orders ADD COLUMN sneaky int",
            "DROP TABLE orders",
            "TRUNCATE orders",
            "CREATE INDEX sneaky ON orders (id)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(ddl)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="schema_migrations"):
            await app.execute("ALTER TABLE schema_migrations OWNER TO CURRENT_USER")
        # which migrations ran it may read, not write
        assert await app.fetchval("SELECT count(*) FROM schema_migrations") > 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="schema_migrations"):
            await app.execute("DELETE FROM schema_migrations")
    finally:
        await app.close()
    # A later migration, as the owner: its table and sequence reach the runtime role by themselves.
    owner = await asyncpg.connect(orders.owner_dsn)
    try:
        await owner.execute("CREATE TABLE later (id bigint GENERATED ALWAYS AS IDENTITY, note text)")
    finally:
        await owner.close()
    app = await asyncpg.connect(orders.app_dsn)
    try:
        assert await app.fetchval("INSERT INTO later (note) VALUES ('x') RETURNING id") == 1
    finally:
        await app.close()


async def test_outside_development_a_service_runs_as_its_role_and_refuses_a_superuser(services, postgres, kafka):
    orders = services["orders"]
    production = CommonSettings(env="production", kafka_bootstrap_servers=kafka.bootstrap)
    as_superuser = postgres.dsn_for(orders.db)
    superuser = Runtime(production, name="probe", database_url=as_superuser, migrations=None, relay=False)
    with pytest.raises(RuntimeError, match="refusing to run as a PostgreSQL superuser"):
        await superuser.start()
    own_role = Runtime(
        production,
        name="probe",
        database_url=orders.app_dsn,
        migration_database_url=orders.owner_dsn,
        migrations=MIGRATIONS / "orders" / "migrations",
        relay=False,
    )
    await own_role.start()  # migrates as the owner (nothing left to apply), runs as the runtime role
    try:
        assert await own_role.pool.fetchval("SELECT current_user") == orders.app
        await own_role.check_database()
    finally:
        await own_role.stop()
