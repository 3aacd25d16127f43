"""Transactional outbox: write events with the change, publish them after commit.

`add_event` runs inside the caller's transaction: the event row commits or rolls back
with the state change it describes, so no accepted change is ever without its event.
`OutboxRelay` publishes committed rows to Kafka in batches. Relays split the rows into
lanes by a hash of the key and hold a lane with a transaction-scoped advisory lock, so
two relays (two instances of a service) never publish the same row at once and events
of one subject leave in the order they were written; rows are claimed with
`FOR UPDATE SKIP LOCKED` and deleted in the transaction that published them. A crash
after publishing and before commit publishes those rows again: delivery is at-least-once
and consumers are idempotent (shared.inbox).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

import asyncpg

from shared.events import Envelope, Model, type_name

log = logging.getLogger(__name__)

LANES = 16
_LANE_LOCK_BASE = 0x6714_1000
NOTIFY_CHANNEL = "giao_outbox"


def lane_of(key: str) -> int:
    return zlib.crc32(key.encode()) % LANES


async def add_event(conn: asyncpg.Connection, event_cls: type[Envelope], *, subject: str,
                    data: Model | dict, source: str, topic: str | None = None,
                    occurred_at: datetime | None = None) -> Envelope:
    """Write one event in the caller's transaction, with the next sequence of its subject.

    `topic` defaults to the event type's own; pass the prefixed name when topics are prefixed.
    """
    topic = topic or event_cls.topic
    sequence = await conn.fetchval(
        """INSERT INTO event_sequences (topic, subject, last) VALUES ($1, $2, 1)
           ON CONFLICT (topic, subject) DO UPDATE SET last = event_sequences.last + 1
           RETURNING last""", topic, subject)
    event = event_cls(id=uuid4(), type=type_name(event_cls), source=source, subject=subject,
                      sequence=sequence, occurred_at=occurred_at or datetime.now(timezone.utc),
                      data=data)
    await conn.execute(
        """INSERT INTO outbox (topic, key, lane, event_type, payload) VALUES ($1, $2, $3, $4, $5)""",
        topic, subject, lane_of(subject), event.type, event.model_dump_json().encode())
    # Delivered at commit; PostgreSQL folds repeats within one transaction into one.
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return event


# publish(topic, key, payload, headers) -> a future that resolves when Kafka has the record
Publish = Callable[[str, bytes, bytes, dict[str, str]], Awaitable[Awaitable[Any]]]


class OutboxRelay:
    """Publishes committed outbox rows; one per service process, woken by LISTEN/NOTIFY."""

    def __init__(self, pool: asyncpg.Pool, publish: Publish, *, batch_size: int = 500,
                 idle_poll_s: float = 1.0) -> None:
        self._pool = pool
        self._publish = publish
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s  # safety net should a notification be missed
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._listener: asyncpg.Connection | None = None
        self.published = 0

    async def start(self) -> None:
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Publish what is committed now, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task
        if self._listener:
            await self._listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await self._pool.release(self._listener)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                published = await self.drain_once()
                backoff = 0.1
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any outage
                log.warning("outbox relay: %r; retrying in %.1fs", exc, backoff)
                if self._stopping:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if self._stopping and published == 0:
                return
            if published == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._idle_poll_s)
                except asyncio.TimeoutError:
                    pass

    async def drain_once(self) -> int:
        """Publish one batch from every lane that has rows and no other relay; returns the count."""
        async with self._pool.acquire() as conn:
            lanes = [r["lane"] for r in await conn.fetch("SELECT DISTINCT lane FROM outbox")]
        counts = await asyncio.gather(*(self._drain_lane(lane) for lane in lanes))
        return sum(counts)

    async def _drain_lane(self, lane: int) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LANE_LOCK_BASE + lane):
                return 0  # another relay owns this lane right now
            rows = await conn.fetch(
                """SELECT id, topic, key, event_type, payload FROM outbox WHERE lane = $1
                   ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED""", lane, self._batch_size)
            if not rows:
                return 0
            pending = [await self._publish(r["topic"], r["key"].encode(), r["payload"],
                                           {"content-type": "application/json", "event-type": r["event_type"]})
                       for r in rows]
            await asyncio.gather(*pending)  # every record acknowledged by Kafka (acks=all)
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
            by_type = Counter(r["event_type"] for r in rows)
            await conn.executemany(
                """INSERT INTO outbox_published (event_type, published) VALUES ($1, $2)
                   ON CONFLICT (event_type) DO UPDATE SET published = outbox_published.published + $2""",
                sorted(by_type.items()))
        self.published += len(rows)
        return len(rows)
