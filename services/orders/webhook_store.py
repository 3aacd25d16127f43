"""The SQL of webhooks: endpoints, the outbox of deliveries and its attempts (the deliveries an
order change causes are written by store.save_progress, in the consumer's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

ENDPOINT_COLUMNS = """id, merchant_id, url, event_types, enabled, disabled_reason, secret, previous_secret,
    previous_secret_until, created_at, updated_at"""


# --- endpoints --------------------------------------------------------------------


async def insert_endpoint(
    pool: asyncpg.Pool, *, id: UUID, merchant_id: UUID, url: str, event_types: Sequence[str], enabled: bool, secret: str
) -> asyncpg.Record:
    return await pool.fetchrow(
        f"""INSERT INTO webhook_endpoints (id, merchant_id, url, event_types, enabled, secret)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT_COLUMNS}""",
        id,
        merchant_id,
        url,
        list(event_types),
        enabled,
        secret,
    )


async def get_endpoint(
    conn: asyncpg.Pool | asyncpg.Connection, merchant_id: UUID, endpoint_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2", endpoint_id, merchant_id
    )


async def list_endpoints(pool: asyncpg.Pool, merchant_id: UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"""SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = $1
                                ORDER BY created_at, id""",
        merchant_id,
    )


async def update_endpoint(
    pool: asyncpg.Pool,
    merchant_id: UUID,
    endpoint_id: UUID,
    *,
    url: str | None,
    event_types: Sequence[str] | None,
    enabled: bool | None,
) -> asyncpg.Record | None:
    """Change what was given; enabling again clears the reason it was disabled."""
    return await pool.fetchrow(
        f"""UPDATE webhook_endpoints SET url = coalesce($3, url), event_types = coalesce($4, event_types),
                enabled = coalesce($5, enabled),
                disabled_reason = CASE WHEN $5 IS TRUE THEN NULL ELSE disabled_reason END, updated_at = now()
            WHERE id = $1 AND merchant_id = $2 RETURNING {ENDPOINT_COLUMNS}""",
        endpoint_id,
        merchant_id,
        url,
        None if event_types is None else list(event_types),
        enabled,
    )


async def delete_endpoint(pool: asyncpg.Pool, merchant_id: UUID, endpoint_id: UUID) -> bool:
    result = await pool.execute(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2", endpoint_id, merchant_id
    )
    return result != "DELETE 0"


async def rotate_secret(
    pool: asyncpg.Pool, merchant_id: UUID, endpoint_id: UUID, new_secret: str, overlap_until: datetime
) -> asyncpg.Record | None:
    return await pool.fetchrow(
        f"""UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $4, secret = $3,
                updated_at = now()
            WHERE id = $1 AND merchant_id = $2 RETURNING {ENDPOINT_COLUMNS}""",
        endpoint_id,
        merchant_id,
        new_secret,
        overlap_until,
    )


async def disable_endpoint(conn: asyncpg.Connection, endpoint_id: UUID, reason: str) -> bool:
    """Whether it was enabled (and is no longer): False if it is disabled already, or gone."""
    result = await conn.execute(
        """UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now()
                          WHERE id = $1 AND enabled""",
        endpoint_id,
        reason,
    )
    return result != "UPDATE 0"


# --- deliveries -------------------------------------------------------------------


async def insert_delivery(
    pool: asyncpg.Pool, *, id: UUID, endpoint_id: UUID, event_type: str, payload: dict[str, Any]
) -> None:
    await pool.execute(
        """INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload)
                          VALUES ($1, $2, $3, $4)""",
        id,
        endpoint_id,
        event_type,
        payload,
    )


# Due deliveries of enabled endpoints, but never one while an earlier delivery of the same order
# to the same endpoint is still pending (an order's deliveries leave in order), and no more for one
# endpoint than it may have in flight ($3: its limit; $4/$5: the endpoints with deliveries in
# flight and how many). The window counts within the first due rows only ($6 of them, in the due
# index's order), so a backlog costs no full scan. SKIP LOCKED lets several instances claim at
# once; the claim pushes next_attempt_at forward by a lease, so a row whose worker died comes
# back when the lease ends.
_CLAIM = """WITH busy AS (SELECT * FROM unnest($4::uuid[], $5::int[]) AS b(endpoint_id, n)),
    candidate AS (
        SELECT c.id, c.endpoint_id, c.next_attempt_at, c.position FROM webhook_deliveries c
        WHERE c.state = 'pending' AND c.next_attempt_at <= now()
          AND NOT EXISTS (SELECT 1 FROM busy b WHERE b.endpoint_id = c.endpoint_id AND b.n >= $3)
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                          WHERE p.endpoint_id = c.endpoint_id AND p.order_id = c.order_id
                            AND p.state = 'pending' AND p.position < c.position)
        ORDER BY c.next_attempt_at, c.position LIMIT $6),
    allowed AS (
        SELECT r.id FROM (SELECT k.*, row_number() OVER (PARTITION BY k.endpoint_id
                                                          ORDER BY k.next_attempt_at, k.position) AS nth
                          FROM candidate k) r
        LEFT JOIN busy b ON b.endpoint_id = r.endpoint_id
        WHERE r.nth + coalesce(b.n, 0) <= $3
        ORDER BY r.next_attempt_at, r.position LIMIT $1)
    UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
    FROM webhook_endpoints e
    WHERE d.id IN (SELECT c.id FROM webhook_deliveries c
                   WHERE c.id IN (SELECT id FROM allowed) AND c.state = 'pending' AND c.next_attempt_at <= now()
                   FOR UPDATE OF c SKIP LOCKED)
      AND e.id = d.endpoint_id AND e.enabled
    RETURNING d.id, d.endpoint_id, d.event_type, d.payload::text AS body, d.attempts, d.created_at,
              e.url, e.secret, e.previous_secret, e.previous_secret_until"""


async def claim_due(
    pool: asyncpg.Pool, limit: int, lease_s: float, *, per_endpoint: int, in_flight: dict[UUID, int]
) -> list[asyncpg.Record]:
    """Up to `limit` due deliveries, leased for `lease_s`; at most `per_endpoint` in flight to one
    endpoint, counting those `in_flight` already (endpoint id -> deliveries)."""
    return await pool.fetch(_CLAIM, limit, lease_s, per_endpoint, list(in_flight), list(in_flight.values()), 4 * limit)


@dataclass(frozen=True)
class Attempt:
    """One attempt at a delivery and the state it leaves the delivery in: delivered, failed, or
    pending until next_attempt_at."""

    delivery_id: UUID
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    state: str
    next_attempt_at: datetime | None


# The attempt rows are inserted for the deliveries the UPDATE changed (and so holds locked until
# the commit): a delivery deleted meanwhile (its endpoint deleted: the cascade) is left out, as
# its attempt would break the foreign key. Skipping the held ones, a delivery another
# transaction holds (such as an endpoint's deletion, which locks its deliveries in an order of
# its own) is left out too, never waited for while this statement holds others: the two cannot
# deadlock.
_RECORD = """WITH a AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::int[], $5::text[],
                                          $6::text[], $7::timestamptz[])
                         AS a(id, at, status_code, latency_ms, error, state, next_attempt_at)),
    recorded AS (
        UPDATE webhook_deliveries d SET attempts = d.attempts + 1, state = a.state, last_error = a.error,
            next_attempt_at = coalesce(a.next_attempt_at, d.next_attempt_at),
            delivered_at = CASE WHEN a.state = 'delivered' THEN a.at ELSE d.delivered_at END
        FROM a WHERE d.id = a.id {held}
        RETURNING d.id),
    attempt AS (INSERT INTO webhook_attempts (delivery_id, at, status_code, latency_ms, error)
                SELECT a.id, a.at, a.status_code, a.latency_ms, a.error FROM a JOIN recorded r ON r.id = a.id)
    SELECT id FROM recorded"""
_RECORD_WAITING = _RECORD.format(held="")
_RECORD_SKIPPING_HELD = _RECORD.format(
    held="""AND d.id IN (SELECT f.id FROM webhook_deliveries f WHERE f.id IN (SELECT id FROM a)
                          FOR NO KEY UPDATE OF f SKIP LOCKED)"""
)


async def record_attempts(
    conn: asyncpg.Connection | asyncpg.Pool, attempts: Sequence[Attempt], *, wait: bool = True
) -> set[UUID]:
    """Attempts and their deliveries' new states, in one statement: the worker records a whole
    round at once (a statement and a commit per delivery were, with every merchant subscribed,
    as many commits as the rest of the service made). The deliveries recorded: not those gone
    meanwhile, nor without `wait` those another transaction holds (_RECORD)."""
    if not attempts:
        return set()
    statement = _RECORD_WAITING if wait else _RECORD_SKIPPING_HELD
    rows = await conn.fetch(statement, *([getattr(t, f.name) for t in attempts] for f in fields(Attempt)))
    return {row["id"] for row in rows}


async def oldest_pending(pool: asyncpg.Pool) -> datetime | None:
    return await pool.fetchval("""SELECT min(d.created_at) FROM webhook_deliveries d
                                  JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
                                  WHERE d.state = 'pending'""")


async def list_deliveries(
    pool: asyncpg.Pool, endpoint_id: UUID, *, limit: int, before: int | None
) -> list[asyncpg.Record]:
    """A page of the endpoint's deliveries, newest first, each with its attempts (oldest first)."""
    return await pool.fetch(
        """SELECT d.id, d.position, d.order_id, d.event_type, d.state, d.attempts, d.next_attempt_at, d.last_error,
                  d.created_at, d.delivered_at,
                  coalesce((SELECT jsonb_agg(jsonb_build_object('at', a.at, 'status_code', a.status_code,
                                                                'latency_ms', a.latency_ms, 'error', a.error)
                                             ORDER BY a.at)
                            FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]'::jsonb) AS attempt_log
           FROM webhook_deliveries d
           WHERE d.endpoint_id = $1 AND ($2::bigint IS NULL OR d.position < $2)
           ORDER BY d.position DESC LIMIT $3""",
        endpoint_id,
        before,
        limit,
    )


async def redeliver(pool: asyncpg.Pool, endpoint_id: UUID, delivery_id: UUID) -> bool:
    """Send a delivery again, now (its attempts start over; the log keeps the old ones)."""
    result = await pool.execute(
        """UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now()
           WHERE id = $1 AND endpoint_id = $2""",
        delivery_id,
        endpoint_id,
    )
    return result != "UPDATE 0"


async def forget_finished(pool: asyncpg.Pool, older_than: datetime) -> int:
    """Delete delivered and failed deliveries (with their attempts) created before `older_than`."""
    result = await pool.execute(
        "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1", older_than
    )
    return int(result.split()[-1])
