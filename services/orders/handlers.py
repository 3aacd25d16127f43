"""Dispatch's events keep each order's status, history, courier and cancellation current.

A batch is applied in one transaction: the inbox judges all its events at once (a
duplicate or a stale sequence is skipped), the orders it touches are read and locked in one query,
changed in memory by domain.apply_event, and written back together with the webhook deliveries
the changes cause (webhooks.webhook_events): the outbox of deliveries is written in the same
transaction as the orders, by the same statement.
"""

from __future__ import annotations

import logging
from uuid import UUID

import asyncpg

from services.orders import store
from services.orders.domain import Progress, apply_event
from services.orders.webhooks import WebhookEvent, webhook_events
from shared.events import Envelope, OrderData
from shared.http import Metrics
from shared.inbox import Verdict, accept_many
from shared.kafka import Batch, BatchHandler
from shared.service import Runtime

log = logging.getLogger(__name__)

CONSUMER = "orders.dispatch-events"


def dispatch_events_handler(runtime: Runtime, metrics: Metrics) -> BatchHandler:
    read = metrics.counter(
        "orders_dispatch_events_total", "Dispatch events read, by type and verdict", ("type", "verdict")
    )

    async def handle(batch: Batch) -> None:
        async with runtime.pool.acquire() as conn, conn.transaction():
            verdicts = await accept_many(conn, CONSUMER, batch)
            # Every dispatch event names its order; one that did not would have nothing to change here.
            fresh = [
                event
                for (_, event), verdict in zip(batch, verdicts, strict=True)
                if verdict is Verdict.NEW and isinstance(event.data, OrderData)
            ]
            if fresh:
                await _apply(conn, fresh)
        # Counted after the commit, so that a retried batch is not counted twice.
        for (_, event), verdict in zip(batch, verdicts, strict=True):
            read.labels(event.type, verdict.value).inc()

    return handle


async def _apply(conn: asyncpg.Connection, events: list[Envelope]) -> None:
    """Apply events whose data is OrderData (handle keeps only those)."""
    current = await store.progress_for_update(conn, {_order_id(e) for e in events})
    changed: dict[UUID, Progress] = {}
    hooks: list[WebhookEvent] = []
    for event in events:
        order_id = _order_id(event)
        before = changed.get(order_id) or current.get(order_id)
        if before is None:
            # Dispatch only knows orders that came from here; nothing to keep current.
            log.warning("%s for unknown order %s: ignored", event.type, order_id)
            continue
        after = apply_event(before, event.type, event.occurred_at, event.data)
        if after != before:
            changed[order_id] = after
            hooks += webhook_events(
                before,
                after,
                order_id=order_id,
                event_id=event.id,
                sequence=event.sequence,
                at=event.occurred_at,
                reason=getattr(event.data, "reason", None),
            )
    # The webhook deliveries go in the statement that saves the orders (none without an endpoint).
    await store.save_progress(conn, list(changed.items()), hooks)


def _order_id(event: Envelope) -> UUID:
    assert isinstance(event.data, OrderData)  # handle passes only events about an order
    return event.data.order_id
