"""Events in: the projection of orders and dispatch events, and the courier locations.

Two consumers, so that a flood of location pings never delays a status change:

- `on_status_events` (giao.order-tracking.v1 + giao.dispatch.v1): one transaction per batch. The
  inbox (shared.inbox.accept_many) drops duplicates and stale events; the batch's parcels
  are locked with one statement, the events applied by domain.apply (which also guards by
  sequence, so the rules hold without the inbox too), the changed parcels written back with
  one statement, and their tracking codes announced with one NOTIFY.
- `on_locations` (giao.courier-locations.v1): one transaction per batch, the latest point
  per courier only. One statement remembers each courier's latest point and locks the
  parcels the couriers carry; domain.apply_location moves those on their way with that
  courier (a newer point only); one statement writes the moved ones back.
  A parcel that becomes picked_up takes its courier's remembered point at once, since the
  courier's ping may have been consumed before the pickup (another topic). Points do not go through
  the inbox: applying the same point twice changes nothing, and apply_location's sequence
  guard refuses stale ones; thousands of pings a second would only bloat the inbox table.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from services.tracking import domain, store
from shared.inbox import Verdict, accept_many
from shared.kafka import Batch

CONSUMER = "tracking"  # the inbox's name for the status consumer


class Projection:
    def __init__(
        self, pool: Callable[[], asyncpg.Pool], *, on_applied: Callable[[str, int], None] = lambda kind, n: None
    ) -> None:
        self._pool = pool  # the runtime's pool exists only once it started
        self._on_applied = on_applied

    async def on_status_events(self, batch: Batch) -> None:
        async with self._pool().acquire() as conn, conn.transaction():
            verdicts = await accept_many(conn, CONSUMER, batch)
            new = [
                (topic, event)
                for (topic, event), verdict in zip(batch, verdicts, strict=True)
                if verdict is Verdict.NEW and domain.relevant(topic, event)
            ]
            if not new:
                return
            before = await store.lock_parcels(conn, (domain.order_id_of(e) for _, e in new))
            after = dict(before)
            for topic, event in new:
                order_id = domain.order_id_of(event)
                after[order_id] = domain.apply(after[order_id], topic, event)
            waiting = [
                p.courier.id
                for p in after.values()
                if p.location is None and p.courier is not None and p.status in domain.ON_ITS_WAY
            ]
            if waiting:
                points = await store.courier_points(conn, waiting)
                after = {
                    order_id: domain.with_courier_point(p, points.get(p.courier.id) if p.courier else None)
                    for order_id, p in after.items()
                }
            changed = [p for order_id, p in after.items() if p != before[order_id]]
            await store.save_parcels(conn, changed)
            await store.notify_changed(conn, (p.tracking_code for p in changed if p.visible))
        self._on_applied("status", len(new))

    async def on_locations(self, batch: Batch) -> None:
        fixes = domain.latest_locations(batch)
        if not fixes:
            return
        async with self._pool().acquire() as conn, conn.transaction():
            carried = await store.remember_points(conn, fixes)
            moved = domain.moved_by(carried, fixes)
            await store.save_locations(conn, moved)
            await store.notify_changed(conn, (p.tracking_code for p in moved if p.visible))
        self._on_applied("location", len(moved))
