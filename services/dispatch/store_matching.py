"""The matcher's and the expirer's SQL: the candidate search, claiming due jobs, writing a
pass's offers, and the deadlines they sleep until. Same rules as store.py (lock order, the
caller's transaction, statuses formatted once from domain.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from uuid import UUID

import asyncpg

from shared.live import notify_from
from shared.outbox import EVENT_COLUMN_TYPES, events_from

from . import domain
from .store import COURIER_JOBS_CHANNEL, OFFERED, WAITING, sql_list, sql_literal

# Available couriers near many pickups at once: one row per job (its pickup and its cells, padded
# with 0, which is no H3 cell, to a rectangular array), each job's nearest couriers found
# through the partial index by a lateral lookup. The job's cells and its longitude scale are
# computed once per job (OFFSET 0 keeps the subquery from being folded into the lookup, which
# sliced the array again for every courier it looked at), and the distance is products rather
# than powers: half the statement's CPU, measured with 20 jobs among 120 couriers. The
# couriers the job was offered to before are read there too, once per job: asked as a NOT
# EXISTS per courier, the planner probed `offers` for every courier in the cells (some 50
# probes an order at 152/s, more where more couriers are around a pickup).
_CANDIDATES = """SELECT j.i, c.id, c.vehicle, c.lat, c.lng, c.load, c.capacity, c.cell
    FROM (SELECT j.*, ($4::bigint[])[j.i:j.i][:] AS cells, cos(radians(j.lat)) AS lng_scale,
                 ARRAY(SELECT o.courier_id FROM offers o WHERE o.order_id = j.order_id) AS offered_before
          FROM unnest($1::uuid[], $2::float8[], $3::float8[]) WITH ORDINALITY AS j(order_id, lat, lng, i)
          OFFSET 0) j
    CROSS JOIN LATERAL (
        SELECT c.id, c.vehicle, c.lat, c.lng, c.load, c.capacity, c.cell FROM couriers c
        WHERE c.{column} = ANY (j.cells) AND c.online AND c.load < c.capacity
          AND c.flagged_at IS NULL AND c.id <> ALL (j.offered_before)
        ORDER BY (c.lat - j.lat) * (c.lat - j.lat)
                 + (c.lng - j.lng) * j.lng_scale * (c.lng - j.lng) * j.lng_scale
        LIMIT $5) c"""
# Public: tests EXPLAIN it to prove the per-cell search uses its index.
CANDIDATES_BY_CELL = _CANDIDATES.format(column="cell")
_CANDIDATES_BY_COARSE_CELL = _CANDIDATES.format(column="coarse_cell")


@dataclass(frozen=True)
class Search:
    order_id: UUID
    lat: float
    lng: float
    cells: Sequence[int]


async def find_candidates(
    conn: asyncpg.Connection, *, coarse: bool, searches: Sequence[Search], limit: int
) -> list[list[asyncpg.Record]]:
    """For each search, the available couriers in its (fine or coarse) cells, nearest first
    (flat-earth distance, fine at city scale; the caller ranks them properly), leaving out
    those its order was offered to before: lists in search order, from one statement. Each
    row has the courier's fine `cell`, so a caller can tell which narrower search holds it.

    Reads only the partial index entries of the searched cells: never every courier.
    """
    if not searches:
        return []
    width = max(len(s.cells) for s in searches)
    rows = await conn.fetch(
        _CANDIDATES_BY_COARSE_CELL if coarse else CANDIDATES_BY_CELL,
        [s.order_id for s in searches],
        [s.lat for s in searches],
        [s.lng for s in searches],
        [list(s.cells) + [0] * (width - len(s.cells)) for s in searches],
        limit,
    )
    found: list[list[asyncpg.Record]] = [[] for _ in searches]
    for r in rows:
        found[r["i"] - 1].append(r)
    return found


# --- the matcher's queue -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaitingJob:
    """A waiting job as the matcher claims it (the fields are the columns, in this order)."""

    order_id: UUID
    pickup_lat: float
    pickup_lng: float
    pickup_cell: int
    match_attempts: int
    placed_at: datetime


CLAIMED_JOB_COLUMNS = ", ".join(f.name for f in fields(WaitingJob))
_CLAIMED_WIDTH = len(fields(WaitingJob))


# A matcher pass starts with one statement: the due waiting jobs it claims, and the capacity
# it can offer them. Rows of both kinds in one result (a job's columns are null in a capacity
# row, and the other way round), which saves a round trip on every pass.
_CLAIM_DUE_AND_CAPACITY = f"""WITH claimed AS (
        SELECT {CLAIMED_JOB_COLUMNS} FROM jobs
        WHERE status = {WAITING} AND next_match_at <= now()
        ORDER BY next_match_at LIMIT $1 FOR UPDATE SKIP LOCKED),
    capacity AS (
        SELECT coarse_cell, sum(capacity - load)::int AS units, max(capacity_at) AS since
        FROM couriers WHERE online AND load < capacity AND flagged_at IS NULL AND coarse_cell IS NOT NULL
        GROUP BY coarse_cell)
    SELECT {CLAIMED_JOB_COLUMNS}, NULL::bigint AS coarse_cell, NULL::int AS units,
           NULL::timestamptz AS since, NULL::bool AS postponed
    FROM claimed
    UNION ALL
    SELECT {", ".join(["NULL"] * _CLAIMED_WIDTH)}, coarse_cell, units, since,
           EXISTS (SELECT FROM jobs WHERE status = {WAITING} AND tried_at IS NOT NULL)
    FROM capacity"""


async def claim_due_and_capacity(conn: asyncpg.Connection, limit: int) -> tuple[list[WaitingJob], list[asyncpg.Record]]:
    """(jobs, capacity): waiting jobs that are due, oldest due first, locked (those another
    instance holds are skipped); and (coarse_cell, units, since, postponed) per coarse cell
    with couriers who can take an offer: free units there, when capacity last appeared there,
    and (the same in every row) whether any waiting job was postponed at all, which spares the
    look for them when none was. Reads the partial indexes of due jobs, available couriers and
    postponed jobs only."""
    jobs, capacity = [], []
    for row in await conn.fetch(_CLAIM_DUE_AND_CAPACITY, limit):
        if row["order_id"] is None:
            capacity.append(row)
        else:
            jobs.append(WaitingJob(*tuple(row)[:_CLAIMED_WIDTH]))
    return jobs, capacity


async def claim_waiting_near_capacity(
    conn: asyncpg.Connection, since: dict[int, datetime], limit: int
) -> list[WaitingJob]:
    """Waiting jobs not yet due, in coarse cells where capacity appeared ({cell: when}) after
    they were last tried, oldest order first, locked; those another instance holds are skipped."""
    return [
        WaitingJob(*r)
        for r in await conn.fetch(
            f"""SELECT {CLAIMED_JOB_COLUMNS}  -- (no column of jobs is called cell or since)
            FROM jobs j JOIN unnest($1::bigint[], $2::timestamptz[]) AS a(cell, since)
                 ON j.pickup_coarse_cell = a.cell
            WHERE j.status = {WAITING} AND j.tried_at IS NOT NULL AND j.tried_at < a.since
              AND j.next_match_at > now()
            ORDER BY j.placed_at LIMIT $3 FOR UPDATE OF j SKIP LOCKED""",
            list(since),
            list(since.values()),
            limit,
        )
    ]


# The offers of a matcher pass in one statement: each courier's units are reserved (all of a
# courier's or none; rows locked in id order with SKIP LOCKED, so a courier another
# transaction is changing is left out, not waited for, and the free capacity is re-checked
# on the locked row), and only the offers whose courier was reserved are written, with their
# jobs handed over, their delivery.offered events and the NOTIFY that tells the couriers'
# streams. The couriers stay locked only from this statement to the pass's COMMIT, which
# follows it with no other round trip (service.matching), since a courier's delivery waits
# for that lock.
_EVENT_PARAMS = ", ".join(f"${10 + i}::{t}" for i, t in enumerate(EVENT_COLUMN_TYPES))
_OFFER = f"""WITH planned AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::int[], $6::int[],
                             $7::int[], $8::int[], $9::int[], {_EVENT_PARAMS})
             WITH ORDINALITY AS k(order_id, courier_id, expires_at, distance_m, travel_s, nth, candidates,
                                  search_rings, search_resolution, t, s, lane, type, head, tail, n)),
    units AS (SELECT courier_id, count(*)::int AS units FROM planned GROUP BY courier_id),
    reserved AS (
        UPDATE couriers c SET load = c.load + before.units, updated_at = now()
        FROM (SELECT c.id, c.load, u.units FROM couriers c JOIN units u ON u.courier_id = c.id
              WHERE c.online AND c.load + u.units <= c.capacity AND c.flagged_at IS NULL
              ORDER BY c.id FOR NO KEY UPDATE OF c SKIP LOCKED) before
        WHERE c.id = before.id
        RETURNING c.id, before.load AS load_before, c.capacity),
    made AS (SELECT p.*, r.load_before + p.nth AS courier_load, r.capacity
             FROM planned p JOIN reserved r ON r.id = p.courier_id),
    offer AS (
        INSERT INTO offers (order_id, courier_id, expires_at, distance_m, travel_s, courier_load, capacity,
                            candidates, search_rings, search_resolution)
        SELECT order_id, courier_id, expires_at, distance_m, travel_s, courier_load, capacity, candidates,
               search_rings, search_resolution FROM made ORDER BY n),
    job AS (
        UPDATE jobs j SET status = {OFFERED}, courier_id = m.courier_id, offer_expires_at = m.expires_at,
               updated_at = now()
        FROM made m WHERE j.order_id = m.order_id),{events_from("made")},
    courier_keys AS (SELECT id::text AS key FROM reserved),
    {notify_from("courier_keys", sql_literal(COURIER_JOBS_CHANNEL))}
    SELECT id, (SELECT count(*) FROM notified) AS notified FROM reserved"""


async def offer(conn: asyncpg.Connection, offers: Sequence[tuple], events: list[list]) -> set[UUID]:
    """Reserve the couriers of these offers and write the offers that got theirs (see _OFFER):
    rows of (order_id, courier_id, expires_at, distance_m, travel_s, nth (the unit's index
    among its courier's units here), candidates, search_rings, search_resolution), and the
    columns of their events (shared.outbox.event_columns), in the same order. Returns the
    couriers reserved, whose streams hear of their offers at commit."""
    if not offers:
        return set()
    columns = [list(c) for c in zip(*offers, strict=True)]
    return {r["id"] for r in await conn.fetch(_OFFER, *columns, *events)}


async def postpone_jobs(conn: asyncpg.Connection, rows: list[tuple[UUID, float]]) -> None:
    """(order_id, seconds): nobody could take these now; look again later."""
    if rows:
        await conn.execute(
            """UPDATE jobs j SET next_match_at = now() + make_interval(secs => k.seconds),
                    match_attempts = j.match_attempts + 1, tried_at = now()
               FROM unnest($1::uuid[], $2::float8[]) AS k(order_id, seconds) WHERE j.order_id = k.order_id""",
            [r[0] for r in rows],
            [r[1] for r in rows],
        )


# --- the expirer ----------------------------------------------------------------------------

# (as the partial index jobs_dispatch_deadline lists them)
_NOT_YET_ACCEPTED = sql_list(domain.NOT_YET_ACCEPTED)


async def claim_expired_offers(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT order_id, courier_id FROM jobs
           WHERE status = {OFFERED} AND offer_expires_at <= now()
           ORDER BY order_id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )


async def claim_past_deadline(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT order_id, status, courier_id FROM jobs
           WHERE status IN {_NOT_YET_ACCEPTED} AND dispatch_deadline <= now()
           ORDER BY order_id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )


async def next_deadline(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    """The earliest moment the expirer or matcher has something to do (for their sleep)."""
    return await conn.fetchval(
        f"""SELECT min(t) FROM (
             (SELECT offer_expires_at AS t FROM jobs WHERE status = {OFFERED}
              ORDER BY offer_expires_at LIMIT 1)
             UNION ALL
             (SELECT dispatch_deadline FROM jobs WHERE status IN {_NOT_YET_ACCEPTED}
              ORDER BY dispatch_deadline LIMIT 1)
           ) s"""
    )


async def next_match_due(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    return await conn.fetchval(
        f"SELECT next_match_at FROM jobs WHERE status = {WAITING} ORDER BY next_match_at LIMIT 1"
    )
