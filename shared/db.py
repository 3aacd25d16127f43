"""PostgreSQL: an asyncpg pool and plain-SQL migrations applied in order under an advisory lock.

Why not yoyo-migrations: it needs a synchronous driver (psycopg) that nothing else here
uses; applying sorted .sql files once each under `pg_advisory_lock` is all we need, and
it is the forty lines below.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import orjson

log = logging.getLogger(__name__)

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6714_0001  # one advisory lock id for "migrating", per database


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`.

    asyncpg's default reset is one more round trip on every release, i.e. on every request.
    Nothing here leaves session state on a connection it gives back: no SET (only
    transaction-scoped settings and locks), no cursors outside transactions, the migration's
    session advisory lock is unlocked in a finally, and LISTEN connections remove their
    listeners (asyncpg's remove_listener UNLISTENs) before release. asyncpg still rolls back
    an open transaction and drops Python-side listeners on release, whatever this does.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session, command_timeout=30
    )


def migration_files(*dirs: Path) -> list[tuple[str, Path]]:
    """(name, path) of every .sql file: the shared ones first, each folder in file-name order."""
    files = []
    for d in (SHARED_MIGRATIONS, *dirs):
        prefix = "shared" if d == SHARED_MIGRATIONS else d.parent.name
        files += [(f"{prefix}/{p.name}", p) for p in sorted(d.glob("*.sql"))]
    return files


async def migrate_as(dsn: str, *dirs: Path) -> list[str]:
    """`migrate` on a connection of its own: `dsn` names the database's owner role, which may
    change its tables (the service's runtime role may not; deploy/postgres/service-database.sql)."""
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        return await migrate(pool, *dirs)
    finally:
        await pool.close()


async def migrate(pool: asyncpg.Pool, *dirs: Path) -> list[str]:
    """Apply what has not been applied yet; several processes may call this at once."""
    applied_now = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            # deploy/postgres/service-database.sql makes the same table beforehand (so that a
            # service's runtime role may not write it): change both together.
            await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, path in migration_files(*dirs):
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations(name) VALUES ($1)", name)
                log.info("applied migration %s", name)
                applied_now.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now
