"""Dispatch's SQL for the ops console: pages of couriers and open jobs in an area, a courier's
jobs, and the overview's counters. Read-only; each statement reads through an index of
migrations/0003_admin_views.sql (or the matcher's), never the history of finished jobs.

Pages are keyset pages: the next one starts after the last row of this one (a cursor the
API makes opaque), so a page costs the same however deep it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from . import domain
from .store import HOLDS_CAPACITY, OFFERED, WAITING, sql_list, sql_literal

# The jobs the console shows on its map: not yet final and not on the way back.
OPEN_STATUSES: tuple[str, ...] = (domain.WAITING, domain.OFFERED, domain.ASSIGNED, domain.PICKED_UP)
OPEN = sql_list(OPEN_STATUSES)
ON_ITS_WAY = sql_list(domain.ON_ITS_WAY)
EXPIRED = sql_literal(domain.EXPIRED)


@dataclass(frozen=True)
class Area:
    """A box of longitudes and latitudes (west, south, east, north)."""

    min_lng: float
    min_lat: float
    max_lng: float
    max_lat: float


EVERYWHERE = Area(-180.0, -90.0, 180.0, 90.0)

_IN_AREA = "lng BETWEEN $1 AND $3 AND lat BETWEEN $2 AND $4"
_PICKUP_IN_AREA = "pickup_lng BETWEEN $1 AND $3 AND pickup_lat BETWEEN $2 AND $4"


def _area(area: Area) -> tuple[float, float, float, float]:
    return area.min_lng, area.min_lat, area.max_lng, area.max_lat


def _couriers_in_area(online: str) -> str:
    return f"""SELECT id, name, vehicle, lat, lng, load, capacity, online, flagged_at, flag_reason FROM couriers
        WHERE {online} AND {_IN_AREA} AND ($5::uuid IS NULL OR id > $5)
        ORDER BY id LIMIT $6"""


# online or not: written as literals, so that the online ones read the partial index
_COURIERS_IN_AREA = {True: _couriers_in_area("online"), False: _couriers_in_area("NOT online")}


async def couriers_in_area(
    conn: asyncpg.Connection | asyncpg.Pool, area: Area, *, online: bool, after: UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Couriers with a position in the area, online or offline, by id after `after`."""
    return await conn.fetch(_COURIERS_IN_AREA[online], *_area(area), after, limit)


def _jobs_in_area(statuses: tuple[str, ...]) -> str:
    return f"""SELECT order_id, status, pickup_lat, pickup_lng, placed_at, courier_id, offer_expires_at
        FROM jobs
        WHERE status IN {sql_list(statuses)} AND {_PICKUP_IN_AREA}
          AND ($5::timestamptz IS NULL OR (placed_at, order_id) > ($5, $6::uuid))
        ORDER BY placed_at, order_id LIMIT $7"""


# One statement per status, and one for all open jobs (statuses as literals: see store.py).
_JOBS_IN_AREA = {statuses: _jobs_in_area(statuses) for statuses in [OPEN_STATUSES, *((s,) for s in OPEN_STATUSES)]}


async def jobs_in_area(
    conn: asyncpg.Connection | asyncpg.Pool,
    area: Area,
    *,
    statuses: tuple[str, ...],
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Open jobs whose pickup is in the area, oldest first, after (placed_at, order_id):
    those of one open status, or of all (OPEN_STATUSES)."""
    statement = _JOBS_IN_AREA.get(statuses)
    if statement is None:
        raise ValueError(f"not one open status nor all: {statuses}")
    placed_at, order_id = after if after is not None else (None, None)
    return await conn.fetch(statement, *_area(area), placed_at, order_id, limit)


async def courier_exists(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM couriers WHERE id = $1)", courier_id))


async def jobs_of_courier(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID) -> list[asyncpg.Record]:
    """The offers and jobs a courier holds now (the partial index of active couriers' jobs)."""
    return await conn.fetch(
        f"""SELECT order_id, status, pickup_lat, pickup_lng, placed_at, courier_id, offer_expires_at
            FROM jobs WHERE courier_id = $1 AND status IN {HOLDS_CAPACITY}
            ORDER BY placed_at, order_id""",
        courier_id,
    )


@dataclass(frozen=True)
class Counts:
    waiting: int
    offers_out: int
    oldest_waiting_placed_at: datetime | None
    in_progress: int
    expired_since: int
    outbox_backlog: int
    couriers_online: int


# The outbox is counted up to this many rows: beyond it the exact number says nothing more
# (the relay is behind) and counting it would cost more the further behind it is.
OUTBOX_COUNT_CAP = 100_000


async def counts(conn: asyncpg.Connection | asyncpg.Pool, *, expired_since: datetime) -> Counts:
    """The overview's counters, each one read from a partial index (one statement)."""
    row = await conn.fetchrow(
        f"""SELECT
              (SELECT count(*) FROM jobs WHERE status = {WAITING}) AS waiting,
              (SELECT count(*) FROM jobs WHERE status = {OFFERED}) AS offers_out,
              (SELECT min(placed_at) FROM jobs WHERE status = {WAITING}) AS oldest_waiting_placed_at,
              (SELECT count(*) FROM jobs WHERE status IN {ON_ITS_WAY}) AS in_progress,
              (SELECT count(*) FROM jobs WHERE status = {EXPIRED} AND updated_at >= $1) AS expired_since,
              (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT {OUTBOX_COUNT_CAP}) AS o) AS outbox_backlog,
              (SELECT count(*) FROM couriers WHERE online) AS couriers_online""",
        expired_since,
    )
    return Counts(**dict(row))
