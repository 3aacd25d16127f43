"""Idempotent consumption: each event is applied at most once, and never a stale one.

Call `accept` inside the transaction that applies the event's effect. It records the
event id (`INSERT ... ON CONFLICT DO NOTHING`) and raises the subject's position to the
event's sequence; if either shows the event was seen or superseded, the caller skips it
and the transaction commits nothing of it.
"""

from __future__ import annotations

from enum import Enum

import asyncpg

from shared.events import Envelope


class Verdict(str, Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # this very event was applied before
    STALE = "stale"  # a later event of the same subject was applied already


async def accept(conn: asyncpg.Connection, consumer: str, topic: str, event: Envelope) -> Verdict:
    inserted = await conn.fetchval(
        """INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""", consumer, event.id)
    if not inserted:
        return Verdict.DUPLICATE
    moved = await conn.fetchval(
        """INSERT INTO inbox_positions AS p (consumer, topic, subject, sequence) VALUES ($1, $2, $3, $4)
           ON CONFLICT (consumer, topic, subject) DO UPDATE SET sequence = EXCLUDED.sequence
           WHERE p.sequence < EXCLUDED.sequence
           RETURNING true""", consumer, topic, event.subject, event.sequence)
    if not moved:
        return Verdict.STALE
    await conn.execute(
        """INSERT INTO inbox_applied AS a (consumer, event_type, applied) VALUES ($1, $2, 1)
           ON CONFLICT (consumer, event_type) DO UPDATE SET applied = a.applied + 1""",
        consumer, event.type)
    return Verdict.NEW
