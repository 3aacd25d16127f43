"""Idempotent consumption: each event is applied at most once, and never a stale one.

Call `accept` inside the transaction that applies the event's effect. It records the
event id (`INSERT ... ON CONFLICT DO NOTHING`) and raises the subject's position to the
event's sequence; if either shows the event was seen or superseded, the caller skips it
and the transaction commits nothing of it. `accept_many` does the same for a whole batch in
one statement (what the consumers use; `accept` is the rule spelled out, one event at a time).
`forget_before` prunes the ids and positions once nothing older can come back from Kafka (the
runtime of every service with consumers runs it hourly). `forget_consumer` forgets all
that one consumer recorded (a rebuild of its read model replays every event again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

import asyncpg

from shared.events import Envelope


class Verdict(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # this very event was applied before
    STALE = "stale"  # a later event of the same subject was applied already


async def accept(conn: asyncpg.Connection, consumer: str, topic: str, event: Envelope) -> Verdict:
    inserted = await conn.fetchval(
        """INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        consumer,
        event.id,
    )
    if not inserted:
        return Verdict.DUPLICATE
    moved = await conn.fetchval(
        """INSERT INTO inbox_positions AS p (consumer, topic, subject, sequence) VALUES ($1, $2, $3, $4)
           ON CONFLICT (consumer, topic, subject) DO UPDATE SET sequence = EXCLUDED.sequence
           WHERE p.sequence < EXCLUDED.sequence
           RETURNING true""",
        consumer,
        topic,
        event.subject,
        event.sequence,
    )
    if not moved:
        return Verdict.STALE
    await conn.execute(
        """INSERT INTO inbox_applied AS a (consumer, event_type, slot, applied)
           VALUES ($1, $2, pg_backend_pid(), 1)
           ON CONFLICT (consumer, event_type, slot) DO UPDATE SET applied = a.applied + 1""",
        consumer,
        event.type,
    )
    return Verdict.NEW


# A batch judged in one statement. Each event id is recorded (the first copy of an id that
# was not recorded before is "fresh"); each subject's position is locked, in a fixed order so
# that concurrent batches cannot deadlock, and raised to its highest fresh sequence, keeping
# the value it had (`previous`); a fresh event is new if its sequence is above both that
# value and every fresh sequence of its subject before it in the batch (which is what the
# position would be, applying the batch one event at a time); new events are counted, on
# this connection's own row (so that two batches of a consumer never wait for each other's
# count: migration 0003).
_ACCEPT_MANY = """WITH batch AS (
        SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[])
            WITH ORDINALITY AS b(id, t, s, seq, type, n)),
    fresh AS (
        INSERT INTO inbox (consumer, event_id) SELECT DISTINCT $1, id FROM batch ORDER BY 2
        ON CONFLICT DO NOTHING RETURNING event_id),
    firsts AS (
        SELECT DISTINCT ON (b.id) b.* FROM batch b JOIN fresh f ON f.event_id = b.id ORDER BY b.id, b.n),
    tops AS (SELECT t, s, max(seq) AS seq FROM firsts GROUP BY t, s),
    positions AS (
        INSERT INTO inbox_positions AS p (consumer, topic, subject, sequence, previous)
        SELECT $1, k.t, k.s, coalesce(tops.seq, 0), 0
        FROM (SELECT DISTINCT t, s FROM batch) k LEFT JOIN tops ON tops.t = k.t AND tops.s = k.s
        ORDER BY k.t, k.s
        ON CONFLICT (consumer, topic, subject) DO UPDATE
            SET previous = p.sequence, sequence = greatest(p.sequence, EXCLUDED.sequence)
        RETURNING p.topic, p.subject, p.previous),
    judged AS (
        SELECT f.n, f.type, f.seq > greatest(p.previous, coalesce(max(f.seq) OVER (
                   PARTITION BY f.t, f.s ORDER BY f.n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)) AS new
        FROM firsts f JOIN positions p ON p.topic = f.t AND p.subject = f.s),
    counted AS (
        INSERT INTO inbox_applied AS a (consumer, event_type, slot, applied)
        SELECT $1, type, pg_backend_pid(), count(*) FROM judged WHERE new GROUP BY type ORDER BY type
        ON CONFLICT (consumer, event_type, slot) DO UPDATE SET applied = a.applied + EXCLUDED.applied)
    SELECT n, new FROM judged"""


async def accept_many(conn: asyncpg.Connection, consumer: str, events: Sequence[tuple[str, Envelope]]) -> list[Verdict]:
    """`accept` for a whole batch in one statement (_ACCEPT_MANY) instead of three per event.

    Same verdicts as calling `accept` on each (topic, event) in order, in one transaction.
    """
    if not events:
        return []
    judged = {
        r["n"]: r["new"]
        for r in await conn.fetch(
            _ACCEPT_MANY,
            consumer,
            [e.id for _, e in events],
            [t for t, _ in events],
            [e.subject for _, e in events],
            [e.sequence for _, e in events],
            [e.type for _, e in events],
        )
    }
    return [
        Verdict.DUPLICATE if n not in judged else Verdict.NEW if judged[n] else Verdict.STALE
        for n in range(1, len(events) + 1)
    ]


async def forget_before(pool: asyncpg.Pool, before: datetime, *, chunk: int = 10_000) -> int:
    """Forget what every consumer recorded before `before`: the ids of the events received
    (`inbox`) and the positions of the subjects first seen (`inbox_positions`), a chunk per
    transaction; returns the count of rows.

    Safe once no event from before `before` can be delivered again, which is what the keep
    (GIAO_INBOX_KEEP_HOURS) must guarantee: longer than the topics' retention plus their
    segments' roll time (Kafka deletes a segment only when its newest record is past the
    retention). Then every event that can still come back was received after `before`, so its
    id is still here and it is refused as a duplicate; a subject's next new event simply starts
    a new position. Without this both tables grow by every event and every subject a service
    ever consumed. Rows another process is deleting are skipped, not waited for (two instances
    of a service prune the same tables, and a consumer's upsert never waits behind a prune for
    long)."""
    total = 0
    for statement in (_FORGET_IDS, _FORGET_POSITIONS):
        while True:
            deleted = await pool.fetchval(statement, before, chunk)
            total += deleted
            if deleted < chunk:
                break
    return total


_FORGET_IDS = """WITH old AS (SELECT consumer, event_id FROM inbox WHERE received_at < $1
                    LIMIT $2 FOR UPDATE SKIP LOCKED),
            gone AS (DELETE FROM inbox i USING old
                     WHERE i.consumer = old.consumer AND i.event_id = old.event_id RETURNING 1)
       SELECT count(*) FROM gone"""
_FORGET_POSITIONS = """WITH old AS (SELECT consumer, topic, subject FROM inbox_positions WHERE created_at < $1
                    LIMIT $2 FOR UPDATE SKIP LOCKED),
            gone AS (DELETE FROM inbox_positions p USING old
                     WHERE p.consumer = old.consumer AND p.topic = old.topic AND p.subject = old.subject
                     RETURNING 1)
       SELECT count(*) FROM gone"""


async def forget_consumer(conn: asyncpg.Connection, consumer: str) -> None:
    """Forget every event id, position and count `consumer` recorded, so that it applies the
    events again from scratch; run it in the transaction that empties what it applied them to."""
    await conn.execute("DELETE FROM inbox WHERE consumer = $1", consumer)
    await conn.execute("DELETE FROM inbox_positions WHERE consumer = $1", consumer)
    await conn.execute("DELETE FROM inbox_applied WHERE consumer = $1", consumer)
