"""The two background loops of a dispatch instance.

- matching: offers waiting orders to couriers. Woken in-process when this instance creates
  work (a new order, capacity freed, a courier online: waiting jobs are shared by all
  instances, so the instance where work appears can serve it), and at the latest when the
  next postponed order is due or `poll_s` passed.
- expiry: closes offers past their time (their orders go to the next courier) and expires
  orders past the dispatch window; it sleeps until the next deadline or `poll_s`.

Each pass is one transaction; jobs are claimed with FOR UPDATE SKIP LOCKED, so any number
of instances share the work without handing one job to two of them.

A process that serves HTTP only (settings.background false) runs neither loop: its
`DatabaseWake` marks the waiting jobs near capacity it freed as due, and the matcher of a
background process finds them at its next poll (match_poll_s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

import asyncpg

from . import service_layer, store
from .settings import DispatchSettings

log = logging.getLogger(__name__)


class WorkHints(Protocol):
    """What the HTTP routes tell the matcher about work they created."""

    def poke(self) -> None: ...

    def capacity_freed(self, cells: Iterable[int | None]) -> None: ...

    def new_work(self, work: service_layer.NewWork) -> None: ...


class Matcher:
    def __init__(self, settings: DispatchSettings) -> None:
        self.settings = settings
        self._wake = asyncio.Event()
        self._freed: dict[int, int] = {}  # coarse cell -> units of capacity freed there
        self.offered = 0
        self.offers_expired = 0
        self.orders_expired = 0

    def poke(self) -> None:
        """Something changed that may allow an offer: match now."""
        self._wake.set()

    def capacity_freed(self, cells: Iterable[int | None]) -> None:
        """Capacity came free (a unit per cell given): jobs waiting near there are tried now."""
        for cell in cells:
            if cell is not None:
                self._freed[cell] = self._freed.get(cell, 0) + 1
        self._wake.set()

    def new_work(self, work: service_layer.NewWork) -> None:
        self.capacity_freed(work.freed_cells)

    async def run_matching(self, pool: asyncpg.Pool) -> None:
        parallel = 1
        while True:
            self._wake.clear()
            freed, self._freed = self._freed, {}
            # A pass is mostly waiting on round trips to PostgreSQL; while a backlog lasts
            # (a pass claimed a full batch), several passes run at once, each its own
            # transaction. They share the queue like instances do: jobs and couriers are
            # claimed with SKIP LOCKED, so no job is taken twice and nobody waits.
            results = await asyncio.gather(*(self._pass(pool, freed if i == 0 else None)
                                             for i in range(parallel)), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]  # after every pass ended (the loop is restarted by the runtime)
            self.offered += sum(r.offered for r in results)
            if any(r.claimed >= self.settings.match_batch for r in results):
                parallel = min(self.settings.match_workers, parallel * 2)
                continue  # more may be due right now
            parallel = 1
            due = await store.next_match_due(pool)
            await _wait(self._wake, _seconds_until(due, min(self.settings.poll_s, self.settings.match_poll_s)))

    async def _pass(self, pool: asyncpg.Pool, freed: dict[int, int] | None) -> service_layer.MatchResult:
        async with pool.acquire() as conn, conn.transaction():
            return await service_layer.match_waiting(conn, self.settings, freed)

    async def run_expiry(self, pool: asyncpg.Pool) -> None:
        limit = 500
        while True:
            async with pool.acquire() as conn, conn.transaction():
                result = await service_layer.expire_due(conn, self.settings, limit=limit)
            self.offers_expired += result.offers_expired
            self.orders_expired += result.orders_expired
            if result.offers_expired or result.orders_expired:
                self.capacity_freed(result.freed_cells)  # and the reopened jobs are due now
            if max(result.offers_expired, result.orders_expired) >= limit:
                continue
            await asyncio.sleep(_seconds_until(await store.next_deadline(pool), self.settings.poll_s))


class DatabaseWake:
    """WorkHints for a process that runs no matcher: capacity freed here makes the waiting jobs
    near it due in the database, first in the matcher's queue (jobs a decline or an expiry
    reopened are due already).

    What frees up within FLUSH_S goes out in one statement, as the matcher's own pass takes it
    all at once: one per delivery was the biggest statement in PostgreSQL under a backlog (each
    looks through the waiting jobs of the area). Fire and forget: should it fail, the jobs' own
    backoff still has them tried again."""

    FLUSH_S = 0.02

    def __init__(self, settings: DispatchSettings, pool: Callable[[], asyncpg.Pool]) -> None:
        self.settings = settings
        self._pool = pool
        self._freed: Counter[int] = Counter()
        self._flushing: asyncio.Task | None = None
        self.woken = 0

    def poke(self) -> None:
        pass

    def capacity_freed(self, cells: Iterable[int | None]) -> None:
        self._freed.update(cell for cell in cells if cell is not None)
        if self._freed and self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())

    def new_work(self, work: service_layer.NewWork) -> None:
        self.capacity_freed(work.freed_cells)

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(self.FLUSH_S)
            freed, self._freed = dict(self._freed), Counter()
            self.woken += await service_layer.wake_waiting_near(self._pool(), self.settings, freed)
        except asyncio.CancelledError:  # shutting down
            self._flushing = None
            raise
        except Exception as exc:  # noqa: BLE001 - a hint; the backoff covers for it
            log.warning("waking waiting jobs near freed capacity: %r", exc)
        self._flushing = None
        if self._freed:  # freed while the statement ran
            self._flushing = asyncio.create_task(self._flush())


def _seconds_until(when: datetime | None, at_most: float) -> float:
    if when is None:
        return at_most
    left = (when - service_layer.now_utc()).total_seconds()
    return min(at_most, max(0.01, left + 0.005))


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
