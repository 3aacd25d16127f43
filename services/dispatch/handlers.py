"""Events dispatch consumes: giao.orders.v1 (order.placed, order.cancel_requested)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import asyncpg

from shared.errors import describe, is_outage
from shared.kafka import Batch

from .service import matching, orders
from .settings import DispatchSettings

CONSUMER = "dispatch-orders"

log = logging.getLogger(__name__)


class MatchingLoop(Protocol):
    """The matcher's loop of this process (matcher.Matcher), as the consumer tells it."""

    def poke(self) -> None:
        """Work is waiting that this pass left."""

    def pass_begins(self) -> int:
        """A mark to give back with what the pass found."""

    def saw(self, began: int, *passes: matching.MatchResult) -> None:
        """What this pass found (whether jobs wait for want of a courier)."""


class OrderEvents:
    """One transaction per batch: every event through the inbox (duplicates and stale ones
    are skipped), new jobs written, cancel requests answered, and a matcher pass over the
    waiting jobs, the new ones among them, before the commit.

    Why match here: a new order used to wait for the commit, a poke, and the matcher's turn
    (its pass in progress, then a pass of its own, each a transaction of round trips on an
    event loop busy with couriers): most of placed -> offered under load. The pass is the
    matcher's own (service.matching.match_waiting: oldest order first, jobs and couriers claimed
    with SKIP LOCKED), so an order placed now is not offered before one that waited.

    Errors propagate, so the consumer retries the batch and dead-letters what keeps failing;
    but a pass that fails for a reason of its own must not cost orders their events, so the
    batch is then applied without it and the matcher's loop offers the new jobs."""

    def __init__(self, settings: DispatchSettings, pool: Callable[[], asyncpg.Pool], loop: MatchingLoop) -> None:
        self.settings = settings
        self._pool = pool
        self._loop = loop

    async def __call__(self, batch: Batch) -> None:
        settings = self.settings
        matched: matching.MatchResult | None = None
        # Room for the whole batch's new jobs in one pass (with the backlog's oldest first).
        limit = max(settings.match_batch, len(batch))
        began = self._loop.pass_begins()
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                applied = await orders.apply_order_events(conn, settings, CONSUMER, batch)
                if applied.placed:
                    try:
                        matched = await matching.match_waiting(conn, settings, limit)
                    except Exception as exc:
                        if is_outage(exc):
                            raise
                        raise _MatchingFailed from exc  # the pass's own failure
        except _MatchingFailed as failed:
            log.error(
                "%s: matching new jobs failed (%s); applying the batch without it",
                *(CONSUMER, describe(failed.__cause__) if failed.__cause__ else "?"),
            )
            async with self._pool().acquire() as conn, conn.transaction():
                applied = await orders.apply_order_events(conn, settings, CONSUMER, batch)
        if matched is not None:
            self._loop.saw(began, matched)
        # The matcher's loop takes what this pass left: capacity a cancel gave back, or new
        # jobs when the pass failed or claimed all it could (a backlog may be waiting).
        if applied.freed or (applied.placed and (matched is None or matched.claimed >= limit)):
            self._loop.poke()


class _MatchingFailed(Exception):
    pass
