"""The handlers against the real database, called directly with batches as the consumer
hands them over: batch semantics (one write per parcel per batch), and the inbox's
set-based accept_many agreeing with accept event by event."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from services.tracking import store
from services.tracking.handlers import Projection
from shared.db import create_pool, migrate
from shared.inbox import accept, accept_many
from tests.tracking.stories import Story

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "tracking" / "migrations"


@pytest.fixture
async def pool(database):
    pool = await create_pool(database, min_size=1, max_size=4)
    await migrate(pool, MIGRATIONS)
    yield pool
    await pool.close()


async def versions(pool) -> dict:
    return {r["tracking_code"]: r["version"] for r in await pool.fetch("SELECT tracking_code, version FROM parcels")}


async def test_a_location_batch_is_one_write_per_parcel_with_the_latest_point(pool):
    projection = Projection(lambda: pool)
    stories = [Story() for _ in range(30)]
    await projection.on_status_events([e for s in stories for e in (s.placed(), s.assigned(), s.picked_up())])
    assert set((await versions(pool)).values()) == {1}, "three events of a parcel in one batch: one write"

    pings = [s.location(20.90 + k / 1000, 107.0 + i / 1000) for k in range(5) for i, s in enumerate(stories)]
    random.Random(7).shuffle(pings)  # the newest point wins by sequence, not by arrival
    pings += [Story().location(21.5, 107.5)]  # a parcel tracking does not know: ignored
    await projection.on_locations(pings)
    assert set((await versions(pool)).values()) == {2}, "150 pings: one write per parcel"
    for s in stories:
        parcel = await store.find_by_code(pool, s.code)
        assert parcel.location.lat == pytest.approx(20.904) and parcel.location.sequence == 5

    stale = [s.location(0, 0) for s in stories[:1]]  # sequence 6 of stories[0]
    older = stale[0][1].model_copy(update={"sequence": 3})
    await projection.on_locations([(stale[0][0], older)])
    assert (await store.find_by_code(pool, stories[0].code)).location.lat == pytest.approx(20.904)


async def test_status_batch_with_duplicates_and_stale_events_in_one_batch(pool):
    projection = Projection(lambda: pool)
    s = Story()
    placed, assigned, picked, delivered = s.placed(), s.assigned(), s.picked_up(), s.delivered()
    await projection.on_status_events([assigned, placed, assigned, picked, assigned, delivered, picked])
    parcel = await store.find_by_code(pool, s.code)
    assert parcel.status == "delivered" and [st.status for st in parcel.timeline] == [
        "placed",
        "assigned",
        "picked_up",
        "delivered",
    ]
    assert parcel.version == 1
    await projection.on_status_events([placed, assigned, picked])
    assert (await store.find_by_code(pool, s.code)).version == 1, "a batch of duplicates writes nothing"


async def test_accept_many_agrees_with_accept(pool):
    """A random at-least-once stream over a few subjects and two topics: same verdicts."""
    rng = random.Random(11)
    stories = [Story() for _ in range(4)]
    events = [
        e for s in stories for e in (s.placed(), s.assigned(), s.picked_up(), s.cancel_requested(), s.delivered())
    ]
    stream = [rng.choice(events) for _ in range(120)]
    async with pool.acquire() as conn:
        expected = []
        async with conn.transaction():
            for topic, event in stream:
                expected.append(await accept(conn, "one-by-one", topic, event))
            one_by_one = await conn.fetch(
                "SELECT topic, subject, sequence FROM inbox_positions WHERE consumer = 'one-by-one' ORDER BY 1, 2"
            )
            counts = await conn.fetch(
                "SELECT event_type, sum(applied)::int FROM inbox_applied "
                "WHERE consumer = 'one-by-one' GROUP BY 1 ORDER BY 1"
            )
        got = []
        for start in range(0, len(stream), 25):  # in batches, each its own transaction
            async with conn.transaction():
                got += await accept_many(conn, "batched", stream[start : start + 25])
        assert got == expected
        assert (
            await conn.fetch(
                "SELECT topic, subject, sequence FROM inbox_positions WHERE consumer = 'batched' ORDER BY 1, 2"
            )
            == one_by_one
        )
        assert (
            await conn.fetch(
                "SELECT event_type, sum(applied)::int FROM inbox_applied "
                "WHERE consumer = 'batched' GROUP BY 1 ORDER BY 1"
            )
            == counts
        )
        assert await accept_many(conn, "batched", []) == []
