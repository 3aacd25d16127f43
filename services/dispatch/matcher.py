"""The two background loops of a dispatch instance.

- matching: offers waiting orders to couriers. A new order is usually offered before this loop
  hears of it, by the same pass run in the orders consumer's transaction (handlers.py); this
  loop takes the rest. Poked in-process when this instance creates work (a courier online, an
  offer declined, an order the consumer's pass left), told when a courier's capacity comes
  back (it passes then only while jobs are postponed for want of a courier: see
  `capacity_appeared`), and passes at the latest when the next postponed order is due or
  `match_poll_s` passed. Each pass finds in the database where capacity appeared since the
  postponed jobs were last tried, whichever process it appeared in, so any instance (or a
  background process beside HTTP-only ones) serves them, oldest first.
- expiry: closes offers past their time (their orders go to the next courier) and expires
  orders past the dispatch window; it sleeps until the next deadline or `poll_s`.

Each pass is one transaction; jobs are claimed with FOR UPDATE SKIP LOCKED, so any number
of instances share the work without handing one job to two of them.

A process that serves HTTP only (settings.background false) runs neither loop: what its
couriers change, the matcher of a background process finds at its next poll (match_poll_s).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Protocol

import asyncpg

from shared.health import Count, CountsCollector

from . import store_matching
from .service.common import now_utc
from .service.expiry import expire_due
from .service.matching import MatchResult, match_waiting
from .settings import DispatchSettings


class WorkHints(Protocol):
    """What the HTTP routes tell the matcher of their process: something changed that may
    allow an offer."""

    def poke(self) -> None:
        """Jobs are due now (an offer declined, a courier online or off with offers withdrawn)."""

    def capacity_appeared(self) -> None:
        """A courier can take more than before (a delivery or a return)."""


class Matcher:
    def __init__(self, settings: DispatchSettings) -> None:
        self.settings = settings
        self._wake = asyncio.Event()
        self.offered = 0
        self.passes = 0  # matching passes finished (several run at once while a backlog lasts)
        self.offers_expired = 0
        self.orders_expired = 0
        # Whether jobs wait for want of a courier, as the passes saw (True until one ran), and
        # how many passes reported such jobs so far.
        self._waiting_for_capacity = True
        self._waiting_reports = 0

    def poke(self) -> None:
        """Jobs are due now: match now."""
        self._wake.set()

    def capacity_appeared(self) -> None:
        """Capacity that comes back serves only jobs postponed for want of a courier (new and
        due jobs have wake-ups of their own), so it wakes the loop only while the passes saw
        such jobs: a pass on every delivery, a transaction of four round trips, found nothing
        to do in a whole bench run. Jobs another instance postponed since are served by this
        loop's next timed pass (`match_poll_s`), which reads where capacity appeared from the
        database."""
        if self._waiting_for_capacity:
            self._wake.set()

    @property
    def waiting_for_capacity(self) -> bool:
        return self._waiting_for_capacity

    def pass_begins(self) -> int:
        """A mark, taken before a pass reads, to give back with what it found (`saw`)."""
        return self._waiting_reports

    def saw(self, began: int, *passes: MatchResult) -> None:
        """What passes (this loop's or the orders consumer's) found. Passes overlap: one that
        found nobody waiting says so only if no pass reported waiting jobs since it began
        (those may have been postponed after it read)."""
        if any(p.waiting_for_capacity for p in passes):
            self._waiting_for_capacity = True
            self._waiting_reports += 1
        elif began == self._waiting_reports:
            self._waiting_for_capacity = False

    def counts(self) -> CountsCollector:
        """What the loops did, for /metrics."""
        return CountsCollector(
            Count("dispatch_matcher_passes", "Passes of the matching loop", lambda: self.passes),
            Count(
                "dispatch_matcher_offers",
                "Offers the matching loop made (the orders consumer's own pass offers most new orders)",
                lambda: self.offered,
            ),
            Count("dispatch_offers_expired", "Offers closed unanswered past their time", lambda: self.offers_expired),
            Count(
                "dispatch_orders_expired", "Orders nobody took within the dispatch window", lambda: self.orders_expired
            ),
        )

    async def run_matching(self, pool: asyncpg.Pool) -> None:
        parallel = 1
        while True:
            self._wake.clear()
            # A pass is mostly waiting on round trips to PostgreSQL; while a backlog lasts
            # (a pass claimed a full batch), several passes run at once, each its own
            # transaction. They share the queue like instances do: jobs and couriers are
            # claimed with SKIP LOCKED, so no job is taken twice and nobody waits.
            began = self.pass_begins()
            results = await asyncio.gather(*(self._pass(pool) for _ in range(parallel)), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]  # after every pass ended (the loop is restarted by the runtime)
            passes = [r for r in results if not isinstance(r, BaseException)]
            self.saw(began, *passes)
            self.offered += sum(r.offered for r in passes)
            self.passes += len(passes)
            if any(r.claimed >= self.settings.match_batch for r in passes) and any(r.offered for r in passes):
                parallel = min(self.settings.match_workers, parallel * 2)
                continue  # more may be due right now (when nothing could be offered, wait for capacity)
            parallel = 1
            due = await store_matching.next_match_due(pool)
            await _wait(self._wake, _seconds_until(due, min(self.settings.poll_s, self.settings.match_poll_s)))

    async def _pass(self, pool: asyncpg.Pool) -> MatchResult:
        async with pool.acquire() as conn, conn.transaction():
            return await match_waiting(conn, self.settings)

    async def run_expiry(self, pool: asyncpg.Pool) -> None:
        limit = 500
        while True:
            async with pool.acquire() as conn, conn.transaction():
                result = await expire_due(conn, self.settings, limit=limit)
            self.offers_expired += result.offers_expired
            self.orders_expired += result.orders_expired
            if result.offers_expired or result.orders_expired:
                self.poke()  # capacity came back and the reopened jobs are due now
            if max(result.offers_expired, result.orders_expired) >= limit:
                continue
            await asyncio.sleep(_seconds_until(await store_matching.next_deadline(pool), self.settings.poll_s))


class NoMatcherHere:
    """WorkHints of a process without a matcher: there is nobody here to poke. What its
    couriers change is in the database, where a background process's matcher finds it."""

    def poke(self) -> None:
        pass

    def capacity_appeared(self) -> None:
        pass


def _seconds_until(when: datetime | None, at_most: float) -> float:
    if when is None:
        return at_most
    left = (when - now_utc()).total_seconds()
    return min(at_most, max(0.01, left + 0.005))


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
