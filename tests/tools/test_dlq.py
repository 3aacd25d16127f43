"""Dead letters listed and sent back (tools.dlq), through the real broker and PostgreSQL: an
order.placed a handler's bug dead-lettered is applied once the bug is gone and it is replayed,
and a second replay sends nothing."""

from __future__ import annotations

import asyncio

import pytest

from shared.events import ORDERS_TOPIC
from shared.inbox import Verdict, accept
from shared.service import Runtime
from shared.settings import CommonSettings
from tests.support import eventually, kafka_settings, produce
from tests.tracking.stories import Story
from tools import dlq


@pytest.fixture
async def consuming(infra, database, topic_prefix):
    """A consumer of giao.orders.v1 that applies each order.placed through its inbox, and fails,
    as a bug would, on the orders of `broken`."""
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix, shutdown_grace_s=5
    )
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=False)
    broken: set = set()

    async def handle(batch):
        async with rt.pool.acquire() as conn, conn.transaction():
            for topic, event in batch:
                if event.data.order_id in broken:
                    raise RuntimeError("a bug in the handler")
                if await accept(conn, "probe", topic, event) is Verdict.NEW:
                    await conn.execute("INSERT INTO applied VALUES ($1)", event.data.order_id)

    consumer = rt.consume(name="probe", topics=[ORDERS_TOPIC], handler=handle)
    await rt.start()
    await rt.pool.execute("CREATE TABLE applied (order_id uuid PRIMARY KEY)")
    yield settings, rt, consumer, broken
    await rt.stop()


async def test_a_dead_letter_replayed_after_the_fix_is_applied_once(consuming, infra, capsys):
    settings, rt, consumer, broken = consuming
    # The tool runs as the broker's admin, as an engineer would (docs/operations.md).
    tool = kafka_settings(infra.kafka_bootstrap).model_copy(update={"topic_prefix": settings.topic_prefix})
    assert await dlq.list_dead_letters(tool, ORDERS_TOPIC) == [] and await dlq.replay(tool, ORDERS_TOPIC) == 0
    stories = [Story(), Story(), Story()]
    placed = [s.order_placed()[1] for s in stories]
    broken.add(stories[1].order_id)
    await produce(
        infra.kafka_bootstrap,
        settings.topic(ORDERS_TOPIC),
        [(str(e.subject).encode(), e.model_dump_json().encode()) for e in placed],
    )

    async def applied() -> set:
        return {r["order_id"] for r in await rt.pool.fetch("SELECT order_id FROM applied")}

    async def the_others_applied() -> bool:
        return consumer.dead_lettered == 1 and await applied() == {stories[0].order_id, stories[2].order_id}

    await eventually(the_others_applied, timeout=30, what="the two good events applied, the third dead-lettered")
    [letter] = await dlq.list_dead_letters(tool, ORDERS_TOPIC)
    assert not letter.replayed and letter.key == str(stories[1].order_id).encode()
    assert letter.reason.startswith("handler failed: RuntimeError"), letter.reason
    assert letter.original.startswith(settings.topic(ORDERS_TOPIC) + "[")

    broken.clear()  # the fix is deployed
    assert await dlq.replay(tool, ORDERS_TOPIC) == 1

    async def all_applied() -> bool:
        return await applied() == {s.order_id for s in stories}

    await eventually(all_applied, timeout=30, what="the replayed order.placed applied")
    assert consumer.dead_lettered == 1
    [letter] = await dlq.list_dead_letters(tool, ORDERS_TOPIC)
    assert letter.replayed
    assert await dlq.replay(tool, ORDERS_TOPIC) == 0, "a dead letter is sent back once"

    capsys.readouterr()
    # The command line runs its own event loop: from a thread of its own here.
    assert await asyncio.to_thread(dlq.main, ["list", ORDERS_TOPIC], tool) == 0
    out = capsys.readouterr().out
    assert "replayed" in out and f"1 dead letters of {ORDERS_TOPIC}, 0 not replayed" in out
