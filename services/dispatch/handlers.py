"""Events dispatch consumes: giao.orders.v1 (order.placed, order.cancel_requested)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from shared.kafka import Batch

from . import service_layer
from .settings import DispatchSettings

CONSUMER = "dispatch-orders"


class OrderEvents:
    """One transaction per batch: every event through the inbox (duplicates and stale ones
    are skipped), new jobs written, cancel requests answered. Errors propagate, so the
    consumer retries the batch and dead-letters what keeps failing."""

    def __init__(self, settings: DispatchSettings, pool: Callable[[], asyncpg.Pool],
                 on_new_work: Callable[[], None]) -> None:
        self.settings = settings
        self._pool = pool
        self._on_new_work = on_new_work

    async def __call__(self, batch: Batch) -> None:
        async with self._pool().acquire() as conn, conn.transaction():
            new_work = await service_layer.apply_order_events(conn, self.settings, CONSUMER, batch)
        if new_work:
            self._on_new_work()
