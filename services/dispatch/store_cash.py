"""Dispatch's SQL for the cash couriers hold: the cash of their delivered jobs not yet handed in,
and the hand-ins the admin records (service/cash.py). Every statement on jobs reads through the
partial index of migrations/0006_cash_handins.sql, whose predicate HELD repeats word for word
(PostgreSQL uses a partial index only for a query that names its predicate)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from . import domain
from .store import sql_literal

# A delivered job whose cash the courier still holds; a job's updated_at is when it was delivered.
HELD = f"status = {sql_literal(domain.DELIVERED)} AND cod_collected_vnd > 0 AND cash_handin_id IS NULL"


async def held(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID) -> tuple[int, int]:
    """The cash a courier holds and of how many deliveries."""
    row = await conn.fetchrow(
        f"SELECT COALESCE(sum(cod_collected_vnd), 0) AS vnd, count(*) AS n FROM jobs WHERE courier_id = $1 AND {HELD}",
        courier_id,
    )
    return int(row["vnd"]), row["n"]


async def held_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID, *, limit: int
) -> list[asyncpg.Record]:
    """A courier's deliveries whose cash they hold, the oldest first."""
    return await conn.fetch(
        f"""SELECT order_id, tracking_code, updated_at AS delivered_at, cod_collected_vnd FROM jobs
            WHERE courier_id = $1 AND {HELD} ORDER BY updated_at, order_id LIMIT $2""",
        courier_id,
        limit,
    )


async def oldest_held_locked(conn: asyncpg.Connection, courier_id: UUID, *, batch: int) -> AsyncIterator[list]:
    """A courier's deliveries whose cash they hold, the oldest first, `batch` at a time, each row
    locked as it is read (in the caller's transaction): a hand-in locks only as many as it reads.
    A row another hand-in settled meanwhile is skipped once that one commits (the predicate is
    checked again on the locked row), so two hand-ins never settle the same delivery."""
    cursor = await conn.cursor(
        f"""SELECT order_id, cod_collected_vnd FROM jobs WHERE courier_id = $1 AND {HELD}
            ORDER BY updated_at, order_id FOR UPDATE""",
        courier_id,
    )
    while rows := await cursor.fetch(batch):
        yield rows


async def insert_handin(
    conn: asyncpg.Connection, courier_id: UUID, *, amount_vnd: int, deliveries: int, actor: str
) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO cash_handins (courier_id, amount_vnd, deliveries, actor) VALUES ($1, $2, $3, $4)
           RETURNING id, courier_id, amount_vnd, deliveries, received_at""",
        courier_id,
        amount_vnd,
        deliveries,
        actor,
    )


async def settle(conn: asyncpg.Connection, order_ids: Sequence[UUID], handin_id: int) -> None:
    """The jobs' cash is handed in (their rows locked by oldest_held_locked); updated_at stays
    when they were delivered."""
    await conn.execute(
        "UPDATE jobs SET cash_handin_id = $2 WHERE order_id = ANY($1::uuid[])", list(order_ids), handin_id
    )


async def latest_handins(conn: asyncpg.Connection | asyncpg.Pool, courier_id: UUID, *, limit: int) -> list:
    return await conn.fetch(
        """SELECT id, amount_vnd, deliveries, received_at FROM cash_handins
           WHERE courier_id = $1 ORDER BY id DESC LIMIT $2""",
        courier_id,
        limit,
    )


async def couriers_holding(
    conn: asyncpg.Connection | asyncpg.Pool, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[asyncpg.Record]:
    """The couriers who hold cash, the one holding the oldest first (keyset on the oldest
    delivery's time and the courier's id). Reads every held delivery's index entry: the
    couriers are known only by summing them."""
    oldest, courier_id = after if after is not None else (None, None)
    return await conn.fetch(
        f"""SELECT h.courier_id, c.name, h.held_vnd, h.deliveries, h.oldest_delivered_at
            FROM (SELECT courier_id, sum(cod_collected_vnd) AS held_vnd, count(*) AS deliveries,
                         min(updated_at) AS oldest_delivered_at
                  FROM jobs WHERE {HELD} GROUP BY courier_id) h
            JOIN couriers c ON c.id = h.courier_id
            WHERE $1::timestamptz IS NULL OR (h.oldest_delivered_at, h.courier_id) > ($1, $2::uuid)
            ORDER BY h.oldest_delivered_at, h.courier_id LIMIT $3""",
        oldest,
        courier_id,
        limit,
    )


async def total_held(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The cash all couriers hold."""
    return int(await conn.fetchval(f"SELECT COALESCE(sum(cod_collected_vnd), 0) FROM jobs WHERE {HELD}"))
