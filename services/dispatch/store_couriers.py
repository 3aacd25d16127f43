"""Dispatch's SQL for couriers: create one, find one by token, their status and position, and
capacity given back. Every function takes a connection; the caller owns the transaction. Lock
order and why nothing here NOTIFYs: store.py's docstring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import asyncpg

COURIER_COLUMNS = "id, name, phone, vehicle, capacity, load, online, lat, lng, position_at"


async def insert_courier(
    conn: asyncpg.Connection, *, id: UUID, name: str, phone: str, vehicle: str, secret_hash: str, capacity: int
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO couriers (id, name, phone, vehicle, secret_hash, capacity)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COURIER_COLUMNS}""",
        id,
        name,
        phone,
        vehicle,
        secret_hash,
        capacity,
    )


async def courier_by_secret_hash(conn: asyncpg.Connection | asyncpg.Pool, secret_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, name, phone, vehicle, capacity FROM couriers WHERE secret_hash = $1", secret_hash
    )


async def set_courier_secret(conn: asyncpg.Connection, courier_id: UUID, secret_hash: str) -> bool:
    """Replace a courier's token (by its hash); False for an unknown courier."""
    done = await conn.execute("UPDATE couriers SET secret_hash = $2 WHERE id = $1", courier_id, secret_hash)
    return done != "UPDATE 0"


async def courier(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COURIER_COLUMNS} FROM couriers WHERE id = $1", courier_id)


async def set_courier_status(
    conn: asyncpg.Connection,
    courier_id: UUID,
    *,
    online: bool,
    lat: float | None,
    lng: float | None,
    cell: int | None,
    coarse_cell: int | None,
) -> asyncpg.Record:
    """Online/offline; the position when one is given (kept as it was otherwise)."""
    row = await conn.fetchrow(
        f"""UPDATE couriers SET online = $2,
                lat = COALESCE($3, lat), lng = COALESCE($4, lng), cell = COALESCE($5, cell),
                coarse_cell = COALESCE($6, coarse_cell),
                position_at = CASE WHEN $3::float8 IS NULL THEN position_at ELSE now() END,
                capacity_at = CASE WHEN $2 THEN clock_timestamp() ELSE capacity_at END,
                updated_at = now()
            WHERE id = $1 RETURNING {COURIER_COLUMNS}""",
        courier_id,
        online,
        lat,
        lng,
        cell,
        coarse_cell,
    )
    return row


async def move_courier(
    conn: asyncpg.Connection,
    courier_id: UUID,
    *,
    lat: float,
    lng: float,
    cell: int,
    coarse_cell: int,
    at: datetime,
    publish_if_carrying: bool,
) -> bool:
    """Record a reported position unless a newer one is known. Returns whether a
    courier.location event should go out now: the caller says whether the courier carries
    an active job, and this claims the once-per-second slot atomically (two requests at
    once cannot both win it)."""
    published = await conn.fetchval(
        """UPDATE couriers SET lat = $2, lng = $3, cell = $4, coarse_cell = $7, position_at = $5,
                capacity_at = CASE WHEN coarse_cell IS DISTINCT FROM $7 THEN clock_timestamp() ELSE capacity_at END,
                updated_at = now(),
                location_published_at = CASE
                    WHEN $6 AND (location_published_at IS NULL
                                 OR location_published_at <= now() - interval '1 second')
                    THEN now() ELSE location_published_at END
            WHERE id = $1 AND (position_at IS NULL OR position_at < $5)
            RETURNING location_published_at = now()""",
        courier_id,
        lat,
        lng,
        cell,
        at,
        publish_if_carrying,
        coarse_cell,
    )
    return bool(published)


# Capacity given back is stamped with the clock at the update, not the transaction's start: a
# matcher pass that began meanwhile and found the courier busy must still see it as news.
CAPACITY_APPEARS = "capacity_at = clock_timestamp(), updated_at = now()"


_RELEASE = f"""UPDATE couriers c SET load = c.load - k.units, {CAPACITY_APPEARS}
    FROM unnest($1::uuid[], $2::int[]) AS k(id, units) WHERE c.id = k.id"""


async def release_couriers(conn: asyncpg.Connection, courier_ids: Iterable[UUID]) -> None:
    """Give back one unit of capacity per id (an id may repeat).

    One UPDATE for all of them. With more than one courier their rows are locked in id order
    first, because an UPDATE joined to a list locks in whatever order its plan reads: two
    releases (expiry and a cancel, say) then cannot deadlock. The matcher never waits for a
    courier's lock (SKIP LOCKED), so it cannot close a cycle either."""
    units = Counter(courier_ids)
    if not units:
        return
    ids = sorted(units, key=str)  # a UUID's text sorts as PostgreSQL sorts the uuid
    if len(ids) > 1:
        await conn.execute("SELECT FROM couriers WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", ids)
    await conn.execute(_RELEASE, ids, [units[i] for i in ids])
