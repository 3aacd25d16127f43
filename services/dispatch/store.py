"""All of dispatch's SQL. Every function takes a connection; the caller owns the transaction.

Lock order, everywhere: jobs before couriers, and within each kind by id. With that order
two transactions cannot wait on each other in a cycle. The matcher goes further and only
ever takes locks with SKIP LOCKED, so it never waits at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
import orjson

from shared.outbox import EVENT_COLUMN_TYPES, EVENT_IF_CHANGED, events_from

ACTIVE = ("offered", "assigned", "picked_up", "delivery_failed")

# Nothing here NOTIFYs: PostgreSQL serializes the commits of notifying transactions on one
# cluster-wide lock. Statements that give capacity back stamp the courier's capacity_at, where
# the matcher of any process finds it (claim_due_and_capacity); the caller pokes its own process's
# matcher, if it has one, to look now.


# --- couriers ----------------------------------------------------------------------------

COURIER_COLUMNS = "id, name, phone, vehicle, capacity, load, online, lat, lng, position_at"


async def insert_courier(conn: asyncpg.Connection, *, id: UUID, name: str, phone: str, vehicle: str,
                         secret_hash: str, capacity: int) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO couriers (id, name, phone, vehicle, secret_hash, capacity)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COURIER_COLUMNS}""",
        id, name, phone, vehicle, secret_hash, capacity)


async def courier_by_secret_hash(conn: asyncpg.Connection | asyncpg.Pool, secret_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, name, phone, vehicle, capacity FROM couriers WHERE secret_hash = $1", secret_hash)


async def courier(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COURIER_COLUMNS} FROM couriers WHERE id = $1", courier_id)


async def set_courier_status(conn: asyncpg.Connection, courier_id: UUID, *, online: bool,
                             lat: float | None, lng: float | None, cell: int | None,
                             coarse_cell: int | None) -> asyncpg.Record:
    """Online/offline; the position when one is given (kept as it was otherwise)."""
    row = await conn.fetchrow(
        f"""UPDATE couriers SET online = $2,
                lat = COALESCE($3, lat), lng = COALESCE($4, lng), cell = COALESCE($5, cell),
                coarse_cell = COALESCE($6, coarse_cell),
                position_at = CASE WHEN $3::float8 IS NULL THEN position_at ELSE now() END,
                capacity_at = CASE WHEN $2 THEN clock_timestamp() ELSE capacity_at END,
                updated_at = now()
            WHERE id = $1 RETURNING {COURIER_COLUMNS}""",
        courier_id, online, lat, lng, cell, coarse_cell)
    return row


async def move_courier(conn: asyncpg.Connection, courier_id: UUID, *, lat: float, lng: float, cell: int,
                       coarse_cell: int, at: datetime, publish_if_carrying: bool) -> bool:
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
        courier_id, lat, lng, cell, at, publish_if_carrying, coarse_cell)
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


# Available couriers near many pickups at once: one row per job (its pickup and its cells, padded
# with 0, which is no H3 cell, to a rectangular array), each job's nearest couriers found
# through the partial index by a lateral lookup.
_CANDIDATES = """SELECT j.i, c.id, c.vehicle, c.lat, c.lng, c.load, c.capacity, c.cell
    FROM unnest($1::uuid[], $2::float8[], $3::float8[]) WITH ORDINALITY AS j(order_id, lat, lng, i)
    CROSS JOIN LATERAL (
        SELECT c.id, c.vehicle, c.lat, c.lng, c.load, c.capacity, c.cell FROM couriers c
        WHERE c.{column} = ANY (($4::bigint[])[j.i:j.i][:]) AND c.online AND c.load < c.capacity
          AND NOT EXISTS (SELECT 1 FROM offers o WHERE o.order_id = j.order_id AND o.courier_id = c.id)
        ORDER BY (c.lat - j.lat) ^ 2 + ((c.lng - j.lng) * cos(radians(j.lat))) ^ 2
        LIMIT $5) c"""
_CANDIDATES_BY_CELL = _CANDIDATES.format(column="cell")
_CANDIDATES_BY_COARSE_CELL = _CANDIDATES.format(column="coarse_cell")


@dataclass(frozen=True)
class Search:
    order_id: UUID
    lat: float
    lng: float
    cells: Sequence[int]


async def find_candidates(conn: asyncpg.Connection, *, coarse: bool, searches: Sequence[Search],
                               limit: int) -> list[list[asyncpg.Record]]:
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
        _CANDIDATES_BY_COARSE_CELL if coarse else _CANDIDATES_BY_CELL,
        [s.order_id for s in searches], [s.lat for s in searches], [s.lng for s in searches],
        [list(s.cells) + [0] * (width - len(s.cells)) for s in searches], limit)
    found: list[list[asyncpg.Record]] = [[] for _ in searches]
    for r in rows:
        found[r["i"] - 1].append(r)
    return found


# --- jobs ----------------------------------------------------------------------------------

JOB_COLUMNS = """order_id, tracking_code, status, courier_id, pickup, dropoff, parcel, note,
    cod_amount_vnd, fee_vnd, distance_m, offer_expires_at, placed_at, dispatch_deadline,
    cod_collected_vnd, fail_reason, cancel_reason, code_salt, code_hash, code_failures,
    code_locked_until, updated_at"""


async def insert_jobs(conn: asyncpg.Connection, rows: list[tuple]) -> None:
    """(order_id, tracking_code, merchant_id, pickup, dropoff, parcel, note, cod, fee, distance,
    pickup_lat, pickup_lng, pickup_cell, pickup_coarse_cell, code_salt, code_hash, placed_at,
    deadline) per job, all in one statement; a job that exists already is left alone."""
    if not rows:
        return
    columns = [list(c) for c in zip(*rows)]
    for i in (3, 4, 5):  # pickup, dropoff, parcel: JSON text, cast to jsonb in the statement
        columns[i] = [orjson.dumps(v).decode() for v in columns[i]]
    await conn.execute(
        """INSERT INTO jobs (order_id, tracking_code, merchant_id, pickup, dropoff, parcel, note,
                cod_amount_vnd, fee_vnd, distance_m, pickup_lat, pickup_lng, pickup_cell,
                pickup_coarse_cell, code_salt, code_hash, placed_at, dispatch_deadline, next_match_at)
           SELECT k.order_id, k.tracking_code, k.merchant_id, k.pickup::jsonb, k.dropoff::jsonb, k.parcel::jsonb,
                  k.note, k.cod, k.fee, k.distance, k.lat, k.lng, k.cell, k.coarse_cell, k.salt, k.hash,
                  k.placed_at, k.deadline, now()
           FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::bigint[], $9::bigint[], $10::int[], $11::float8[], $12::float8[], $13::bigint[],
                       $14::bigint[], $15::text[], $16::text[], $17::timestamptz[], $18::timestamptz[])
                AS k(order_id, tracking_code, merchant_id, pickup, dropoff, parcel, note, cod, fee, distance,
                     lat, lng, cell, coarse_cell, salt, hash, placed_at, deadline)
           ORDER BY k.order_id
           ON CONFLICT (order_id) DO NOTHING""", *columns)


async def job(conn: asyncpg.Connection | asyncpg.Pool, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE order_id = $1", order_id)


async def lock_job(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE order_id = $1 FOR UPDATE", order_id)


async def lock_jobs(conn: asyncpg.Connection, order_ids: Sequence[UUID]) -> dict[UUID, asyncpg.Record]:
    rows = await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM jobs WHERE order_id = ANY($1::uuid[])
            ORDER BY order_id FOR UPDATE""", list(order_ids))
    return {r["order_id"]: r for r in rows}


async def courier_jobs(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID) -> list[asyncpg.Record]:
    """A courier's open offers (not yet past their time) and jobs in progress."""
    return await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM jobs
            WHERE courier_id = $1 AND status IN ('offered', 'assigned', 'picked_up', 'delivery_failed')
              AND (status <> 'offered' OR offer_expires_at > now())
            ORDER BY placed_at""", courier_id)


async def carried_order_ids(conn: asyncpg.Connection, courier_id: UUID) -> list[UUID]:
    """The orders a courier carries now (assigned or picked up)."""
    rows = await conn.fetch(
        """SELECT order_id FROM jobs WHERE courier_id = $1 AND status IN ('assigned', 'picked_up')
           ORDER BY order_id""", courier_id)
    return [r["order_id"] for r in rows]


async def open_offer_order_ids(conn: asyncpg.Connection, courier_id: UUID) -> list[UUID]:
    rows = await conn.fetch(
        "SELECT order_id FROM jobs WHERE courier_id = $1 AND status = 'offered' ORDER BY order_id",
        courier_id)
    return [r["order_id"] for r in rows]


async def update_job(conn: asyncpg.Connection, order_id: UUID, *, status: str,
                     cod_collected_vnd: int | None = None, fail_reason: str | None = None) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""UPDATE jobs SET status = $2, cod_collected_vnd = COALESCE($3, cod_collected_vnd),
                fail_reason = COALESCE($4, fail_reason), updated_at = now()
            WHERE order_id = $1 RETURNING {JOB_COLUMNS}""",
        order_id, status, cod_collected_vnd, fail_reason)


async def record_code_check(conn: asyncpg.Connection, order_id: UUID, *, failures: int,
                            locked_until: datetime | None) -> None:
    await conn.execute(
        "UPDATE jobs SET code_failures = $2, code_locked_until = $3, updated_at = now() WHERE order_id = $1",
        order_id, failures, locked_until)


# A courier's accept and steps are single statements: the change, the capacity it frees and
# its event (shared.outbox.EVENT_IF_CHANGED: parameters $1..$6 are the event's) commit
# together with no BEGIN/COMMIT round trips. Each returns the changed job, or nothing when the
# guard in its WHERE did not hold (then nothing at all was written).
_STEP_END = """,
    released AS (
        UPDATE couriers SET load = load - 1, """ + CAPACITY_APPEARS + """
        WHERE id = $8 AND $9::bool AND EXISTS (SELECT FROM changed)),
""" + EVENT_IF_CHANGED + """
    SELECT changed.* FROM changed"""

_ACCEPT = f"""WITH changed AS (
        UPDATE jobs SET status = 'assigned', offer_expires_at = NULL, updated_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND status = 'offered' AND offer_expires_at > now()
        RETURNING {JOB_COLUMNS}),
    offer AS (
        UPDATE offers SET state = 'accepted', answered_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND state = 'open' AND EXISTS (SELECT FROM changed)){_STEP_END}"""

_ADVANCE = f"""WITH changed AS (
        UPDATE jobs SET status = $11, fail_reason = COALESCE($12, fail_reason), updated_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND status = $10
        RETURNING {JOB_COLUMNS}){_STEP_END}"""

# Delivered only if the code checks the caller made still stand: nobody counted a wrong code
# or locked the job since the caller read it.
_DELIVER = f"""WITH changed AS (
        UPDATE jobs SET status = 'delivered', cod_collected_vnd = $10, code_failures = 0,
               code_locked_until = NULL, updated_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND status = 'picked_up'
          AND code_failures = $11 AND code_locked_until IS NOT DISTINCT FROM $12
        RETURNING {JOB_COLUMNS}){_STEP_END}"""


async def accept_offer(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID,
                       event: list) -> asyncpg.Record | None:
    """The job, now assigned, if it was offered to this courier and the offer is still open."""
    return await conn.fetchrow(_ACCEPT, *event, order_id, courier_id, False)


async def advance_job(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID, *, start: str, end: str,
                      frees_capacity: bool, event: list, fail_reason: str | None = None) -> asyncpg.Record | None:
    """Move this courier's job from `start` to `end` (giving back its unit of capacity if the
    step frees it) if it is theirs and in `start`."""
    return await conn.fetchrow(_ADVANCE, *event, order_id, courier_id, frees_capacity, start, end, fail_reason)


async def deliver_job(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID, *, cod_collected_vnd: int,
                      seen_failures: int, seen_locked_until: datetime | None, event: list) -> asyncpg.Record | None:
    return await conn.fetchrow(_DELIVER, *event, order_id, courier_id, True, cod_collected_vnd, seen_failures,
                               seen_locked_until)


async def decline_offer(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID) -> bool:
    """Put the job back in the matcher's queue if it was offered to this courier; the courier
    is never asked again (the offer stays on record, declined). Capacity is the caller's."""
    return await conn.fetchval(
        """WITH job AS (
               UPDATE jobs SET status = 'waiting', courier_id = NULL, offer_expires_at = NULL,
                      next_match_at = now(), updated_at = now()
               WHERE order_id = $1 AND courier_id = $2 AND status = 'offered'
               RETURNING order_id),
           offer AS (
               UPDATE offers SET state = 'declined', answered_at = now()
               WHERE order_id = $1 AND courier_id = $2 AND state = 'open' AND EXISTS (SELECT FROM job))
           SELECT EXISTS (SELECT FROM job)""", order_id, courier_id)


async def reopen_jobs(conn: asyncpg.Connection, order_ids: Sequence[UUID], *, offer_state: str) -> None:
    """Close the open offer of each job (declined, expired or withdrawn) and put the job back
    in the matcher's queue at once; the courier it was offered to is never asked again."""
    if not order_ids:
        return
    await conn.execute(
        """UPDATE offers SET state = $2, answered_at = now()
           WHERE order_id = ANY($1::uuid[]) AND state = 'open'""", list(order_ids), offer_state)
    await conn.execute(
        """UPDATE jobs SET status = 'waiting', courier_id = NULL, offer_expires_at = NULL,
                next_match_at = now(), updated_at = now()
           WHERE order_id = ANY($1::uuid[])""", list(order_ids))


async def end_jobs(conn: asyncpg.Connection, order_ids: Sequence[UUID], *, status: str,
                   reasons: Sequence[str | None] | None = None) -> None:
    """Cancel or expire jobs: an open offer is withdrawn (an accepted one stays on record, as
    does the courier of a job cancelled after acceptance; capacity is the caller's to give back)."""
    if not order_ids:
        return
    await conn.execute(
        """UPDATE offers SET state = 'withdrawn', answered_at = now()
           WHERE order_id = ANY($1::uuid[]) AND state = 'open'""", list(order_ids))
    await conn.execute(
        """UPDATE jobs j SET status = $2, offer_expires_at = NULL, updated_at = now(),
                cancel_reason = CASE WHEN $2 = 'cancelled' THEN r.reason ELSE j.cancel_reason END,
                courier_id = CASE WHEN j.status = 'offered' THEN NULL ELSE j.courier_id END
           FROM unnest($1::uuid[], $3::text[]) AS r(order_id, reason)
           WHERE j.order_id = r.order_id""",
        list(order_ids), status, list(reasons) if reasons is not None else [None] * len(order_ids))


# --- the matcher and the expirer --------------------------------------------------------------


CLAIMED_JOB_COLUMNS = "order_id, pickup_lat, pickup_lng, pickup_cell, match_attempts, placed_at"


# A matcher pass starts with one statement: the due waiting jobs it claims, and the capacity
# it can offer them. Rows of both kinds in one result (a job's columns are null in a capacity
# row, and the other way round), which saves a round trip on every pass.
_CLAIM_DUE_AND_CAPACITY = f"""WITH claimed AS (
        SELECT {CLAIMED_JOB_COLUMNS} FROM jobs
        WHERE status = 'waiting' AND next_match_at <= now()
        ORDER BY next_match_at LIMIT $1 FOR UPDATE SKIP LOCKED),
    capacity AS (
        SELECT coarse_cell, sum(capacity - load)::int AS units, max(capacity_at) AS since
        FROM couriers WHERE online AND load < capacity AND coarse_cell IS NOT NULL
        GROUP BY coarse_cell)
    SELECT {CLAIMED_JOB_COLUMNS}, NULL::bigint AS coarse_cell, NULL::int AS units,
           NULL::timestamptz AS since, NULL::bool AS postponed
    FROM claimed
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, coarse_cell, units, since,
           EXISTS (SELECT FROM jobs WHERE status = 'waiting' AND tried_at IS NOT NULL)
    FROM capacity"""


async def claim_due_and_capacity(conn: asyncpg.Connection,
                                 limit: int) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """(jobs, capacity): waiting jobs that are due, oldest due first, locked (those another
    instance holds are skipped); and (coarse_cell, units, since, postponed) per coarse cell
    with couriers who can take an offer: free units there, when capacity last appeared there,
    and (the same in every row) whether any waiting job was postponed at all, which spares the
    look for them when none was. Reads the partial indexes of due jobs, available couriers and
    postponed jobs only."""
    jobs, capacity = [], []
    for row in await conn.fetch(_CLAIM_DUE_AND_CAPACITY, limit):
        (capacity if row["order_id"] is None else jobs).append(row)
    return jobs, capacity


async def claim_waiting_near_capacity(conn: asyncpg.Connection, since: dict[int, datetime],
                                      limit: int) -> list[asyncpg.Record]:
    """Waiting jobs not yet due, in coarse cells where capacity appeared ({cell: when}) after
    they were last tried, oldest order first, locked; those another instance holds are skipped."""
    return await conn.fetch(
        f"""SELECT {CLAIMED_JOB_COLUMNS}  -- (no column of jobs is called cell or since)
            FROM jobs j JOIN unnest($1::bigint[], $2::timestamptz[]) AS a(cell, since)
                 ON j.pickup_coarse_cell = a.cell
            WHERE j.status = 'waiting' AND j.tried_at IS NOT NULL AND j.tried_at < a.since
              AND j.next_match_at > now()
            ORDER BY j.placed_at LIMIT $3 FOR UPDATE OF j SKIP LOCKED""",
        list(since), list(since.values()), limit)


# The offers of a matcher pass in one statement: each courier's units are reserved (all of a
# courier's or none; rows locked in id order with SKIP LOCKED, so a courier another
# transaction is changing is left out, not waited for, and the free capacity is re-checked
# on the locked row), and only the offers whose courier was reserved are written, with their
# jobs handed over and their delivery.offered events. The couriers stay locked only from
# this statement to the pass's COMMIT.
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
              WHERE c.online AND c.load + u.units <= c.capacity
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
        UPDATE jobs j SET status = 'offered', courier_id = m.courier_id, offer_expires_at = m.expires_at,
               updated_at = now()
        FROM made m WHERE j.order_id = m.order_id),{events_from("made")}
    SELECT id FROM reserved"""


async def offer(conn: asyncpg.Connection, offers: Sequence[tuple], events: list[list]) -> set[UUID]:
    """Reserve the couriers of these offers and write the offers that got theirs (see _OFFER):
    rows of (order_id, courier_id, expires_at, distance_m, travel_s, nth (the unit's index
    among its courier's units here), candidates, search_rings, search_resolution), and the
    columns of their events (shared.outbox.event_columns), in the same order. Returns the
    couriers reserved."""
    if not offers:
        return set()
    columns = [list(c) for c in zip(*offers)]
    return {r["id"] for r in await conn.fetch(_OFFER, *columns, *events)}


async def postpone_jobs(conn: asyncpg.Connection, rows: list[tuple[UUID, float]]) -> None:
    """(order_id, seconds): nobody could take these now; look again later."""
    if rows:
        await conn.execute(
            """UPDATE jobs j SET next_match_at = now() + make_interval(secs => k.seconds),
                    match_attempts = j.match_attempts + 1, tried_at = now()
               FROM unnest($1::uuid[], $2::float8[]) AS k(order_id, seconds) WHERE j.order_id = k.order_id""",
            [r[0] for r in rows], [r[1] for r in rows])


async def claim_expired_offers(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT order_id, courier_id FROM jobs
           WHERE status = 'offered' AND offer_expires_at <= now()
           ORDER BY order_id LIMIT $1 FOR UPDATE SKIP LOCKED""", limit)


async def claim_past_deadline(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT order_id, status, courier_id FROM jobs
           WHERE status IN ('waiting', 'offered') AND dispatch_deadline <= now()
           ORDER BY order_id LIMIT $1 FOR UPDATE SKIP LOCKED""", limit)


async def next_deadline(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    """The earliest moment the expirer or matcher has something to do (for their sleep)."""
    return await conn.fetchval(
        """SELECT min(t) FROM (
             (SELECT offer_expires_at AS t FROM jobs WHERE status = 'offered'
              ORDER BY offer_expires_at LIMIT 1)
             UNION ALL
             (SELECT dispatch_deadline FROM jobs WHERE status IN ('waiting', 'offered')
              ORDER BY dispatch_deadline LIMIT 1)
           ) s""")


async def next_match_due(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    return await conn.fetchval(
        "SELECT next_match_at FROM jobs WHERE status = 'waiting' ORDER BY next_match_at LIMIT 1")


async def offers_of(conn: asyncpg.Connection | asyncpg.Pool, order_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, courier_id, state, offered_at, expires_at, answered_at, distance_m, travel_s,
                  courier_load, capacity, candidates, search_rings, search_resolution
           FROM offers WHERE order_id = $1 ORDER BY id""", order_id)


async def offer_state(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID) -> str | None:
    return await conn.fetchval(
        "SELECT state FROM offers WHERE order_id = $1 AND courier_id = $2", order_id, courier_id)
