"""Dispatch's SQL for couriers: create one, find one by token, their status and position (with
the check for positions no vehicle reaches), their flag and wrong delivery codes, and
capacity given back. Every function takes a connection; the caller owns the transaction. Lock
order and why nothing here NOTIFYs: store.py's docstring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from shared.outbox import EVENT_IF_CHANGED

from . import domain

COURIER_COLUMNS = "id, name, phone, vehicle, capacity, load, online, lat, lng, position_at, flagged_at, flag_reason"


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


async def couriers_by_secret_hashes(
    conn: asyncpg.Connection | asyncpg.Pool, secret_hashes: list[str]
) -> list[asyncpg.Record]:
    """The couriers holding these tokens (by their hashes), those that exist."""
    return await conn.fetch(
        "SELECT secret_hash, id, name, phone, vehicle FROM couriers WHERE secret_hash = ANY($1::text[])",
        secret_hashes,
    )


async def set_courier_secret(conn: asyncpg.Connection, courier_id: UUID, secret_hash: str) -> bool:
    """Replace a courier's token (by its hash); False for an unknown courier."""
    done = await conn.execute("UPDATE couriers SET secret_hash = $2 WHERE id = $1", courier_id, secret_hash)
    return done != "UPDATE 0"


async def courier(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COURIER_COLUMNS} FROM couriers WHERE id = $1", courier_id)


def _jump(lat: str, lng: str, at: str, max_mps: str, slack_m: str) -> str:
    """The one rule for positions no vehicle reaches, as SQL over the courier's row: the
    position (`lat`, `lng`, taken at `at`: SQL expressions) is further from the one the row
    holds than `max_mps` (the vehicle's, domain.MAX_SPEED_MPS) times the seconds between the
    two, plus `slack_m`. Distances are haversine's, as shared.geo's."""
    return f"""(position_at IS NOT NULL AND lat IS NOT NULL
        AND 12742000 * asin(least(1, sqrt(sin(radians({lat}::float8 - lat) / 2) ^ 2
                + cos(radians(lat)) * cos(radians({lat}::float8)) * sin(radians({lng}::float8 - lng) / 2) ^ 2)))
            > {max_mps}::float8 * abs(extract(epoch FROM {at}::timestamptz - position_at)) + {slack_m}::float8)"""


def _move(first: int) -> str:
    """A reported position, as SQL whose parameters start at $`first` (after an event's, in
    _MOVE_AND_PUBLISH): kept unless the courier's position is as new or newer by the phone's
    clock, or the point is a jump (_jump). A kept point ends a run of jumps. Returns whether it
    claimed the once-per-second slot of the courier's published location (`published`)."""
    p = [f"${first + i}" for i in range(9)]  # id, lat, lng, cell, at, carrying, coarse, max_mps, slack_m
    return f"""UPDATE couriers SET lat = {p[1]}, lng = {p[2]}, cell = {p[3]}, coarse_cell = {p[6]},
        position_at = {p[4]}, jumps = 0,
        capacity_at = CASE WHEN coarse_cell IS DISTINCT FROM {p[6]} THEN clock_timestamp() ELSE capacity_at END,
        updated_at = now(),
        location_published_at = CASE
            WHEN {p[5]} AND (location_published_at IS NULL OR location_published_at <= now() - interval '1 second')
            THEN now() ELSE location_published_at END
    WHERE id = {p[0]} AND (position_at IS NULL OR position_at < {p[4]})
      AND NOT {_jump(p[1], p[2], p[4], p[7], p[8])}
    RETURNING location_published_at IS NOT DISTINCT FROM now() AS published"""


_MOVE = _move(1)
# The same with its courier.location event (EVENT_IF_CHANGED, parameters $1..$6), written only
# if the point claimed the slot: the commonest of a courier's calls while carrying a job is one
# statement, its own transaction, so the courier's row is locked only while it runs (a
# delivery waits for that lock) and no BEGIN or COMMIT round trips go with it.
_MOVE_AND_PUBLISH = f"""WITH moved AS ({_move(7)}),
    changed AS (SELECT FROM moved WHERE published),{EVENT_IF_CHANGED}
    SELECT published FROM moved"""
# Only for a position not kept (rare): a point's is a jump if the position held is older (else
# it is older itself); a status's is a jump (_STATUS kept anything else). Counted.
_JUMPED = "UPDATE couriers SET jumps = jumps + 1 WHERE id = $1 AND position_at < $2 RETURNING jumps"
_COUNT_JUMP = "UPDATE couriers SET jumps = jumps + 1 WHERE id = $1 RETURNING jumps"
NO_SPEED_LIMIT = float("inf")


@dataclass(frozen=True)
class Moved:
    kept: bool  # the point is the courier's position now
    published: bool  # its courier.location event was written (the once-per-second slot was claimed)
    flagged: bool  # this point flagged the courier (a sustained jump)
    ignored: str | None  # why it was not kept: "older" or "impossible_speed"


KEPT = Moved(True, False, False, None)
PUBLISHED = Moved(True, True, False, None)


async def move_courier(
    conn: asyncpg.Connection,
    courier_id: UUID,
    *,
    lat: float,
    lng: float,
    cell: int,
    coarse_cell: int,
    at: datetime,
    max_mps: float,
    slack_m: float,
    event: list | None,
) -> bool | None:
    """Record a reported position (see _move) in one statement: None if it was not kept (an
    older point, or a jump at `max_mps`), else whether it claimed the once-per-second slot of
    a published location and wrote `event` (the six parameters of EVENT_IF_CHANGED; None while
    the courier carries no job: then nothing is published). Two requests at once cannot both
    claim the slot."""
    args = (courier_id, lat, lng, cell, at, event is not None, coarse_cell, max_mps, slack_m)
    if event is None:
        return await conn.fetchval(_MOVE, *args)
    return await conn.fetchval(_MOVE_AND_PUBLISH, *event, *args)


async def count_jump(conn: asyncpg.Connection, courier_id: UUID, at: datetime) -> int | None:
    """A point that was not kept: the courier's run of jumps, one longer, if it was a jump
    (their position is older than `at`); None if it was older than their position."""
    return await conn.fetchval(_JUMPED, courier_id, at)


# A status, in one statement: online or offline, and the position it carries (if any) unless
# that is a jump (_jump; the row's position is read under its lock, in the sub-select); the
# time a status without a phone time is compared at is the server's (the phone's best guess).
# A kept position ends a run of jumps.
_STATUS = f"""UPDATE couriers c SET online = $2,
        lat = CASE WHEN j.kept THEN $3 ELSE c.lat END, lng = CASE WHEN j.kept THEN $4 ELSE c.lng END,
        cell = CASE WHEN j.kept THEN $5 ELSE c.cell END,
        coarse_cell = CASE WHEN j.kept THEN $6 ELSE c.coarse_cell END,
        position_at = CASE WHEN j.kept THEN $7 ELSE c.position_at END,
        jumps = CASE WHEN j.kept THEN 0 ELSE c.jumps END,
        capacity_at = CASE WHEN $2 THEN clock_timestamp() ELSE c.capacity_at END,
        updated_at = now()
    FROM (SELECT id, $3::float8 IS NOT NULL AND NOT {_jump("$3", "$4", "COALESCE($7::timestamptz, now())", "$8", "$9")}
          AS kept FROM couriers WHERE id = $1 FOR UPDATE) j
    WHERE c.id = j.id RETURNING {", ".join("c." + col for col in COURIER_COLUMNS.split(", "))}, j.kept"""


async def set_courier_status(
    conn: asyncpg.Connection,
    courier_id: UUID,
    *,
    online: bool,
    lat: float | None,
    lng: float | None,
    at: datetime | None,
    cell: int | None,
    coarse_cell: int | None,
    max_mps: float,
    slack_m: float,
    flag_after: int,
) -> tuple[asyncpg.Record, Moved | None]:
    """Online/offline; the position when one is given, taken at `at` by the phone's clock
    (None when the phone did not say: then the next point is kept whatever its time, as
    nothing of the phone's clock is known to compare it with). A position no vehicle reaches
    is handled as a point's is (move_courier): ignored, and counted in the same run of jumps.
    What became of the position: None when the status carried none."""
    args = (courier_id, online, lat, lng, cell, coarse_cell, at)
    row = await conn.fetchrow(_STATUS, *args, max_mps, slack_m)
    if lat is None or row["kept"]:
        return row, None if lat is None else KEPT
    if not domain.sustained_jump(await conn.fetchval(_COUNT_JUMP, courier_id), flag_after):
        return row, Moved(False, False, False, domain.IMPOSSIBLE_SPEED)
    flagged = await flag_courier(conn, courier_id, domain.IMPOSSIBLE_SPEED)  # before: the answer shows it
    return await conn.fetchrow(_STATUS, *args, NO_SPEED_LIMIT, slack_m), Moved(True, False, flagged, None)


# --- flags and a courier's wrong delivery codes ------------------------------------------------


async def count_code_failure(conn: asyncpg.Connection, courier_id: UUID, *, window_s: float) -> int:
    """One more wrong delivery code of this courier: their count within the window (one that
    started longer ago than `window_s` starts again at this one)."""
    return await conn.fetchval(
        """UPDATE couriers SET
                code_failures = CASE WHEN code_failures_since > now() - make_interval(secs => $2)
                                     THEN code_failures + 1 ELSE 1 END,
                code_failures_since = CASE WHEN code_failures_since > now() - make_interval(secs => $2)
                                           THEN code_failures_since ELSE now() END
           WHERE id = $1 RETURNING code_failures""",
        courier_id,
        window_s,
    )


async def flag_courier(conn: asyncpg.Connection, courier_id: UUID, reason: str) -> bool:
    """Flag a courier (no new offers) unless they are already; whether this flagged them."""
    done = await conn.execute(
        "UPDATE couriers SET flagged_at = now(), flag_reason = $2 WHERE id = $1 AND flagged_at IS NULL",
        courier_id,
        reason,
    )
    return done != "UPDATE 0"


async def clear_flag(conn: asyncpg.Connection, courier_id: UUID) -> asyncpg.Record | None:
    """The admin's clear: no flag, no jumps, no wrong codes counted; capacity appears (the
    matcher may offer to them again at once). What was cleared, or None for an unknown courier."""
    return await conn.fetchrow(
        f"""UPDATE couriers c SET flagged_at = NULL, flag_reason = NULL, jumps = 0, code_failures = 0,
                code_failures_since = NULL, {CAPACITY_APPEARS}
           FROM (SELECT id, flag_reason, code_failures FROM couriers WHERE id = $1 FOR UPDATE) old
           WHERE c.id = old.id
           RETURNING old.flag_reason, old.code_failures""",
        courier_id,
    )


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
