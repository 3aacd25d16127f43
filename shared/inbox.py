"""Idempotent consumption: each event is applied at most once, and never a stale one.

Every event carries its subject's `sequence`, which rises by one per subject within its topic
and is fixed when the event is first written (shared.outbox), so a copy delivered again has
the same one. A consumer keeps, per subject, the highest sequence it has seen (its
position): an event is new when its sequence is above it, a duplicate when equal (the last
one again), stale when below (superseded, or an older copy). Call `accept` inside the
transaction that applies the event's effect: it moves the position with the effect, and the
caller skips what is not new. `accept_many` does the same for a whole batch in one statement
(what the consumers use; `accept` is the rule spelled out, one event at a time).
`forget_before` prunes positions once nothing of their subject can come back from Kafka (the
runtime of every service with consumers runs it hourly). `forget_consumer` forgets all that
one consumer recorded (a rebuild of its read model replays every event again).

Positions alone decide, without a table of event ids: the ids said again what the sequences
say, at two B-tree inserts per event consumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

import asyncpg

from shared.events import Envelope


class Verdict(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # the subject's latest event, again
    STALE = "stale"  # behind the subject's latest event: superseded, or an older copy


async def accept(conn: asyncpg.Connection, consumer: str, topic: str, event: Envelope) -> Verdict:
    previous = await conn.fetchval(
        """INSERT INTO inbox_positions AS p (consumer, topic, subject, sequence) VALUES ($1, $2, $3, $4)
           ON CONFLICT (consumer, topic, subject) DO UPDATE
               SET previous = p.sequence, sequence = greatest(p.sequence, EXCLUDED.sequence), last_seen_at = now()
           RETURNING previous""",
        consumer,
        topic,
        event.subject,
        event.sequence,
    )
    if event.sequence == previous:
        return Verdict.DUPLICATE
    if event.sequence < previous:
        return Verdict.STALE
    await conn.execute(
        """INSERT INTO inbox_applied AS a (consumer, event_type, slot, applied)
           VALUES ($1, $2, pg_backend_pid(), 1)
           ON CONFLICT (consumer, event_type, slot) DO UPDATE SET applied = a.applied + 1""",
        consumer,
        event.type,
    )
    return Verdict.NEW


# A batch judged in one statement. Each subject's position is locked, in a fixed order so that
# concurrent batches cannot deadlock, and raised to the highest sequence of the batch, keeping
# the value it had (`previous`); an event is new if its sequence is above both that value and
# every sequence of its subject before it in the batch (which is what the position would be,
# applying the batch one event at a time), a duplicate if equal to the higher of them; new
# events are counted, on this connection's own row (so that two batches of a consumer never
# wait for each other's count: migration 0003).
_ACCEPT_MANY = """WITH batch AS (
        SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[])
            WITH ORDINALITY AS b(t, s, seq, type, n)),
    positions AS (
        INSERT INTO inbox_positions AS p (consumer, topic, subject, sequence)
        SELECT $1, t, s, max(seq) FROM batch GROUP BY t, s ORDER BY t, s
        ON CONFLICT (consumer, topic, subject) DO UPDATE
            SET previous = p.sequence, sequence = greatest(p.sequence, EXCLUDED.sequence), last_seen_at = now()
        RETURNING p.topic, p.subject, p.previous),
    judged AS (
        SELECT b.n, b.type, b.seq, greatest(p.previous, coalesce(max(b.seq) OVER (
                   PARTITION BY b.t, b.s ORDER BY b.n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)) AS reached
        FROM batch b JOIN positions p ON p.topic = b.t AND p.subject = b.s),
    counted AS (
        INSERT INTO inbox_applied AS a (consumer, event_type, slot, applied)
        SELECT $1, type, pg_backend_pid(), count(*) FROM judged WHERE seq > reached GROUP BY type ORDER BY type
        ON CONFLICT (consumer, event_type, slot) DO UPDATE SET applied = a.applied + EXCLUDED.applied)
    SELECT n, seq - reached AS ahead FROM judged"""


async def accept_many(conn: asyncpg.Connection, consumer: str, events: Sequence[tuple[str, Envelope]]) -> list[Verdict]:
    """`accept` for a whole batch in one statement (_ACCEPT_MANY) instead of three per event.

    Same verdicts as calling `accept` on each (topic, event) in order, in one transaction.
    """
    if not events:
        return []
    ahead = {
        r["n"]: r["ahead"]
        for r in await conn.fetch(
            _ACCEPT_MANY,
            consumer,
            [t for t, _ in events],
            [e.subject for _, e in events],
            [e.sequence for _, e in events],
            [e.type for _, e in events],
        )
    }
    return [
        Verdict.NEW if ahead[n] > 0 else Verdict.DUPLICATE if ahead[n] == 0 else Verdict.STALE
        for n in range(1, len(events) + 1)
    ]


async def forget_before(pool: asyncpg.Pool, before: datetime, *, chunk: int = 10_000) -> int:
    """Forget the positions of subjects whose first and last events both came before `before`,
    a chunk per transaction; returns the count of rows.

    Safe once no event received before `before` can be delivered again, which is what the keep
    (GIAO_INBOX_KEEP_HOURS) must guarantee: longer than the topics' retention plus their
    segments' roll time (Kafka deletes a segment only when its newest record is past the
    retention). Every event of a forgotten subject was received before `before`, so none can
    come back; its next event, if it ever has one, simply starts a new position. A subject
    that still has events (a courier's locations, say) keeps its position however old its
    first event. Without this the table grows by every subject a service ever consumed.
    Rows another process is deleting are skipped, not waited for (two instances of a service
    prune the same table, and a consumer's upsert never waits behind a prune for long)."""
    total = 0
    while True:
        deleted: int = await pool.fetchval(_FORGET_POSITIONS, before, chunk)
        total += deleted
        if deleted < chunk:
            return total


# created_at finds the candidates by its BRIN index; last_seen_at keeps those still in use.
_FORGET_POSITIONS = """WITH old AS (SELECT consumer, topic, subject FROM inbox_positions
                    WHERE created_at < $1 AND last_seen_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED),
            gone AS (DELETE FROM inbox_positions p USING old
                     WHERE p.consumer = old.consumer AND p.topic = old.topic AND p.subject = old.subject
                     RETURNING 1)
       SELECT count(*) FROM gone"""


async def forget_consumer(conn: asyncpg.Connection, consumer: str) -> None:
    """Forget every position and count `consumer` recorded, so that it applies the events
    again from scratch; run it in the transaction that empties what it applied them to."""
    await conn.execute("DELETE FROM inbox_positions WHERE consumer = $1", consumer)
    await conn.execute("DELETE FROM inbox_applied WHERE consumer = $1", consumer)
