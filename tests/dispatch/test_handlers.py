"""The orders consumer's handler on a real database: new orders are offered in the transaction
that records them, and a failing matcher pass costs no order its event."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import pytest

from services.dispatch.handlers import OrderEvents
from services.dispatch.service import matching
from services.dispatch.store import COURIER_JOBS_CHANNEL
from tests.dispatch.support import HA_LONG, Order
from tests.support import eventually, statements_run


def placed(order: Order) -> list:
    event = order.placed_event()
    return [(event.topic, event)]


@pytest.fixture
async def quiet(start):
    """A dispatch whose matcher loop sleeps (a minute between looks) unless poked: what the
    handler does not do itself stays undone, and the handler below pokes nobody."""
    d = await start(poll_s=60, match_poll_s=60)
    loop = Loop()
    return d, OrderEvents(d.settings, lambda: d.pool, loop), loop


@dataclass
class Loop:
    """What the handler tells the matcher's loop: pokes, and what its passes found."""

    pokes: list[int] = field(default_factory=list)
    seen: list[matching.MatchResult] = field(default_factory=list)

    def poke(self) -> None:
        self.pokes.append(1)

    def pass_begins(self) -> int:
        return len(self.seen)

    def saw(self, began: int, *passes: matching.MatchResult) -> None:
        self.seen.extend(passes)


async def test_a_new_order_is_offered_before_its_batch_commits(quiet):
    d, handle, loop = quiet
    courier = await d.new_courier()
    first, second = Order(), Order()
    await handle(placed(first) + placed(second))
    assert [await d.job_status(o.id) for o in (first, second)] == ["offered", "offered"]
    assert {j["order_id"] for j in await d.jobs(courier)} == {first.id, second.id}
    assert loop.pokes == [], "nothing left for the matcher's loop"
    assert [p.waiting_for_capacity for p in loop.seen] == [False]


async def test_an_order_nobody_can_take_is_postponed_for_the_matcher_s_loop(quiet):
    d, handle, loop = quiet
    order = Order()
    await handle(placed(order))
    attempts = await d.pool.fetchval("SELECT match_attempts FROM jobs WHERE order_id = $1::uuid", order.id)
    assert (await d.job_status(order.id), attempts, loop.pokes) == ("waiting", 1, [])
    assert [p.waiting_for_capacity for p in loop.seen] == [True], "capacity that comes back is for it"


async def test_a_pass_reserves_its_couriers_in_its_last_statement_before_the_commit(quiet, monkeypatch):
    """The reservation locks the chosen couriers' rows until the pass commits, and a courier's
    delivery waits for that lock: so whom the pass cannot serve is postponed before it, and the
    couriers' streams are told within it. A statement after it would keep the couriers waiting
    for one more round trip on the consumer's busy event loop."""
    d, handle, _ = quiet
    courier = await d.new_courier()  # a motorbike: three units
    statements: list[str] = []
    real_pass = matching.match_waiting

    async def recorded(conn, *args, **kwargs):
        async with statements_run(conn) as ran:
            result = await real_pass(conn, *args, **kwargs)
        statements.extend(ran)
        return result

    monkeypatch.setattr(matching, "match_waiting", recorded)
    heard: list[str] = []
    listener = await asyncpg.connect(d.settings.database_url)
    await listener.add_listener(COURIER_JOBS_CHANNEL, lambda _c, _p, _ch, payload: heard.append(payload))
    try:
        near = [Order() for _ in range(4)]  # four orders for three units
        far = Order(pickup=(HA_LONG[0] + 1.0, HA_LONG[1]))  # 110 km north: nobody within reach
        await handle([event for order in [*near, far] for event in placed(order)])
        statuses = sorted([await d.job_status(o.id) for o in near])
        assert (statuses, await d.job_status(far.id)) == (["offered"] * 3 + ["waiting"], "waiting")

        reservations = [i for i, q in enumerate(statements) if "UPDATE couriers" in q]
        postponements = [i for i, q in enumerate(statements) if "SET next_match_at" in q]
        assert reservations == [len(statements) - 1], statements
        assert len(postponements) == 1 and postponements[0] < reservations[0], statements

        async def told() -> bool:
            return bool(heard)

        await eventually(told, what="the courier's stream told")
        assert heard == [courier.id]
    finally:
        await listener.close()


async def test_a_failing_pass_leaves_the_new_jobs_to_the_matcher_s_loop(quiet, monkeypatch):
    d, handle, loop = quiet
    await d.new_courier()

    async def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug in matching")

    monkeypatch.setattr(matching, "match_waiting", broken)
    order = Order()
    await handle(placed(order))  # does not raise
    assert (await d.job_status(order.id), loop.pokes) == ("waiting", [1])


async def test_an_outage_during_the_pass_fails_the_batch_for_the_consumer_to_retry(quiet, monkeypatch):
    d, handle, loop = quiet

    async def deadlocked(*args, **kwargs):
        raise asyncpg.DeadlockDetectedError("deadlock detected")

    monkeypatch.setattr(matching, "match_waiting", deadlocked)
    order = Order()
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await handle(placed(order))
    assert (await d.job_status(order.id), loop.pokes) == (None, []), "rolled back, to be applied again"
