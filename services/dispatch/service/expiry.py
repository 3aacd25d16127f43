"""The clock: offers past their time go to the next courier, orders past the dispatch window
expire."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from shared.events import DeliveryExpired

from .. import domain, store, store_couriers, store_matching
from ..settings import DispatchSettings
from .common import emit_many, step_data


@dataclass(frozen=True)
class ExpiryResult:
    orders_expired: int
    offers_expired: int


async def expire_due(conn: asyncpg.Connection, settings: DispatchSettings, limit: int = 500) -> ExpiryResult:
    """Orders past the dispatch window become `expired` (an open offer is withdrawn); offers
    past their time close and their orders go back to the matcher. Jobs are claimed with
    SKIP LOCKED (never waiting behind a courier's answer), couriers released in id order."""
    late = await store_matching.claim_past_deadline(conn, limit)
    late_ids = [r["order_id"] for r in late]
    await store.end_jobs(conn, late_ids, status=domain.EXPIRED)
    stale = await store_matching.claim_expired_offers(conn, limit)
    stale_ids = [r["order_id"] for r in stale]
    await store.reopen_jobs(conn, stale_ids, offer_state=domain.OFFER_EXPIRED)
    withdrawn_from = [r["courier_id"] for r in late if r["status"] == domain.OFFERED] + [r["courier_id"] for r in stale]
    await store_couriers.release_couriers(conn, withdrawn_from)
    await store.notify_couriers(conn, withdrawn_from)
    await emit_many(conn, settings, [(DeliveryExpired, oid, step_data(oid)) for oid in late_ids])
    return ExpiryResult(len(late_ids), len(stale_ids))
