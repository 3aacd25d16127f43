"""Transactional outbox: write events with the change, publish them after commit.

`add_event` runs inside the caller's transaction: the event row commits or rolls back
with the state change it describes, so no accepted change is ever without its event.
`OutboxRelay` publishes committed rows to Kafka in batches. Writing an event hints the
relays of this process that rows are coming; a relay looks again shortly after, then less
and less often (every `idle_poll_s` at most), so a row written by another process is not
missed. (No NOTIFY: PostgreSQL serializes the commits of notifying transactions on one
cluster-wide lock, and under load commits queued behind it.) Relays split the rows into
lanes by a hash of the key and hold a lane with a transaction-scoped advisory lock, so
two relays (two instances of a service) never publish the same row at once and events
of one subject leave in the order they were written; rows are claimed with
`FOR UPDATE SKIP LOCKED` and deleted in the transaction that published them. A crash
after publishing and before commit publishes those rows again: delivery is at-least-once
and consumers are idempotent (shared.inbox).

Sequences: each (topic, subject) has a row in event_sequences holding its last sequence,
taken and raised in the statement that writes the event, except the event that opens a
subject (shared.events: Envelope.opens_subject, written once as the subject comes to be):
it is sequence 1 with no row, and the subject's next event makes the row at 2. An order's
two opening events then write no sequence row: one row per order cancelled, not two per
order placed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg

from shared.errors import describe
from shared.events import OPENED_TOPICS, Envelope, EventData, type_name

log = logging.getLogger(__name__)

LANES = 16
_LANE_LOCK_BASE = 0x6714_1000


def lane_of(key: str) -> int:
    return zlib.crc32(key.encode()) % LANES


_SEQUENCE_PLACEHOLDER = b'"sequence":1,'
# Next sequence of the subject and the outbox row with it, in one statement; a subject
# without a row starts at $7 (2 where an opening event, with no row, was its 1).
_ADD_EVENT = """
    WITH seq AS (
        INSERT INTO event_sequences (topic, subject, last) VALUES ($1, $2, $7::bigint)
        ON CONFLICT (topic, subject) DO UPDATE SET last = event_sequences.last + 1
        RETURNING last),
    ins AS (
        INSERT INTO outbox (topic, key, lane, event_type, payload)
        SELECT $1::text, $2::text, $3::smallint, $4::text,
               $5::bytea || convert_to(last::text, 'UTF8') || $6::bytea FROM seq)
    SELECT last FROM seq"""


async def add_event(
    conn: asyncpg.Connection,
    event_cls: type[Envelope],
    *,
    subject: str,
    data: EventData,
    source: str,
    topic: str | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Write one event in the caller's transaction, with the next sequence of its subject.

    `topic` defaults to the event type's own; pass the prefixed name when topics are prefixed.
    """
    if event_cls.opens_subject:
        raise ValueError(f"{type_name(event_cls)} opens its subject: write it with opening_event_columns")
    topic = topic or event_cls.topic
    event, head, tail = _draft(event_cls, subject, data, source, occurred_at)
    first = 2 if event_cls.topic in OPENED_TOPICS else 1
    sequence = await conn.fetchval(  # one round trip
        _ADD_EVENT, topic, subject, lane_of(subject), event.type, head, tail, first
    )
    _hint_relays()
    if sequence != 1:
        event = event.model_copy(update={"sequence": sequence})
    return event


# An event that goes with a change in the same statement, written if and only if the CTE the
# statement names `changed` returned a row: a courier's step is then one statement, atomic
# on its own, with no BEGIN and COMMIT round trips around it. Parameters $1..$6 are the
# event's (event_args); the statement's own start at $7.
EVENT_IF_CHANGED = """
    event_seq AS (
        INSERT INTO event_sequences (topic, subject, last)
        SELECT $1::text, $2::text, 1 WHERE EXISTS (SELECT FROM changed)
        ON CONFLICT (topic, subject) DO UPDATE SET last = event_sequences.last + 1
        RETURNING last),
    event_row AS (
        INSERT INTO outbox (topic, key, lane, event_type, payload)
        SELECT $1::text, $2::text, $3::smallint, $4::text,
               $5::bytea || convert_to(last::text, 'UTF8') || $6::bytea FROM event_seq)"""


def event_args(
    event_cls: type[Envelope], *, subject: str, data: EventData, source: str, topic: str | None = None
) -> list[Any]:
    """The six parameters of EVENT_IF_CHANGED for this event."""
    _numbered_from_one(event_cls)
    event, head, tail = _draft(event_cls, subject, data, source, None)
    _hint_relays()
    return [topic or event_cls.topic, subject, lane_of(subject), event.type, head, tail]


def events_from(rows: str) -> str:
    """CTEs that write many events of distinct subjects within a statement of the caller's (ON
    CONFLICT may touch a sequence row only once per statement): `rows` names a CTE with the
    columns of event_columns (t, s, lane, type, head, tail) and n, the order the rows enter
    the outbox in. Begins with a comma-free CTE; put it after the caller's own CTEs."""
    return f"""
    event_seq AS (
        INSERT INTO event_sequences (topic, subject, last)
        SELECT t, s, 1 FROM {rows}
        ON CONFLICT (topic, subject) DO UPDATE SET last = event_sequences.last + 1
        RETURNING topic, subject, last),
    event_rows AS (
        INSERT INTO outbox (topic, key, lane, event_type, payload)
        SELECT e.t, e.s, e.lane, e.type, e.head || convert_to(q.last::text, 'UTF8') || e.tail
        FROM {rows} e JOIN event_seq q ON q.topic = e.t AND q.subject = e.s
        ORDER BY e.n)"""


# Parameter types of event_columns' lists, in order.
EVENT_COLUMN_TYPES = ("text[]", "text[]", "smallint[]", "text[]", "bytea[]", "bytea[]")

_ADD_EVENTS = (
    """
    WITH k AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::text[], $5::bytea[], $6::bytea[])
             WITH ORDINALITY AS k(t, s, lane, type, head, tail, n)),"""
    + events_from("k")
    + """
    SELECT count(*) FROM event_seq"""
)


def event_columns(
    events: list[tuple[type[Envelope], str, EventData]],
    *,
    source: str,
    topic: Callable[[type[Envelope]], str] | None = None,
) -> list[list[Any]]:
    """Six lists (topic, subject, lane, type, head, tail) for events_from, each event
    (class, subject, data); `topic` maps an event class to its (prefixed) topic name."""
    columns: list[list[Any]] = [[], [], [], [], [], []]
    for event_cls, subject, data in events:
        _numbered_from_one(event_cls)
        event, head, tail = _draft(event_cls, subject, data, source, None)
        values = (topic(event_cls) if topic else event_cls.topic, subject, lane_of(subject), event.type, head, tail)
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    if events:
        _hint_relays()
    return columns


def _numbered_from_one(event_cls: type[Envelope]) -> None:
    """events_from and EVENT_IF_CHANGED start a subject's row at 1: not for a topic whose
    subjects an opening event began (its 1 has no row), nor for an opening event itself."""
    if event_cls.topic in OPENED_TOPICS:
        raise ValueError(f"events of {event_cls.topic} are written with add_event or opening_event_columns")


# Parameter types of opening_event_columns' lists, in order.
OPENING_EVENT_COLUMN_TYPES = ("text[]", "text[]", "smallint[]", "text[]", "bytea[]")


def opening_event_columns(
    events: list[tuple[type[Envelope], str, EventData]],
    *,
    source: str,
    topic: Callable[[type[Envelope]], str] | None = None,
) -> list[list[Any]]:
    """Five lists (topic, subject, lane, type, payload) for opening_events_from: events that
    open their subjects (Envelope.opens_subject), each (class, subject, data), sequence 1. The
    caller's statement writes them only when it creates the subject (an order's insert)."""
    columns: list[list[Any]] = [[], [], [], [], []]
    for event_cls, subject, data in events:
        if not event_cls.opens_subject:
            raise ValueError(f"{type_name(event_cls)} does not open its subject")
        event, head, tail = _draft(event_cls, subject, data, source, None)
        values = (topic(event_cls) if topic else event_cls.topic, subject, lane_of(subject), event.type)
        for column, value in zip(columns, (*values, head + b"1" + tail), strict=True):
            column.append(value)
    if events:
        _hint_relays()
    return columns


def opening_events_from(rows: str) -> str:
    """A CTE writing the opening events of `rows`, a CTE with the columns of
    opening_event_columns (t, s, lane, type, payload) and n, their order: no sequence rows."""
    return f"""
    event_rows AS (
        INSERT INTO outbox (topic, key, lane, event_type, payload)
        SELECT t, s, lane, type, payload FROM {rows} ORDER BY n)"""


def _draft(
    event_cls: type[Envelope], subject: str, data: EventData, source: str, occurred_at: datetime | None
) -> tuple[Envelope, bytes, bytes]:
    """The envelope with a placeholder sequence, serialized and cut around it: the statement
    joins the two halves around the sequence it assigns (the envelope's own "sequence" key
    comes before "data", and inside a JSON string a quote is escaped, so the first
    occurrence of the placeholder is the envelope's)."""
    event = event_cls(
        id=uuid4(),
        type=type_name(event_cls),
        source=source,
        subject=subject,
        sequence=1,
        occurred_at=occurred_at or datetime.now(UTC),
        data=data,
    )
    payload = event.model_dump_json().encode()
    at = payload.index(_SEQUENCE_PLACEHOLDER) + len(_SEQUENCE_PLACEHOLDER) - 2
    return event, payload[:at], payload[at + 1 :]


async def add_events(
    conn: asyncpg.Connection,
    events: list[tuple[type[Envelope], str, EventData]],
    *,
    source: str,
    topic: Callable[[type[Envelope]], str] | None = None,
) -> None:
    """Write several events, each (class, subject, data), in the caller's transaction with one
    round trip. Subjects repeating within a topic go out in separate statements, in order.
    `topic` maps an event class to its (prefixed) topic name; default: the class's own."""
    first: list[tuple[type[Envelope], str, EventData]] = []
    rest: list[tuple[type[Envelope], str, EventData]] = []
    seen: set[tuple[str, str]] = set()
    for event_cls, subject, data in events:
        name = topic(event_cls) if topic else event_cls.topic
        if (name, subject) in seen or rest:
            rest.append((event_cls, subject, data))
            continue
        seen.add((name, subject))
        first.append((event_cls, subject, data))
    if first:
        await conn.fetchval(_ADD_EVENTS, *event_columns(first, source=source, topic=topic))
    if rest:
        await add_events(conn, rest, source=source, topic=topic)


# The relays running in this process (a test may run several). Writers hint them before
# their transaction commits: a relay then looks at once and, finding the rows not yet
# committed, again after 10, 20, 40 ... ms.
_relays: weakref.WeakSet[OutboxRelay] = weakref.WeakSet()


def _hint_relays() -> None:
    for relay in list(_relays):
        relay.hint()


# publish(topic, key, payload, headers) -> a future that resolves when Kafka has the record
Publish = Callable[[str, bytes, bytes, dict[str, str]], Awaitable[Awaitable[Any]]]


# One drain's rows, oldest first, from the lanes no other relay holds (each held by its
# advisory lock until the commit), deleted and counted as published.
#
# Every read goes through an index, by lane or by id: the outbox is a queue, each row written
# and deleted within moments, so between autovacuum's visits (a minute apart by default) the
# table is mostly dead rows. A sequential scan reads them all, and the planner chose one for
# each of the drain's three reads once the table had grown (orders' outbox mid-run at 152
# orders/s: 24 rows and 10,460 dead ones in 872 pages, a drain 22 ms). An index scan steps over
# their entries, which the first scan that finds a row dead to every transaction marks. (A long
# transaction that keeps rows visible keeps their entries unmarked: then each index scan visits
# every such row, dearer than a sequential scan, 7-10 ms against 3-4 for 10,000 of them in
# docs/performance.md; ending that transaction is the remedy, docs/operations.md.) The pending
# lanes are probed one by one (`pending`, materialized so that no lane is locked before it is
# known to have rows), each held lane gives its oldest rows by (lane, id), and the rows are
# locked and deleted by id. Public: a test EXPLAINs it to prove that no read of it scans the
# table.
DRAIN = f"""WITH pending AS MATERIALIZED (
        SELECT l.lane FROM generate_series(0, {LANES - 1}) AS l(lane)
        WHERE EXISTS (SELECT FROM outbox o WHERE o.lane = l.lane)),
    lanes AS (SELECT lane FROM pending WHERE pg_try_advisory_xact_lock($1::bigint + lane)),
    oldest AS (
        SELECT o.id FROM lanes CROSS JOIN LATERAL (
            SELECT id FROM outbox WHERE outbox.lane = lanes.lane ORDER BY id LIMIT $2) o
        ORDER BY o.id LIMIT $2),
    picked AS (
        SELECT id FROM outbox WHERE id = ANY (ARRAY(SELECT id FROM oldest)) FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM outbox o WHERE o.id = ANY (ARRAY(SELECT id FROM picked))
        RETURNING o.id, o.topic, o.key, o.event_type, o.payload),
    counted AS (
        INSERT INTO outbox_published AS p (event_type, published)
        SELECT event_type, count(*) FROM gone GROUP BY event_type
        ON CONFLICT (event_type) DO UPDATE SET published = p.published + EXCLUDED.published)
    SELECT * FROM gone ORDER BY id"""


class OutboxRelay:
    """Publishes committed outbox rows; one per service process (see the module docstring)."""

    FIRST_RECHECK_S = 0.01

    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Publish,
        *,
        batch_size: int = 500,
        idle_poll_s: float = 1.0,
        linger_s: float = 0.03,
        on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._publish = publish
        self._on_failure = on_failure  # e.g. make a new Kafka producer (shared.kafka_clients.RelayProducer)
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s  # the longest a row written elsewhere waits
        # Woken, wait this long before draining: commits that follow within it share the batch
        # (one transaction and one produce request instead of one per commit). Under load it
        # paces the drains, one per linger and drain: 30 ms rather than 10 cost each event
        # ~10 ms and saved 4.9% of the CPU per order (docs/performance.md, ten pairs at 152/s).
        self._linger_s = linger_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.drains = 0  # drain_once calls finished, empty ones included

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="outbox-relay")
        _relays.add(self)

    def hint(self) -> None:
        """Rows are being written in this process."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:  # a relay of another event loop (another test) is left alone
            self._wake.set()

    async def stop(self) -> None:
        """Publish what is committed now, then stop."""
        _relays.discard(self)
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        backoff = 0.1
        recheck: float | None = None  # while writes may still be committing: look again this soon
        while True:
            # Cleared before the drain reads, so a write hinted while it runs wakes the next one.
            self._wake.clear()
            try:
                published = await self.drain_once()
                backoff = 0.1
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any outage
                log.warning("outbox relay: %s; retrying in %.1fs", describe(exc), backoff)
                if self._stopping:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                try:
                    if self._on_failure is not None:
                        await self._on_failure(exc)
                except Exception as again:  # noqa: BLE001 - still down: the next round tries again
                    log.warning("outbox relay: recovering: %s", describe(again))
                continue
            if self._stopping:
                if published == 0:
                    return
                continue  # publish everything committed before stopping
            if published >= self._batch_size:
                continue  # more may be waiting right now
            if published:
                recheck = self.FIRST_RECHECK_S
            elif recheck is not None:
                recheck = recheck * 2 if recheck * 2 < self._idle_poll_s else None
            try:
                await asyncio.wait_for(self._wake.wait(), recheck or self._idle_poll_s)
            except TimeoutError:
                continue
            recheck = self.FIRST_RECHECK_S
            if self._linger_s:
                await asyncio.sleep(self._linger_s)

    async def drain_once(self) -> int:
        """Publish one batch from the lanes that have rows and no other relay; returns the count.

        One transaction for all the lanes this relay can take (each held by its advisory lock
        until the commit): one statement per batch (DRAIN) and the publishing.
        Rows go out in id order, so each lane's rows leave in the order they were written.
        """
        try:
            return await self._drain()
        finally:
            self.drains += 1

    async def _drain(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            # The lanes, their rows and the published counts in one statement: the rows are
            # deleted here and published before the COMMIT, which a failed publish never
            # reaches (the rows stay). Three round trips with BEGIN and COMMIT instead of
            # five, on a loop that also serves HTTP. The lanes' locks are taken after the
            # statement's snapshot: a row another relay published and deleted meanwhile is
            # skipped by FOR UPDATE, and a lane's newer rows wait for the next drain.
            rows = await conn.fetch(DRAIN, _LANE_LOCK_BASE, self._batch_size)
            if not rows:
                return 0  # nothing pending, or other relays own every pending lane now
            pending = [
                await self._publish(
                    r["topic"],
                    r["key"].encode(),
                    r["payload"],
                    {"content-type": "application/json", "event-type": r["event_type"]},
                )
                for r in rows
            ]
            await asyncio.gather(*pending)  # every record acknowledged by Kafka (acks=all)
        self.published += len(rows)
        return len(rows)
