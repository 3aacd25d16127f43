"""Dispatch's SQL for jobs, a courier's steps and the cancel saga (store_couriers.py has the
couriers' rows, store_matching.py the matcher's and the expirer's, store_admin.py the
console's, store_cash.py the cash couriers hold). Every function takes a connection; the caller
owns the transaction. Jobs come back as `Job`, built once from a row.

Lock order, everywhere (every store file): jobs before couriers, and within each kind by id. With
that order two transactions cannot wait on each other in a cycle. The matcher goes further
and only ever takes locks with SKIP LOCKED, so it never waits at all.

Statuses and offer states come from domain.py, written into the statements once as literals
(sql_literal, sql_list): a parameter there would keep PostgreSQL from using the partial indexes whose
predicates name them.

Over 400 lines: a courier's single-statement steps share _STEP_END and read best together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from shared import live
from shared.outbox import EVENT_IF_CHANGED

from . import domain
from .store_couriers import CAPACITY_APPEARS

# Only what others do to a courier's jobs NOTIFYs (offers made, in store_matching._OFFER; offers
# withdrawn or expired and jobs cancelled, notify_couriers; a few transactions a second):
# PostgreSQL serializes the commits of notifying transactions on one cluster-wide lock, so a
# courier's own steps never do. Statements that give capacity back stamp the courier's
# capacity_at, where the matcher of any process finds it (store_matching.claim_due_and_capacity);
# the caller pokes its own process's matcher, if it has one, to look now.

# Where couriers whose offers or jobs someone else changed are announced (live.py).
COURIER_JOBS_CHANNEL = "giao_dispatch_courier_jobs"


def sql_literal(value: str) -> str:
    """A domain constant as an SQL literal: 'offered' (for constants only: nothing is escaped)."""
    if not value.isidentifier():
        raise ValueError(f"not a name: {value!r}")
    return f"'{value}'"


def sql_list(values: Iterable[str]) -> str:
    """Domain constants as an SQL list: ('assigned', 'picked_up')."""
    return "(" + ", ".join(sql_literal(v) for v in values) + ")"


# The constants statements are written with (a statement passed to a call names only these
# and column lists: tests/e2e/test_security.py checks that no value is formatted into one).
WAITING, OFFERED, CANCELLED = sql_literal(domain.WAITING), sql_literal(domain.OFFERED), sql_literal(domain.CANCELLED)
DELIVERED = sql_literal(domain.DELIVERED)
HOLDS_CAPACITY, ON_ITS_WAY = sql_list(domain.HOLDS_CAPACITY), sql_list(domain.ON_ITS_WAY)
OPEN, ACCEPTED = sql_literal(domain.OFFER_OPEN), sql_literal(domain.OFFER_ACCEPTED)
DECLINED, WITHDRAWN = sql_literal(domain.OFFER_DECLINED), sql_literal(domain.OFFER_WITHDRAWN)


# --- jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """A job as its statements return it (the fields are the columns, in this order)."""

    order_id: UUID
    tracking_code: str
    status: str
    courier_id: UUID | None
    pickup: dict[str, Any]
    dropoff: dict[str, Any]
    parcel: dict[str, Any]
    note: str | None
    cod_amount_vnd: int
    fee_vnd: int
    distance_m: int
    offer_expires_at: datetime | None
    placed_at: datetime
    dispatch_deadline: datetime
    cod_collected_vnd: int | None
    fail_reason: str | None
    cancel_reason: str | None
    code_salt: str
    code_hash: str
    code_failures: int
    code_locked_until: datetime | None
    updated_at: datetime
    code_failures_total: int
    code_lockouts: int

    @property
    def code_state(self) -> domain.CodeState:
        return domain.CodeState(
            self.code_failures, self.code_failures_total, self.code_lockouts, self.code_locked_until
        )


JOB_COLUMNS = ", ".join(f.name for f in fields(Job))


def _job(row: asyncpg.Record | None) -> Job | None:
    return None if row is None else Job(*row)


async def insert_jobs(conn: asyncpg.Connection, rows: list[tuple]) -> None:
    """(order_id, tracking_code, merchant_id, pickup, dropoff, parcel, note, cod, fee, distance,
    pickup_lat, pickup_lng, pickup_cell, pickup_coarse_cell, code_salt, code_hash, placed_at,
    deadline) per job, all in one statement; a job that exists already is left alone."""
    if not rows:
        return
    columns = [list(c) for c in zip(*rows, strict=True)]
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
           ON CONFLICT (order_id) DO NOTHING""",
        *columns,
    )


async def job(conn: asyncpg.Connection | asyncpg.Pool, order_id: UUID) -> Job | None:
    return _job(await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE order_id = $1", order_id))


_JOB_WIDTH = len(fields(Job))


async def job_and_courier_code_failures(
    conn: asyncpg.Connection, order_id: UUID, courier_id: UUID
) -> tuple[Job | None, int]:
    """A job, and the wrong delivery codes its courier gave across their jobs (one statement)."""
    row = await conn.fetchrow(
        f"""SELECT {JOB_COLUMNS}, (SELECT code_failures FROM couriers WHERE id = $2) FROM jobs
            WHERE order_id = $1""",
        order_id,
        courier_id,
    )
    if row is None:
        return None, 0
    return Job(*tuple(row)[:_JOB_WIDTH]), row[_JOB_WIDTH] or 0


async def lock_job(conn: asyncpg.Connection, order_id: UUID) -> Job | None:
    return _job(await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE order_id = $1 FOR UPDATE", order_id))


async def lock_jobs(conn: asyncpg.Connection, order_ids: Sequence[UUID]) -> dict[UUID, Job]:
    rows = await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM jobs WHERE order_id = ANY($1::uuid[])
            ORDER BY order_id FOR UPDATE""",
        list(order_ids),
    )
    return {r["order_id"]: Job(*r) for r in rows}


def _courier_jobs(courier: str) -> str:
    # (the same list as the partial index jobs_by_active_courier, which it reads)
    return f"""SELECT {JOB_COLUMNS} FROM jobs
    WHERE courier_id {courier} AND status IN {HOLDS_CAPACITY}
      AND (status <> {OFFERED} OR offer_expires_at > now())
    ORDER BY placed_at"""


_COURIER_JOBS = _courier_jobs("= $1")
_JOBS_OF_COURIERS = _courier_jobs("= ANY($1::uuid[])")


async def courier_jobs(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID) -> list[Job]:
    """A courier's open offers (not yet past their time) and jobs in progress."""
    return [Job(*r) for r in await conn.fetch(_COURIER_JOBS, courier_id)]


async def jobs_of_couriers(
    conn: asyncpg.Connection | asyncpg.Pool, courier_ids: Sequence[UUID]
) -> dict[UUID, list[Job]]:
    """courier_jobs of each of these couriers, in one statement (one with none has an empty list)."""
    found: dict[UUID, list[Job]] = {c: [] for c in courier_ids}
    for r in await conn.fetch(_JOBS_OF_COURIERS, list(courier_ids)):
        found[r["courier_id"]].append(Job(*r))
    return found


async def notify_couriers(conn: asyncpg.Connection, courier_ids: Iterable[object]) -> None:
    """Tell every dispatch instance, at commit, that someone changed these couriers' offers or
    jobs (their open streams send the new list)."""
    await live.notify(conn, COURIER_JOBS_CHANNEL, (str(c) for c in courier_ids if c is not None))


async def carried_order_ids(conn: asyncpg.Connection, courier_id: UUID) -> list[UUID]:
    """The orders a courier carries now (assigned or picked up)."""
    rows = await conn.fetch(
        f"""SELECT order_id FROM jobs WHERE courier_id = $1 AND status IN {ON_ITS_WAY}
            ORDER BY order_id""",
        courier_id,
    )
    return [r["order_id"] for r in rows]


async def open_offer_order_ids(conn: asyncpg.Connection, courier_id: UUID) -> list[UUID]:
    rows = await conn.fetch(
        f"SELECT order_id FROM jobs WHERE courier_id = $1 AND status = {OFFERED} ORDER BY order_id", courier_id
    )
    return [r["order_id"] for r in rows]


async def update_job(
    conn: asyncpg.Connection,
    order_id: UUID,
    *,
    status: str,
    cod_collected_vnd: int | None = None,
    fail_reason: str | None = None,
) -> Job:
    return Job(
        *await conn.fetchrow(
            f"""UPDATE jobs SET status = $2, cod_collected_vnd = COALESCE($3, cod_collected_vnd),
                fail_reason = COALESCE($4, fail_reason), updated_at = now()
            WHERE order_id = $1 RETURNING {JOB_COLUMNS}""",
            order_id,
            status,
            cod_collected_vnd,
            fail_reason,
        )
    )


async def record_code_check(conn: asyncpg.Connection, order_id: UUID, state: domain.CodeState) -> None:
    await conn.execute(
        """UPDATE jobs SET code_failures = $2, code_failures_total = $3, code_lockouts = $4,
                code_locked_until = $5, updated_at = now()
           WHERE order_id = $1""",
        order_id,
        state.failures,
        state.total,
        state.lockouts,
        state.locked_until,
    )


async def clear_code_lock(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    """Forget a job's wrong codes and lockouts (the admin's clear); the counts it had, or None
    for an unknown job. A delivered job keeps its updated_at: it is when the job was delivered,
    which orders the cash its courier holds (store_cash.py)."""
    return await conn.fetchrow(
        f"""UPDATE jobs j SET code_failures = 0, code_failures_total = 0, code_lockouts = 0,
                code_locked_until = NULL,
                updated_at = CASE WHEN j.status = {DELIVERED} THEN j.updated_at ELSE now() END
           FROM (SELECT order_id, code_failures_total, code_lockouts FROM jobs WHERE order_id = $1 FOR UPDATE) old
           WHERE j.order_id = old.order_id
           RETURNING old.code_failures_total AS wrong_codes, old.code_lockouts AS lockouts""",
        order_id,
    )


# A courier's accept and steps are single statements: the change, the capacity it frees and
# its event (shared.outbox.EVENT_IF_CHANGED: parameters $1..$6 are the event's) commit
# together with no BEGIN/COMMIT round trips. Each returns the changed job, or nothing when the
# guard in its WHERE did not hold (then nothing at all was written).
_STEP_END = (
    """,
    released AS (
        UPDATE couriers SET load = load - 1, """
    + CAPACITY_APPEARS
    + """
        WHERE id = $8 AND $9::bool AND EXISTS (SELECT FROM changed)),
"""
    + EVENT_IF_CHANGED
    + """
    SELECT changed.* FROM changed"""
)

_ACCEPT_FROM, _ACCEPT_TO = (sql_literal(s) for s in domain.TRANSITIONS[domain.Action.ACCEPT])
_ACCEPT = f"""WITH changed AS (
        UPDATE jobs SET status = {_ACCEPT_TO}, offer_expires_at = NULL, updated_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND status = {_ACCEPT_FROM} AND offer_expires_at > now()
        RETURNING {JOB_COLUMNS}),
    offer AS (
        UPDATE offers SET state = {ACCEPTED}, answered_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND state = {OPEN} AND EXISTS (SELECT FROM changed)){_STEP_END}"""

_ADVANCE = f"""WITH changed AS (
        UPDATE jobs SET status = $11, fail_reason = COALESCE($12, fail_reason), updated_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND status = $10
        RETURNING {JOB_COLUMNS}){_STEP_END}"""

# Delivered only if the code checks the caller made still stand: nobody counted a wrong code
# or locked the job since the caller read it (the total only grows between clears).
_DELIVER_FROM, _DELIVER_TO = (sql_literal(s) for s in domain.TRANSITIONS[domain.Action.DELIVER])
_DELIVER = f"""WITH changed AS (
        UPDATE jobs SET status = {_DELIVER_TO}, cod_collected_vnd = $10, code_failures = 0,
               code_locked_until = NULL, updated_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND status = {_DELIVER_FROM}
          AND code_failures = $11 AND code_locked_until IS NOT DISTINCT FROM $12 AND code_failures_total = $13
        RETURNING {JOB_COLUMNS}){_STEP_END}"""


# Delivered at the first try, with no read before: only if no wrong code was ever counted on
# the job (nothing locked or held), the code the caller checked was checked against this job's
# own salt and hash, the COD amount is the collected one, and the courier is not locked out
# of deliveries (their wrong codes across jobs, as the read path compares them). Anything
# else changes nothing, and the caller decides by the read path.
_DELIVER_FIRST_TRY = f"""WITH changed AS (
        UPDATE jobs SET status = {_DELIVER_TO}, cod_collected_vnd = $10, updated_at = now()
        WHERE order_id = $7 AND courier_id = $8 AND status = {_DELIVER_FROM}
          AND code_failures = 0 AND code_failures_total = 0 AND code_locked_until IS NULL
          AND code_salt = $11 AND code_hash = $12 AND cod_amount_vnd = $10
          AND COALESCE((SELECT code_failures FROM couriers WHERE id = $8), 0) < $13
        RETURNING {JOB_COLUMNS}){_STEP_END}"""


async def accept_offer(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID, event: list) -> Job | None:
    """The job, now assigned, if it was offered to this courier and the offer is still open."""
    return _job(await conn.fetchrow(_ACCEPT, *event, order_id, courier_id, False))


async def advance_job(
    conn: asyncpg.Connection,
    order_id: UUID,
    courier_id: UUID,
    *,
    start: str,
    end: str,
    frees_capacity: bool,
    event: list,
    fail_reason: str | None = None,
) -> Job | None:
    """Move this courier's job from `start` to `end` (giving back its unit of capacity if the
    step frees it) if it is theirs and in `start`."""
    return _job(await conn.fetchrow(_ADVANCE, *event, order_id, courier_id, frees_capacity, start, end, fail_reason))


async def deliver_job(
    conn: asyncpg.Connection,
    order_id: UUID,
    courier_id: UUID,
    *,
    cod_collected_vnd: int,
    seen: domain.CodeState,
    event: list,
) -> Job | None:
    return _job(
        await conn.fetchrow(
            _DELIVER,
            *event,
            order_id,
            courier_id,
            True,
            cod_collected_vnd,
            seen.failures,
            seen.locked_until,
            seen.total,
        )
    )


async def deliver_first_try(
    conn: asyncpg.Connection,
    order_id: UUID,
    courier_id: UUID,
    *,
    cod_collected_vnd: int,
    code_salt: str,
    code_hash: str,
    courier_max_failures: int,
    event: list,
) -> Job | None:
    """The job, delivered, if _DELIVER_FIRST_TRY's conditions hold; None (nothing written) otherwise."""
    args = (order_id, courier_id, True, cod_collected_vnd, code_salt, code_hash, courier_max_failures)
    return _job(await conn.fetchrow(_DELIVER_FIRST_TRY, *event, *args))


async def decline_offer(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID) -> bool:
    """Put the job back in the matcher's queue if it was offered to this courier; the courier
    is never asked again (the offer stays on record, declined). Capacity is the caller's."""
    return await conn.fetchval(
        f"""WITH job AS (
               UPDATE jobs SET status = {WAITING}, courier_id = NULL, offer_expires_at = NULL,
                      next_match_at = now(), updated_at = now()
               WHERE order_id = $1 AND courier_id = $2 AND status = {OFFERED}
               RETURNING order_id),
           offer AS (
               UPDATE offers SET state = {DECLINED}, answered_at = now()
               WHERE order_id = $1 AND courier_id = $2 AND state = {OPEN} AND EXISTS (SELECT FROM job))
           SELECT EXISTS (SELECT FROM job)""",
        order_id,
        courier_id,
    )


async def reopen_jobs(conn: asyncpg.Connection, order_ids: Sequence[UUID], *, offer_state: str) -> None:
    """Close the open offer of each job (declined, expired or withdrawn) and put the job back
    in the matcher's queue at once; the courier it was offered to is never asked again."""
    if not order_ids:
        return
    await conn.execute(
        f"""UPDATE offers SET state = $2, answered_at = now()
           WHERE order_id = ANY($1::uuid[]) AND state = {OPEN}""",
        list(order_ids),
        offer_state,
    )
    await conn.execute(
        f"""UPDATE jobs SET status = {WAITING}, courier_id = NULL, offer_expires_at = NULL,
                next_match_at = now(), updated_at = now()
           WHERE order_id = ANY($1::uuid[])""",
        list(order_ids),
    )


async def end_jobs(
    conn: asyncpg.Connection, order_ids: Sequence[UUID], *, status: str, reasons: Sequence[str | None] | None = None
) -> None:
    """Cancel or expire jobs: an open offer is withdrawn (an accepted one stays on record, as
    does the courier of a job cancelled after acceptance; capacity is the caller's to give back)."""
    if not order_ids:
        return
    await conn.execute(
        f"""UPDATE offers SET state = {WITHDRAWN}, answered_at = now()
           WHERE order_id = ANY($1::uuid[]) AND state = {OPEN}""",
        list(order_ids),
    )
    await conn.execute(
        f"""UPDATE jobs j SET status = $2, offer_expires_at = NULL, updated_at = now(),
                cancel_reason = CASE WHEN $2 = {CANCELLED} THEN r.reason
                                     ELSE j.cancel_reason END,
                courier_id = CASE WHEN j.status = {OFFERED} THEN NULL ELSE j.courier_id END
           FROM unnest($1::uuid[], $3::text[]) AS r(order_id, reason)
           WHERE j.order_id = r.order_id""",
        list(order_ids),
        status,
        list(reasons) if reasons is not None else [None] * len(order_ids),
    )


async def offers_of(conn: asyncpg.Connection | asyncpg.Pool, order_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, courier_id, state, offered_at, expires_at, answered_at, distance_m, travel_s,
                  courier_load, capacity, candidates, search_rings, search_resolution
           FROM offers WHERE order_id = $1 ORDER BY id""",
        order_id,
    )


async def offer_state(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID) -> str | None:
    return await conn.fetchval("SELECT state FROM offers WHERE order_id = $1 AND courier_id = $2", order_id, courier_id)
