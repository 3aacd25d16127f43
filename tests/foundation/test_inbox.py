"""The inbox against real PostgreSQL: a batch gets the verdicts one event at a time would."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import yaml

from shared.db import create_pool, migrate
from shared.events import ORDERS_TOPIC, OrderCancelRequested, new_event
from shared.inbox import Verdict, accept, accept_many, forget_before
from shared.settings import CommonSettings
from tests.conftest import ROOT
from tests.support import eventually


def _event(subject: str, sequence: int, event_id: uuid.UUID | None = None):
    return new_event(
        OrderCancelRequested,
        subject=subject,
        sequence=sequence,
        source="orders",
        data={"order_id": subject, "reason": f"#{sequence}"},
        id=event_id,
    )


async def test_a_batch_gets_the_verdicts_of_one_event_at_a_time(database):
    pool = await create_pool(database, max_size=2)
    try:
        await migrate(pool)
        a, b, c = (str(uuid.uuid4()) for _ in range(3))
        a1, a3 = _event(a, 1), _event(a, 3)
        earlier = [(ORDERS_TOPIC, _event(c, 5))]  # c is already at 5
        batch = [
            (ORDERS_TOPIC, e)
            for e in (
                a1,
                a1,  # the same event twice in one batch
                a3,
                _event(a, 2),  # 2 after 3: stale
                _event(b, 1),  # a subject never seen
                _event(c, 4),
                _event(c, 6),
            )
        ]  # behind, then ahead of what was applied before
        for consumer in ("one-at-a-time", "batch"):
            async with pool.acquire() as conn, conn.transaction():
                await accept_many(conn, consumer, earlier)
        async with pool.acquire() as conn, conn.transaction():
            one_by_one = [await accept(conn, "one-at-a-time", topic, e) for topic, e in batch]
        async with pool.acquire() as conn, conn.transaction():
            together = await accept_many(conn, "batch", batch)
        N, D, S = Verdict.NEW, Verdict.DUPLICATE, Verdict.STALE
        assert one_by_one == [N, D, N, S, N, S, N]
        assert together == one_by_one
        rows = await pool.fetch("SELECT consumer, subject, sequence FROM inbox_positions ORDER BY consumer, subject")
        by_consumer = {(r["consumer"], r["subject"]): r["sequence"] for r in rows}
        for consumer in ("one-at-a-time", "batch"):
            assert [by_consumer[(consumer, s)] for s in (a, b, c)] == [3, 1, 6]
        applied = await pool.fetch(
            "SELECT consumer, sum(applied)::int AS applied FROM inbox_applied GROUP BY 1 ORDER BY 1"
        )
        assert [(r["consumer"], r["applied"]) for r in applied] == [("batch", 5), ("one-at-a-time", 5)]
        async with pool.acquire() as conn, conn.transaction():  # the whole batch again: nothing new
            assert await accept_many(conn, "batch", batch) == [S, S, D, S, D, S, D]
        rows = await pool.fetch("SELECT subject, sequence FROM inbox_positions WHERE consumer = 'batch'")
        assert sorted(r["sequence"] for r in rows) == [1, 3, 6]
    finally:
        await pool.close()


async def test_a_batch_waiting_on_another_s_subject_judges_by_what_that_one_committed(database):
    pool = await create_pool(database, max_size=3)
    try:
        await migrate(pool)
        subject = str(uuid.uuid4())
        first, second, third = (_event(subject, n) for n in (1, 2, 3))
        async with pool.acquire() as a, pool.acquire() as b:
            tx_a = a.transaction()
            await tx_a.start()
            assert await accept_many(a, "racing", [(ORDERS_TOPIC, second)]) == [Verdict.NEW]
            # b's batch locks the same (new, uncommitted) position: it waits for a's commit
            waiting = asyncio.create_task(_in_transaction(b, [(ORDERS_TOPIC, first), (ORDERS_TOPIC, third)]))
            await eventually(lambda: _waits_on_a_lock(pool, b.get_server_pid()), what="b waiting on a's lock")
            assert not waiting.done()
            await tx_a.commit()
            assert await asyncio.wait_for(waiting, 10) == [Verdict.STALE, Verdict.NEW]
        row = await pool.fetchrow("SELECT sequence FROM inbox_positions WHERE consumer = 'racing'")
        assert row["sequence"] == 3
    finally:
        await pool.close()


async def _waits_on_a_lock(pool, pid: int) -> bool:
    return await pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid)


async def _in_transaction(conn, batch):
    async with conn.transaction():
        return await accept_many(conn, "racing", batch)


async def test_a_copy_delivered_again_is_known_by_its_sequence_without_its_id(database):
    # A relay that crashed after publishing and before its commit publishes the same rows
    # again, with the same sequences (fixed when the event was written): the position refuses
    # them. An event with another id but a sequence the position reached is refused as well.
    pool = await create_pool(database, max_size=2)
    try:
        await migrate(pool)
        subject = str(uuid.uuid4())
        first, second = _event(subject, 1), _event(subject, 2)
        async with pool.acquire() as conn, conn.transaction():
            assert await accept_many(conn, "c", [(ORDERS_TOPIC, first), (ORDERS_TOPIC, second)]) == [
                Verdict.NEW,
                Verdict.NEW,
            ]
        async with pool.acquire() as conn, conn.transaction():
            assert await accept_many(
                conn, "c", [(ORDERS_TOPIC, first), (ORDERS_TOPIC, second), (ORDERS_TOPIC, _event(subject, 2))]
            ) == [Verdict.STALE, Verdict.DUPLICATE, Verdict.DUPLICATE]
        applied = await pool.fetchval("SELECT sum(applied)::int FROM inbox_applied WHERE consumer = 'c'")
        assert applied == 2
    finally:
        await pool.close()


async def test_forgetting_old_positions_keeps_those_in_use_and_a_subject_starts_afresh(database):
    pool = await create_pool(database, max_size=2)
    try:
        await migrate(pool)
        gone, busy, kept = (str(uuid.uuid4()) for _ in range(3))
        async with pool.acquire() as conn, conn.transaction():
            assert (
                await accept_many(conn, "first", [(ORDERS_TOPIC, _event(s, 1)) for s in (gone, busy, kept)])
                == [Verdict.NEW] * 3
            )
        # `gone` had its first and last events nine days ago; `busy` was first seen nine days
        # ago and has had events since (a courier's locations); `kept` is recent.
        await pool.execute(
            """UPDATE inbox_positions SET created_at = now() - interval '9 days',
                      last_seen_at = CASE WHEN subject = $1 THEN now() - interval '9 days' ELSE now() END
               WHERE subject = ANY($2::text[])""",
            gone,
            [gone, busy],
        )
        week_ago = datetime.now(UTC) - timedelta(days=8)
        assert await forget_before(pool, week_ago, chunk=1) == 1
        assert await forget_before(pool, week_ago) == 0
        assert sorted(await pool.fetchval("SELECT array_agg(subject) FROM inbox_positions")) == sorted([busy, kept])
        async with pool.acquire() as conn, conn.transaction():
            assert await accept_many(
                conn,
                "first",
                [
                    (ORDERS_TOPIC, _event(gone, 2)),  # the forgotten subject's next event starts a new position
                    (ORDERS_TOPIC, _event(busy, 1)),  # a position in use still refuses what it has seen
                    (ORDERS_TOPIC, _event(kept, 1)),
                ],
            ) == [Verdict.NEW, Verdict.DUPLICATE, Verdict.DUPLICATE]
        assert await pool.fetchval("SELECT sequence FROM inbox_positions WHERE subject = $1", gone) == 2
    finally:
        await pool.close()


def _kafka_hours(properties: str) -> tuple[float, float]:
    conf = dict(line.split("=", 1) for line in properties.splitlines() if "=" in line and not line.startswith("#"))
    return float(conf["log.retention.hours"]), float(conf.get("log.roll.hours", 168))


def test_no_event_outlives_what_the_inbox_keeps():
    # An event can be delivered again until its segment is deleted: the retention after the
    # segment's newest record, which can be a whole roll younger than its oldest.
    keep = CommonSettings().inbox_keep_hours
    retention, roll = _kafka_hours((ROOT / "deploy/local/kafka/server.properties.in").read_text())
    assert retention + roll <= keep, (retention, roll, keep)
    kafka = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["kafka"]["environment"]
    assert float(kafka["KAFKA_LOG_RETENTION_HOURS"]) + float(kafka.get("KAFKA_LOG_ROLL_HOURS", 168)) <= keep
