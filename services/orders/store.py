"""All of the orders service's SQL (asyncpg, parameters always bound, never formatted in).

Functions take a connection when they belong in the caller's transaction, a pool when
they stand alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from services.orders.domain import Cursor, Progress, delivered_at
from services.orders.webhooks import WebhookEvent
from shared.outbox import OPENING_EVENT_COLUMN_TYPES, opening_events_from

ORDER_COLUMNS = """id, merchant_id, external_id, tracking_code, delivery_code, status, fee_vnd,
    distance_m, cod_amount_vnd, pickup, dropoff, parcel, note, courier, history,
    cancellation, cancel_reason, created_at, updated_at"""


# --- merchants --------------------------------------------------------------------


@dataclass(frozen=True)
class Merchant:
    id: UUID
    name: str


async def insert_merchant(
    pool: asyncpg.Pool, *, id: UUID, name: str, phone: str, api_key_hash: str, key_id: UUID, key_prefix: str
) -> None:
    await pool.execute(
        """WITH merchant AS (INSERT INTO merchants (id, name, phone, api_key_hash) VALUES ($1, $2, $3, $4))
           INSERT INTO api_keys (id, merchant_id, key_hash, prefix) VALUES ($5, $1, $4, $6)""",
        id,
        name,
        phone,
        api_key_hash,
        key_id,
        key_prefix,
    )


async def merchant_by_key_hash(pool: asyncpg.Pool, api_key_hash: str) -> Merchant | None:
    # An exact match on the hash of a 256-bit secret: timing reveals nothing useful.
    row = await pool.fetchrow(
        """SELECT m.id, m.name FROM api_keys k JOIN merchants m ON m.id = k.merchant_id
                                 WHERE k.key_hash = $1 AND k.revoked_at IS NULL""",
        api_key_hash,
    )
    return Merchant(id=row["id"], name=row["name"]) if row else None


# --- API keys ----------------------------------------------------------------------


async def insert_api_key(
    pool: asyncpg.Pool, *, id: UUID, merchant_id: UUID, key_hash: str, prefix: str
) -> asyncpg.Record:
    return await pool.fetchrow(
        """INSERT INTO api_keys (id, merchant_id, key_hash, prefix) VALUES ($1, $2, $3, $4)
                                  RETURNING id, prefix, created_at""",
        id,
        merchant_id,
        key_hash,
        prefix,
    )


async def list_api_keys(pool: asyncpg.Pool, merchant_id: UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT id, prefix, created_at FROM api_keys
                               WHERE merchant_id = $1 AND revoked_at IS NULL ORDER BY created_at, id""",
        merchant_id,
    )


async def revoke_api_key(conn: asyncpg.Connection, key_id: UUID, merchant_id: UUID | None) -> UUID | None:
    """Revoke a key (of this merchant, unless None: the admin); its merchant, or None if no such live key."""
    return await conn.fetchval(
        """UPDATE api_keys SET revoked_at = now()
           WHERE id = $1 AND ($2::uuid IS NULL OR merchant_id = $2) AND revoked_at IS NULL
           RETURNING merchant_id""",
        key_id,
        merchant_id,
    )


async def lock_live_api_keys(conn: asyncpg.Connection, merchant_id: UUID) -> None:
    """Lock the merchant's live keys until the transaction ends (in one order: two lockers
    cannot deadlock). A revocation that waited here sees the other's revocation afterwards."""
    await conn.execute(
        "SELECT id FROM api_keys WHERE merchant_id = $1 AND revoked_at IS NULL ORDER BY id FOR UPDATE", merchant_id
    )


async def live_api_keys(conn: asyncpg.Connection, merchant_id: UUID) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM api_keys WHERE merchant_id = $1 AND revoked_at IS NULL", merchant_id
    )


# --- idempotency keys ---------------------------------------------------------------


@dataclass(frozen=True)
class StoredResponse:
    request_hash: str
    status: int
    body: Any


async def claim_idempotency_key(
    conn: asyncpg.Connection, merchant_id: UUID, key: str, request_hash: str
) -> StoredResponse | None:
    """Claim the key in the caller's transaction, or return the response stored under it.

    A request racing with ours for the same key holds the row it inserted until it
    commits; our INSERT waits for that, then sees the row and returns its response.
    """
    claimed = await conn.fetchval(
        """INSERT INTO idempotency_keys (merchant_id, key, request_hash) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        merchant_id,
        key,
        request_hash,
    )
    if claimed:
        return None
    row = await conn.fetchrow(
        """SELECT request_hash, response_status, response_body FROM idempotency_keys
           WHERE merchant_id = $1 AND key = $2""",
        merchant_id,
        key,
    )
    return StoredResponse(row["request_hash"], row["response_status"], row["response_body"])


async def save_idempotent_response(
    conn: asyncpg.Connection, merchant_id: UUID, key: str, status: int, body: Any
) -> None:
    await conn.execute(
        """UPDATE idempotency_keys SET response_status = $3, response_body = $4
           WHERE merchant_id = $1 AND key = $2""",
        merchant_id,
        key,
        status,
        body,
    )


async def prune_idempotency_keys(pool: asyncpg.Pool, older_than: datetime) -> int:
    result = await pool.execute("DELETE FROM idempotency_keys WHERE created_at < $1", older_than)
    return int(result.split()[-1])


# --- orders -----------------------------------------------------------------------


# The order and the events that open it (order.placed, order.trackable) in one statement:
# $1..$5 are the events' columns (shared.outbox.opening_event_columns), written only if the
# order was (nothing at all is written if the insert conflicts).
_NEW_ORDER_EVENTS = ", ".join(f"${i}::{t}" for i, t in enumerate(OPENING_EVENT_COLUMN_TYPES, start=1))
_ORDER_VALUES = ", ".join(
    f"${len(OPENING_EVENT_COLUMN_TYPES) + i}" for i in range(1, len(ORDER_COLUMNS.split(",")) + 1)
)
_INSERT_ORDER = f"""WITH changed AS (
        INSERT INTO orders ({ORDER_COLUMNS})
        VALUES ({_ORDER_VALUES})
        ON CONFLICT DO NOTHING RETURNING true AS inserted),
    new_events AS (
        SELECT * FROM unnest({_NEW_ORDER_EVENTS}) WITH ORDINALITY AS e(t, s, lane, type, payload, n)
        WHERE EXISTS (SELECT FROM changed)),
    {opening_events_from("new_events")}
    SELECT changed.inserted FROM changed"""


async def insert_order(conn: asyncpg.Connection, order: dict[str, Any], events: list[list[Any]]) -> bool:
    """Insert a new order with its opening events (shared.outbox.opening_event_columns); False
    (and nothing written) if its external_id (or, rarely, its tracking code) is taken."""
    inserted = await conn.fetchval(_INSERT_ORDER, *events, *(order[c.strip()] for c in ORDER_COLUMNS.split(",")))
    return bool(inserted)


async def order_id_by_external_id(conn: asyncpg.Connection, merchant_id: UUID, external_id: str) -> UUID | None:
    return await conn.fetchval(
        "SELECT id FROM orders WHERE merchant_id = $1 AND external_id = $2", merchant_id, external_id
    )


_GET_ORDER = f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND merchant_id = $2"
_GET_ORDER_FOR_UPDATE = _GET_ORDER + " FOR UPDATE"


async def get_order(
    conn: asyncpg.Connection | asyncpg.Pool, merchant_id: UUID, order_id: UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET_ORDER_FOR_UPDATE if for_update else _GET_ORDER, order_id, merchant_id)


# One fixed statement per (status filter?, cursor?) so each gets a plan that uses its index.
_LIST_ORDERS = {
    (False, False): f"""SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = $1
                        ORDER BY created_at DESC, id DESC LIMIT $2""",
    (True, False): f"""SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = $1 AND status = $2
                       ORDER BY created_at DESC, id DESC LIMIT $3""",
    (False, True): f"""SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = $1 AND (created_at, id) < ($2, $3)
                       ORDER BY created_at DESC, id DESC LIMIT $4""",
    (True, True): f"""SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = $1 AND status = $2
                      AND (created_at, id) < ($3, $4) ORDER BY created_at DESC, id DESC LIMIT $5""",
}


async def list_orders(
    pool: asyncpg.Pool, merchant_id: UUID, *, status: str | None, limit: int, after: Cursor | None
) -> list[asyncpg.Record]:
    """Up to `limit` orders newest first, older than `after` (a keyset cursor, not an offset)."""
    args: list[Any] = [merchant_id]
    if status is not None:
        args.append(status)
    if after is not None:
        args += [after.at, after.id]
    args.append(limit)
    return await pool.fetch(_LIST_ORDERS[(status is not None, after is not None)], *args)


def progress_of(row: asyncpg.Record) -> Progress:
    return Progress(
        status=row["status"], history=tuple(row["history"]), courier=row["courier"], cancellation=row["cancellation"]
    )


async def waiting_orders(pool: asyncpg.Pool, *, late_before: datetime, since: datetime) -> asyncpg.Record:
    """The orders placed after `since` still waiting for a courier: how many, how many of them
    were placed before `late_before`, and the oldest one's creation time (index orders_waiting)."""
    return await pool.fetchrow(
        """SELECT count(*) AS waiting, count(*) FILTER (WHERE created_at < $1) AS late, min(created_at) AS oldest
           FROM orders WHERE status = 'placed' AND created_at > $2""",
        late_before,
        since,
    )


async def save_cancel_request(
    conn: asyncpg.Connection, order_id: UUID, progress: Progress, reason: str | None
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""UPDATE orders SET cancellation = $2, cancel_reason = $3, updated_at = now()
            WHERE id = $1 RETURNING {ORDER_COLUMNS}""",
        order_id,
        progress.cancellation,
        reason,
    )


async def progress_for_update(conn: asyncpg.Connection, order_ids: Iterable[UUID]) -> dict[UUID, Progress]:
    """The current progress of these orders, locked until the transaction ends (in id order,
    so that two transactions locking overlapping sets cannot deadlock)."""
    rows = await conn.fetch(
        """SELECT id, status, history, courier, cancellation FROM orders
           WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE""",
        list(order_ids),
    )
    return {r["id"]: progress_of(r) for r in rows}


# delivered_at is null but for an order that becomes delivered (it never changes afterwards).
_SAVE_PROGRESS = """UPDATE orders o SET status = k.status, history = k.history::jsonb, courier = k.courier::jsonb,
                cancellation = k.cancellation, delivered_at = k.delivered_at, updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
                AS k(id, status, history, courier, cancellation, delivered_at)
           WHERE o.id = k.id"""

# The same, and one delivery per (webhook event, enabled endpoint of the order's merchant that
# subscribed to its type), in the order of the events: a merchant without an endpoint costs a
# probe of a small partial index, not a round trip.
_SAVE_PROGRESS_AND_DELIVERIES = f"""WITH updated AS ({_SAVE_PROGRESS} RETURNING o.id, o.merchant_id, o.external_id),
    deliveries AS (
        INSERT INTO webhook_deliveries (id, endpoint_id, order_id, event_type, payload)
        SELECT gen_random_uuid(), e.id, u.id, w.type,
               jsonb_set(w.payload::jsonb, '{{data,external_id}}', coalesce(to_jsonb(u.external_id), 'null'::jsonb))
        FROM unnest($7::uuid[], $8::text[], $9::text[]) WITH ORDINALITY AS w(order_id, type, payload, n)
        JOIN updated u ON u.id = w.order_id
        JOIN webhook_endpoints e ON e.merchant_id = u.merchant_id AND e.enabled AND w.type = ANY(e.event_types)
        ORDER BY w.n, e.id)
    SELECT 1"""


async def save_progress(
    conn: asyncpg.Connection, changed: Sequence[tuple[UUID, Progress]], hooks: Sequence[WebhookEvent] = ()
) -> None:
    """Write back a batch's changed orders in one statement (one row at a time was a
    statement per event: the consumer's biggest cost in PostgreSQL), with the webhook
    deliveries their changes cause."""
    if not changed:
        return
    args: list[Any] = [
        [order_id for order_id, _ in changed],
        [p.status for _, p in changed],
        [orjson.dumps(list(p.history)).decode() for _, p in changed],
        [None if p.courier is None else orjson.dumps(p.courier).decode() for _, p in changed],
        [p.cancellation for _, p in changed],
        [delivered_at(p) for _, p in changed],
    ]
    if not hooks:
        await conn.execute(_SAVE_PROGRESS, *args)
        return
    await conn.execute(
        _SAVE_PROGRESS_AND_DELIVERIES,
        *args,
        [h.order_id for h in hooks],
        [h.type for h in hooks],
        [orjson.dumps(h.payload()).decode() for h in hooks],
    )


# --- the statement ---------------------------------------------------------------------
# Both read the partial index orders_merchant_delivered (migration 0005) over [start, end).

_STATEMENT_DAYS = """SELECT (timezone('UTC', delivered_at) + $4::interval)::date AS day, count(*) AS delivered,
           sum(cod_amount_vnd)::bigint AS cod_collected_vnd, sum(fee_vnd)::bigint AS fees_vnd
    FROM orders WHERE merchant_id = $1 AND status = 'delivered' AND delivered_at >= $2 AND delivered_at < $3
    GROUP BY day ORDER BY day"""


async def statement_days(
    pool: asyncpg.Pool, merchant_id: UUID, *, start: datetime, end: datetime, utc_offset: timedelta
) -> list[asyncpg.Record]:
    """The merchant's deliveries in [start, end) by calendar day at `utc_offset`: count and sums."""
    return await pool.fetch(_STATEMENT_DAYS, merchant_id, start, end, utc_offset)


_STATEMENT_LINE_COLUMNS = "id, external_id, tracking_code, delivered_at, cod_amount_vnd, fee_vnd"
# One fixed statement per (cursor?), like the list of orders.
_STATEMENT_ORDERS = {
    False: f"""SELECT {_STATEMENT_LINE_COLUMNS} FROM orders
               WHERE merchant_id = $1 AND status = 'delivered' AND delivered_at >= $2 AND delivered_at < $3
               ORDER BY delivered_at, id LIMIT $4""",
    True: f"""SELECT {_STATEMENT_LINE_COLUMNS} FROM orders
              WHERE merchant_id = $1 AND status = 'delivered' AND delivered_at >= $2 AND delivered_at < $3
              AND (delivered_at, id) > ($4, $5) ORDER BY delivered_at, id LIMIT $6""",
}


async def statement_orders(
    pool: asyncpg.Pool, merchant_id: UUID, *, start: datetime, end: datetime, limit: int, after: Cursor | None
) -> list[asyncpg.Record]:
    """Up to `limit` orders delivered in [start, end), oldest delivery first, after `after`."""
    args: list[Any] = [merchant_id, start, end]
    if after is not None:
        args += [after.at, after.id]
    args.append(limit)
    return await pool.fetch(_STATEMENT_ORDERS[after is not None], *args)
