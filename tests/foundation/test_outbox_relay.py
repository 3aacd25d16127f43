"""The outbox relay against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict

import orjson
import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from shared.db import create_pool, migrate
from shared.events import DISPATCH_TOPIC, CancelRefused, OrderCancelRequested, OrderTrackable
from shared.kafka_clients import RelayProducer
from shared.outbox import (
    DRAIN,
    OutboxRelay,
    add_event,
    add_events,
    event_args,
    event_columns,
    lane_of,
    opening_event_columns,
)
from shared.settings import CommonSettings
from tests.support import eventually, plans_of, read_topic


async def _write_events(pool, topic: str, subjects: list[str], per_subject: int) -> None:
    # Interleaved subjects, each in its own transaction, as many requests would write them.
    for i in range(per_subject):
        for s in subjects:
            async with pool.acquire() as conn, conn.transaction():
                await add_event(
                    conn,
                    CancelRefused,
                    subject=s,
                    source="dispatch",
                    topic=topic,
                    data={"order_id": s, "reason": f"#{i}"},
                )


@pytest.fixture
async def setup(infra, database, topic_prefix):
    settings = CommonSettings(kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix)
    pool = await create_pool(database, max_size=10)
    await migrate(pool)
    producers = [RelayProducer(settings, client_id=f"relay-{i}") for i in range(2)]
    for p in producers:
        await p.start()
    yield settings, pool, producers
    for p in producers:
        await p.stop()
    await pool.close()


async def test_two_racing_relays_publish_each_row_once_in_subject_order(setup, infra):
    settings, pool, producers = setup
    topic = settings.topic(DISPATCH_TOPIC)
    subjects = [str(uuid.uuid4()) for _ in range(20)]
    await _write_events(pool, topic, subjects, per_subject=10)
    relays = [OutboxRelay(pool, b.publish, batch_size=7) for b in producers]

    # Both relays drain the same table at once, over and over, until it is empty.
    async def drain(relay):
        while await pool.fetchval("SELECT count(*) FROM outbox"):
            await relay.drain_once()

    await asyncio.gather(*(drain(r) for r in relays))

    records = await read_topic(infra.kafka_bootstrap, topic, at_least=200)
    ids = [orjson.loads(r.value)["id"] for r in records]
    assert len(ids) == 200 and len(set(ids)) == 200, "every row exactly once"
    assert sum(r.published for r in relays) == 200
    assert all(r.published > 0 for r in relays), "both relays did part of the work"
    seqs = defaultdict(list)
    for r in records:
        event = orjson.loads(r.value)
        assert r.key.decode() == event["subject"]
        seqs[event["subject"]].append(event["sequence"])
    assert all(s == list(range(1, 11)) for s in seqs.values()), "per-subject order kept"
    assert (
        await pool.fetchval("SELECT published FROM outbox_published WHERE event_type = 'delivery.cancel_refused'")
        == 200
    )


async def test_a_drain_reads_through_indexes_however_many_dead_rows_the_outbox_holds(setup, infra):
    """Published rows are deleted, and stay in the table as dead rows until autovacuum comes:
    a drain that scanned the table would read all of them, every time (shared.outbox.DRAIN)."""
    settings, pool, producers = setup
    topic = settings.topic(DISPATCH_TOPIC)
    # What a minute between autovacuum's visits leaves at 150 orders/s: 18,000 rows written
    # and deleted, the newest 10 still waiting.
    await pool.execute(
        """INSERT INTO outbox (topic, key, lane, event_type, payload)
           SELECT $1, s::text, (s % 16)::smallint, 'delivery.cancel_refused', convert_to(repeat('x', 600), 'UTF8')
           FROM generate_series(1, 18010) s""",
        topic,
    )
    await pool.execute("DELETE FROM outbox WHERE id <= (SELECT max(id) - 10 FROM outbox)")
    async with pool.acquire() as conn:
        plans = await plans_of(conn, DRAIN, 0, 500)
    for plan, nodes in plans.items():
        reads = [(n["Node Type"], n.get("Relation Name")) for n in nodes]
        assert ("Seq Scan", "outbox") not in reads, f"{plan}: {reads}"
    assert await OutboxRelay(pool, producers[0].publish).drain_once() == 10
    assert await _outbox_empty(pool)
    assert len(await read_topic(infra.kafka_bootstrap, topic, at_least=10)) == 10


async def test_rows_left_by_a_crash_before_commit_are_published_after_restart(setup, infra):
    settings, pool, producers = setup
    topic = settings.topic(DISPATCH_TOPIC)
    subject = str(uuid.uuid4())
    await _write_events(pool, topic, [subject], per_subject=3)

    class Crash(Exception):
        pass

    async def publish_then_crash(*args):
        future = await producers[0].publish(*args)
        await future
        raise Crash  # the process dies after Kafka has the record, before the delete commits

    with pytest.raises(Crash):
        await OutboxRelay(pool, publish_then_crash).drain_once()
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 3, "the claim was rolled back"

    restarted = OutboxRelay(pool, producers[1].publish)
    await restarted.start()
    try:
        await eventually(lambda: _outbox_empty(pool), what="outbox drained after restart")
    finally:
        await restarted.stop()
    records = await read_topic(infra.kafka_bootstrap, topic, at_least=3)
    sequences = [orjson.loads(r.value)["sequence"] for r in records]
    # At-least-once: the first event went out before the crash and again after it.
    assert sorted(set(sequences)) == [1, 2, 3]
    assert Counter(sequences)[1] == 2


async def test_a_write_in_this_process_wakes_the_relay(setup, infra):
    settings, pool, producers = setup
    topic = settings.topic(DISPATCH_TOPIC)
    relay = OutboxRelay(pool, producers[0].publish, idle_poll_s=60)
    relay.FIRST_RECHECK_S = 30  # no polling or re-check to help: only the hint can wake it in time
    await relay.start()
    try:

        async def idle():
            return relay.drains >= 1  # its first (empty) drain is done: it waits now

        await eventually(idle, timeout=5, what="the relay's first drain")
        await _write_events(pool, topic, [str(uuid.uuid4())], per_subject=1)
        await eventually(lambda: _outbox_empty(pool), timeout=5, what="relay woken by the write")
    finally:
        await relay.stop()
    assert len(await read_topic(infra.kafka_bootstrap, topic, at_least=1)) == 1


async def test_a_row_written_elsewhere_is_published_by_the_idle_poll(setup, infra):
    settings, pool, producers = setup
    topic = settings.topic(DISPATCH_TOPIC)
    relay = OutboxRelay(pool, producers[0].publish, idle_poll_s=0.5)
    relay.FIRST_RECHECK_S = 30  # only the idle poll looks again
    await relay.start()
    try:

        async def idle():
            return relay.drains >= 1

        await eventually(idle, timeout=5, what="the relay's first drain")
        # As another process would write it: no hint reaches this relay.
        subject = str(uuid.uuid4())
        await pool.execute(
            """INSERT INTO outbox (topic, key, lane, event_type, payload) VALUES ($1, $2, $3, $4, $5)""",
            topic,
            subject,
            lane_of(subject),
            "delivery.cancel_refused",
            orjson.dumps({"id": str(uuid.uuid4()), "subject": subject}),
        )
        await eventually(lambda: _outbox_empty(pool), timeout=5, what="relay's idle poll")
    finally:
        await relay.stop()


async def _outbox_empty(pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_kafka_error_makes_a_new_producer_and_the_relay_goes_on(setup, infra):
    settings, pool, producers = setup
    topic = settings.topic(DISPATCH_TOPIC)
    await _write_events(pool, topic, [str(uuid.uuid4())], per_subject=2)
    producer = producers[0]
    broken = {"left": 1, "resets": 0}

    async def publish(*args):
        if broken["left"]:
            broken["left"] -= 1
            raise OutOfOrderSequenceNumber()  # what a broker restart left the producer with
        return await producer.publish(*args)

    async def reset(exc):
        broken["resets"] += 1
        await producer.reset(exc)

    relay = OutboxRelay(pool, publish, on_failure=reset)
    await relay.start()
    try:
        await eventually(lambda: _outbox_empty(pool), timeout=10, what="the relay to go on after the error")
    finally:
        await relay.stop()
    assert broken["resets"] == 1
    assert len(await read_topic(infra.kafka_bootstrap, topic, at_least=2)) == 2


async def test_add_events_writes_many_in_order_with_each_subjects_next_sequence(setup, infra):
    settings, pool, producers = setup
    topic = settings.topic(DISPATCH_TOPIC)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    async with pool.acquire() as conn, conn.transaction():
        await add_event(
            conn, CancelRefused, subject=a, source="dispatch", topic=topic, data={"order_id": a, "reason": "first"}
        )
        # b, a, then a again: the repeat cannot share the statement, and still comes after
        await add_events(
            conn,
            [(CancelRefused, s, {"order_id": s, "reason": r}) for s, r in ((b, "b1"), (a, "a2"), (a, "a3"), (b, "b2"))],
            source="dispatch",
            topic=lambda cls: settings.topic(cls.topic),
        )
    async with pool.acquire() as conn, conn.transaction():
        await add_events(conn, [], source="dispatch")  # nothing to write is fine
    rows = await pool.fetch("SELECT key, payload FROM outbox ORDER BY id")
    written = [orjson.loads(r["payload"]) for r in rows]
    assert [(e["data"]["reason"], e["sequence"]) for e in written] == [
        ("first", 1),
        ("b1", 1),
        ("a2", 2),
        ("a3", 3),
        ("b2", 2),
    ], "in the order given"
    assert [r["key"] for r in rows] == [e["subject"] for e in written]
    await OutboxRelay(pool, producers[0].publish).drain_once()
    records = await read_topic(infra.kafka_bootstrap, topic, at_least=5)
    assert sorted(orjson.loads(r.value)["id"] for r in records) == sorted(e["id"] for e in written)


def test_no_writer_numbers_an_opened_subject_from_one():
    """An order's subjects begin with a sequence 1 that has no row (shared.outbox): a writer
    that would start their row at 1 again, or open a subject with an event that does not, is
    refused before anything is written."""
    s = str(uuid.uuid4())
    with pytest.raises(ValueError, match=r"giao\.orders\.v1"):
        event_columns([(OrderCancelRequested, s, {"order_id": s, "reason": None})], source="orders")
    with pytest.raises(ValueError, match=r"giao\.order-tracking\.v1"):
        trackable = {
            "order_id": s,
            "tracking_code": "GA1234567",
            "dropoff": {"lat": 21.0, "lng": 107.0},
            "distance_m": 1,
        }
        event_args(OrderTrackable, subject=s, data=trackable, source="orders")
    with pytest.raises(ValueError, match="does not open"):
        opening_event_columns([(CancelRefused, s, {"order_id": s, "reason": "picked up"})], source="dispatch")
