"""A courier's offers and jobs as they change, for their Server-Sent Events stream: fed by
shared.live's change feed of courier ids (at commit: offers made, in the matcher's reservation
statement, store_matching._OFFER; offers withdrawn or expired and jobs cancelled,
store.notify_couriers; on whichever instance), one LISTEN connection per process.

A courier's own steps notify nothing: the answer of the step carries the job. The stream gives
the list as GET /v1/courier/jobs does: the current one on connect, then each different one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from uuid import UUID

import asyncpg

from shared.live import ChangeFeed, FeedStreams, Slot

from . import store


def change_feed(dsn: str, pool: Callable[[], asyncpg.Pool]) -> ChangeFeed[list[store.Job]]:
    """The offers and jobs of the watched couriers (keys: their ids as text)."""

    async def read(pool: asyncpg.Pool, courier_ids: list[str]) -> Iterable[tuple[str, list[store.Job]]]:
        found = await store.jobs_of_couriers(pool, [UUID(c) for c in courier_ids])
        return [(str(c), jobs) for c, jobs in found.items()]

    return ChangeFeed(dsn, pool, channel=store.COURIER_JOBS_CHANNEL, read=read)


class CourierStreams(FeedStreams[list[store.Job]]):
    """The couriers' open streams in this process (a few per courier: a phone that reconnects
    before its old stream timed out), and what each one sends."""

    async def jobs(
        self, slot: Slot, courier_id: UUID, signed_in: Callable[[], Awaitable[bool]]
    ) -> AsyncIterator[list[store.Job]]:
        """The courier's offers and jobs now, then each time others changed them, while
        `signed_in` (a token revoked meanwhile gets nothing more); it ends after max_stream_s
        (the client reconnects). Its end releases `slot`."""
        try:
            # Watch first, then read: no change can fall between the two.
            with self._feed.watch(str(courier_id)) as watcher:
                current = await store.courier_jobs(self._pool(), courier_id)
                deadline = time.monotonic() + self._max_stream_s
                yield current
                while (fresh := await watcher.next(timeout=deadline - time.monotonic())) is not None:
                    if fresh != current:
                        if not await signed_in():
                            return
                        current = fresh
                        yield current
        finally:
            slot.release()
