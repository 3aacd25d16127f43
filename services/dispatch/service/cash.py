"""Cash on delivery after the doorstep: what a courier holds (the cash of their delivered jobs
not yet handed in) and the admin's record of a hand-in at the hub, which settles the courier's
oldest deliveries (domain.handin_count) and is audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from shared import audit

from .. import domain, store_admin, store_cash

# Rows a hand-in reads (and locks) at a time: most hand-ins are a day's deliveries or fewer.
HANDIN_BATCH = 200


class CourierNotFound(Exception):
    """No courier has this id: 404."""


class NoRunAddsUp(Exception):
    """No run of the courier's oldest deliveries adds up to the amount: 409, with what they hold."""

    def __init__(self, held_vnd: int) -> None:
        super().__init__(f"No run of the courier's oldest deliveries adds up to the amount; they hold {held_vnd} VND")
        self.held_vnd = held_vnd


@dataclass(frozen=True)
class Handin:
    id: int
    courier_id: UUID
    amount_vnd: int
    deliveries: int
    received_at: datetime
    held_vnd: int  # what the courier still holds after it


async def receive_cash(
    conn: asyncpg.Connection, courier_id: UUID, amount_vnd: int, *, actor: str = audit.ADMIN
) -> Handin:
    """Record that the courier handed in `amount_vnd` (in the caller's transaction): it settles
    their oldest deliveries whose cash adds up to exactly that, read and locked oldest first until
    the run reaches it. CourierNotFound, or NoRunAddsUp (nothing written)."""
    if not await store_admin.courier_exists(conn, courier_id):
        raise CourierNotFound
    order_ids: list[UUID] = []
    cash: list[int] = []
    count = None
    async for rows in store_cash.oldest_held_locked(conn, courier_id, batch=HANDIN_BATCH):
        order_ids += [r["order_id"] for r in rows]
        cash += [r["cod_collected_vnd"] for r in rows]
        count, need_more = domain.handin_count(cash, amount_vnd)
        if not need_more:
            break
    if count is None:
        raise NoRunAddsUp((await store_cash.held(conn, courier_id))[0])
    row = await store_cash.insert_handin(conn, courier_id, amount_vnd=amount_vnd, deliveries=count, actor=actor)
    await store_cash.settle(conn, order_ids[:count], row["id"])
    await audit.record(
        conn,
        action="courier.cash_received",
        target=str(courier_id),
        detail={"handin_id": row["id"], "amount_vnd": amount_vnd, "deliveries": count},
        actor=actor,
    )
    held_vnd, _ = await store_cash.held(conn, courier_id)
    return Handin(**dict(row), held_vnd=held_vnd)
