"""Consuming through the real broker: duplicates applied once, poison to the DLQ, the consumer goes on."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.db import create_pool, migrate
from shared.events import ORDERS_TOPIC, OrderCancelRequested, dlq_topic, new_event
from shared.inbox import Verdict, accept
from shared.kafka import EventConsumer, next_records
from shared.kafka_clients import Kafka, connection, existing_partitions
from shared.service import Runtime
from shared.settings import CommonSettings
from tests.support import eventually, kafka_settings, produce, read_topic


@pytest.fixture
async def runtime(infra, database, topic_prefix):
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix, shutdown_grace_s=5
    )
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=False)
    applied: list[str] = []
    failures = {"explode": 0}

    async def handle(batch):
        async with rt.pool.acquire() as conn, conn.transaction():
            for topic, event in batch:
                if event.data.reason == "explode":
                    failures["explode"] += 1
                    raise ValueError("this event always breaks the handler")
                if await accept(conn, "probe", topic, event) is Verdict.NEW:
                    await conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id uuid, reason text)")
                    await conn.execute("INSERT INTO effects VALUES ($1, $2)", event.id, event.data.reason)
        applied.extend(e.data.reason or "" for _, e in batch)

    consumer = rt.consume(name="probe", topics=[ORDERS_TOPIC], handler=handle, ignore=["order.placed"])
    await rt.start()
    yield settings, rt, consumer, failures
    await rt.stop()


def _cancel(subject: str, seq: int, reason: str, id=None):
    return new_event(
        OrderCancelRequested,
        subject=subject,
        sequence=seq,
        source="orders",
        data={"order_id": subject, "reason": reason},
        id=id,
    )


async def _effects(rt) -> list[str]:
    exists = await rt.pool.fetchval("SELECT to_regclass('effects') IS NOT NULL")
    return [r["reason"] for r in await rt.pool.fetch("SELECT reason FROM effects ORDER BY reason")] if exists else []


async def test_duplicate_and_stale_deliveries_are_applied_once(runtime, infra):
    settings, rt, _, _ = runtime
    subject = str(uuid.uuid4())
    first, second = _cancel(subject, 1, "a"), _cancel(subject, 2, "b")
    values = [first, first, second, _cancel(subject, 1, "stale")]  # a redelivery, then an old sequence
    await produce(
        infra.kafka_bootstrap,
        settings.topic(ORDERS_TOPIC),
        [(subject.encode(), e.model_dump_json().encode()) for e in values],
    )
    await eventually(lambda: _effects_equal(rt, ["a", "b"]), what="a and b applied")
    counts = await rt.pool.fetch("SELECT event_type, sum(applied)::int AS applied FROM inbox_applied GROUP BY 1")
    assert [(r["event_type"], r["applied"]) for r in counts] == [("order.cancel_requested", 2)]


async def _effects_equal(rt, expected):
    return await _effects(rt) == expected


async def test_poison_messages_go_to_the_dlq_and_the_next_message_is_handled(runtime, infra):
    settings, rt, consumer, failures = runtime
    topic = settings.topic(ORDERS_TOPIC)
    subject = str(uuid.uuid4())
    wrong_version = orjson.loads(_cancel(subject, 1, "x").model_dump_json()) | {"version": 2}
    unknown_type = orjson.loads(_cancel(subject, 1, "x").model_dump_json()) | {"type": "order.teleported"}
    poison = [
        b"{not json",
        orjson.dumps(wrong_version),
        orjson.dumps(unknown_type),
        b"x" * (300 * 1024),  # oversized
        _cancel(subject, 1, "explode").model_dump_json().encode(),  # valid, but the handler always fails
    ]
    after = _cancel(subject, 2, "after the poison")
    await produce(
        infra.kafka_bootstrap,
        topic,
        [(subject.encode(), v) for v in poison] + [(subject.encode(), after.model_dump_json().encode())],
    )

    await eventually(lambda: _effects_equal(rt, ["after the poison"]), what="the next message handled")
    dead = await read_topic(infra.kafka_bootstrap, dlq_topic(topic), at_least=5)
    reasons = [dict(r.headers)["x-error"].decode() for r in dead]
    assert len(dead) == 5
    assert reasons[0].startswith("invalid event") and reasons[3].startswith("too large")
    assert "version" in reasons[1]
    assert "order.teleported" in reasons[2]
    assert reasons[4].startswith("handler failed") and failures["explode"] >= 3
    assert all(dict(r.headers)["x-original-topic"].decode() == topic for r in dead)
    assert consumer.dead_lettered == 5


async def test_ignored_event_types_are_passed_over_unread_by_their_header(runtime, infra):
    settings, rt, consumer, _ = runtime
    topic = settings.topic(ORDERS_TOPIC)
    subject = str(uuid.uuid4())
    # Not even valid JSON: read, it would be dead-lettered; its header says it is not wanted here.
    await produce(
        infra.kafka_bootstrap, topic, [(subject.encode(), b"{not json")], headers=[("event-type", b"order.placed")]
    )
    after = _cancel(subject, 1, "after the ignored one")
    await produce(
        infra.kafka_bootstrap,
        topic,
        [(subject.encode(), after.model_dump_json().encode())],
        headers=[("event-type", b"order.cancel_requested")],
    )
    await eventually(lambda: _effects_equal(rt, ["after the ignored one"]), what="the next event handled")
    assert (consumer.ignored, consumer.dead_lettered) == (1, 0)


def _first_dead_letter_lost(consumer) -> list[int]:
    """Kafka is down for the consumer's first dead letter only; returns the offsets tried."""
    send_dead_letter, attempts = consumer.dead_letter, []

    async def kafka_down_at_first(record, reason):
        attempts.append(record.offset)
        if len(attempts) == 1:
            raise ConnectionError("the dead letter could not be sent")
        await send_dead_letter(record, reason)

    consumer.dead_letter = kafka_down_at_first
    return attempts


async def test_a_batch_that_could_not_be_handled_is_delivered_again(runtime, infra):
    settings, rt, consumer, _ = runtime
    topic = settings.topic(ORDERS_TOPIC)
    subject = str(uuid.uuid4())
    attempts = _first_dead_letter_lost(consumer)

    after = _cancel(subject, 1, "after the poison")
    await produce(
        infra.kafka_bootstrap,
        topic,
        [(subject.encode(), b"{not json"), (subject.encode(), after.model_dump_json().encode())],
    )
    await eventually(lambda: _effects_equal(rt, ["after the poison"]), what="the next message handled")
    dead = await read_topic(infra.kafka_bootstrap, dlq_topic(topic), at_least=1)
    assert [r.value for r in dead] == [b"{not json"] and len(attempts) == 2


async def test_a_batch_whose_handler_failed_and_dead_letter_was_lost_is_read_again(runtime, infra):
    settings, rt, consumer, failures = runtime
    topic = settings.topic(ORDERS_TOPIC)
    subject = str(uuid.uuid4())
    attempts = _first_dead_letter_lost(consumer)

    await produce(
        infra.kafka_bootstrap, topic, [(subject.encode(), _cancel(subject, 1, "explode").model_dump_json().encode())]
    )
    dead = await read_topic(infra.kafka_bootstrap, dlq_topic(topic), at_least=1)
    assert len(attempts) == 2 and failures["explode"] >= 6, "handled, rewound, handled again"
    assert dict(dead[0].headers)["x-error"].decode().startswith("handler failed")
    after = _cancel(subject, 2, "after")
    await produce(infra.kafka_bootstrap, topic, [(subject.encode(), after.model_dump_json().encode())])
    await eventually(lambda: _effects_equal(rt, ["after"]), what="the next event handled")


async def test_a_missing_topic_is_created_with_the_configured_partitions(infra, database, topic_prefix):
    # Not the broker's default (6 in deploy/local): only the consumer's own creation gives 3.
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix, kafka_topic_partitions=3
    )
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=False)

    async def handle(batch):
        pass

    rt.consume(name="probe", topics=[ORDERS_TOPIC], handler=handle)
    await rt.start()
    try:
        partitions = await existing_partitions(settings, [settings.topic(ORDERS_TOPIC)])
    finally:
        await rt.stop()
    assert len(partitions) == 3
    assert CommonSettings().kafka_topic_partitions > 1, "a second instance in the group gets partitions of its own"


# --- the batch poll (no broker needed: a stand-in for aiokafka's consumer) ----------------------


class _Records:
    """getmany as aiokafka answers it: the next answer; an empty one after the timeout passed
    (or at once, as `early` says)."""

    def __init__(self, answers: list[dict], *, early: bool = False) -> None:
        self.answers = answers
        self.early = early

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        answer = self.answers.pop(0)
        if not answer and not self.early:
            with contextlib.suppress(asyncio.TimeoutError):  # not asyncio.sleep: that one is watched
                await asyncio.wait_for(asyncio.Event().wait(), timeout_ms / 1000)
        return answer


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The sleeps the poll took."""
    taken: list[float] = []

    async def sleep(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return taken


async def test_an_empty_poll_that_waited_is_not_followed_by_a_sleep(sleeps):
    # FastStream's batch poll slept batch_timeout_ms after it: records fetched meanwhile waited.
    assert await next_records(_Records([{}]), timeout_ms=50, max_records=500) == []
    assert sleeps == []


async def test_an_empty_poll_that_came_back_early_waits_out_its_timeout(sleeps):
    assert await next_records(_Records([{}], early=True), timeout_ms=50, max_records=500) == []
    assert len(sleeps) == 1 and 0.03 < sleeps[0] <= 0.05  # no busy loop


async def test_a_poll_hands_over_every_partition_s_records_in_order(sleeps):
    records = _Records([{"p0": ["a", "b"], "p1": ["c"]}])
    assert await next_records(records, timeout_ms=50, max_records=500) == ["a", "b", "c"]
    assert sleeps == []


async def test_handled_offsets_are_committed_and_a_stop_commits_the_last_ones(infra, database, topic_prefix):
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix, shutdown_grace_s=5
    )
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=False)
    handled: list[str] = []

    async def handle(batch):
        handled.extend(e.data.reason for _, e in batch)

    consumer = rt.consume(name="probe", topics=[ORDERS_TOPIC], handler=handle)
    consumer.COMMIT_EVERY_S = 30  # after the first commit, only the stop commits
    await rt.start()
    topic = settings.topic(ORDERS_TOPIC)
    subject = str(uuid.uuid4())
    try:
        await produce(
            infra.kafka_bootstrap, topic, [(subject.encode(), _cancel(subject, 1, "a").model_dump_json().encode())]
        )

        async def first_commit():
            return await _committed_total(infra, consumer.group_id, topic) == 1

        await eventually(first_commit, what="the first commit")
        await produce(
            infra.kafka_bootstrap,
            topic,
            [(subject.encode(), _cancel(subject, n, str(n)).model_dump_json().encode()) for n in (2, 3, 4)],
        )

        async def all_handled():
            return handled == ["a", "2", "3", "4"]

        await eventually(all_handled, what="the next three handled")
        assert await _committed_total(infra, consumer.group_id, topic) == 1  # the commit waits its turn
    finally:
        await rt.stop()
    assert await _committed_total(infra, consumer.group_id, topic) == 4


async def test_batches_of_other_subjects_go_past_a_slow_one_and_commits_wait_for_it(infra, database, topic_prefix):
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_prefix=topic_prefix,
        shutdown_grace_s=5,
        kafka_topic_partitions=1,
    )
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=False)
    handled: list[str] = []
    release = asyncio.Event()

    async def handle(batch):
        if any(e.data.reason == "slow" for _, e in batch):
            await release.wait()
        handled.extend(e.data.reason for _, e in batch)

    consumer = rt.consume(name="probe", topics=[ORDERS_TOPIC], handler=handle, concurrency=2)
    consumer.COMMIT_EVERY_S = 0.05
    await rt.start()
    topic = settings.topic(ORDERS_TOPIC)
    slow, other = str(uuid.uuid4()), str(uuid.uuid4())

    async def send(subject, n, reason):
        await produce(
            infra.kafka_bootstrap, topic, [(subject.encode(), _cancel(subject, n, reason).model_dump_json().encode())]
        )

    try:
        await send(slow, 1, "slow")
        await eventually(lambda: _true(consumer.in_flight), what="the slow batch in flight")
        await send(other, 1, "other")  # another subject: handled while the slow one waits
        await eventually(lambda: _equal(handled, ["other"]), what="the other subject's batch handled")
        await send(slow, 2, "after slow")  # the slow one's subject: waits for it
        await send(other, 2, "other again")  # read after it: waits for a turn
        await consumer.commit()  # whatever is settled now
        assert await _committed_total(infra, consumer.group_id, topic) == 0, "nothing past the slow batch"
        release.set()
        await eventually(
            lambda: _equal(sorted(handled), sorted(["other", "slow", "after slow", "other again"])), what="the rest"
        )
        assert handled[0] == "other" and handled.index("slow") < handled.index("after slow")

        async def all_committed():
            return await _committed_total(infra, consumer.group_id, topic) == 4

        await eventually(all_committed, what="every offset committed")
    finally:
        release.set()
        await rt.stop()


async def _true(value) -> bool:
    return bool(value)


async def _equal(value, expected) -> bool:
    return value == expected


async def _committed_total(infra, group_id: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(**connection(kafka_settings(infra.kafka_bootstrap)))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def test_a_runtime_with_consumers_forgets_old_positions_when_it_starts(infra, database, topic_prefix):
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_prefix=topic_prefix,
        shutdown_grace_s=5,
        inbox_keep_hours=24,
    )
    pool = await create_pool(database, max_size=2)
    try:
        await migrate(pool)
        await pool.execute(
            """INSERT INTO inbox_positions (consumer, topic, subject, sequence, created_at, last_seen_at)
               VALUES ('probe', 'o', 'old', 1, now() - interval '25 hours', now() - interval '25 hours'),
                      ('other', 'o', 'old', 1, now() - interval '2 days', now() - interval '2 days'),
                      ('probe', 'o', 'recent', 1, now() - interval '23 hours', now() - interval '23 hours')"""
        )
    finally:
        await pool.close()
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=False)

    async def handle(batch):
        pass

    rt.consume(name="probe", topics=[ORDERS_TOPIC], handler=handle)
    await rt.start()
    try:

        async def only_the_recent_position_left():
            return await rt.pool.fetchval("SELECT array_agg(subject) FROM inbox_positions") == ["recent"]

        await eventually(only_the_recent_position_left, what="positions older than inbox_keep_hours forgotten")
    finally:
        await rt.stop()


# A member of the group in a process of its own, to be killed with SIGKILL: it never leaves, so
# the group's next rebalance waits for its session to run out. It reads a topic of its own, so
# that it takes none of the partitions whose events the test counts.
_MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer
from shared.kafka_clients import connection
from shared.settings import CommonSettings

async def main():
    consumer = AIOKafkaConsumer(
        sys.argv[2], group_id=sys.argv[3], session_timeout_ms=6000, heartbeat_interval_ms=1000,
        **connection(CommonSettings(kafka_bootstrap_servers=sys.argv[1])))
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    print("assigned", flush=True)
    while True:
        await consumer.getmany(timeout_ms=100)

asyncio.run(main())
"""


async def test_consumers_go_on_after_a_member_was_killed_while_commits_go_on(infra, topic_prefix):
    """A commit sent while the member's JoinGroup waits is answered after it, with the generation
    before it: IllegalGeneration, and aiokafka resets the member and rejoins. The consumer put
    the refused offsets back and sent them again a second later, into the next join, and so on:
    dispatch's second instance rejoined every second for minutes after the first was killed
    and restarted, and read nothing meanwhile (order.placed events waited unread).

    Here two members handle a steady stream (each batch takes a while, so one is in hand when a
    rebalance begins) and commit every 50 ms. A third member is killed and a fourth joins: the
    rebalance waits for the dead one's session to run out, the two members' batches end and
    commit meanwhile. Every event sent afterwards must still be handled."""
    settings = CommonSettings(kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix)
    topic, group_id = settings.topic(ORDERS_TOPIC), f"{topic_prefix}probe"
    handled: set[str] = set()
    members: list[tuple[Kafka, EventConsumer]] = []

    async def handle(batch):
        await asyncio.sleep(0.2)
        handled.update(e.data.reason for _, e in batch)

    async def start_member(name: str) -> None:
        kafka = Kafka(settings, client_id=f"probe-{name}")
        await kafka.start()
        consumer = EventConsumer(
            kafka, settings, name="probe", topics=[ORDERS_TOPIC], group_id=group_id, handler=handle
        )
        consumer.COMMIT_EVERY_S = 0.05
        await consumer.start()
        members.append((kafka, consumer))

    async def start_process() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _MEMBER,
            infra.kafka_bootstrap,
            f"{topic}.other",
            group_id,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"assigned", line
        return proc

    async def send(stage: str, n: int = 30) -> set[str]:
        events = [_cancel(str(uuid.uuid4()), 1, f"{stage} {i}") for i in range(n)]
        await produce(
            infra.kafka_bootstrap, topic, [(e.subject.encode(), e.model_dump_json().encode()) for e in events]
        )
        return {e.data.reason for e in events}

    async def steady_stream() -> None:  # each member has batches in hand and offsets to commit all along
        n = 0
        while True:
            n += 1
            await send(f"stream {n}", 5)
            await asyncio.sleep(0.05)

    stream = asyncio.create_task(steady_stream())
    processes: list[asyncio.subprocess.Process] = []
    try:
        await start_member("a")
        await start_member("b")
        processes.append(await start_process())
        expected = await send("to three members")
        await eventually(lambda: _true(expected <= handled), timeout=45, what="the events sent to three members")
        processes[0].kill()
        processes.append(await start_process())  # joins while the killed one is still a member
        expected = await send("after the kill")
        await eventually(lambda: _true(expected <= handled), timeout=60, what="the events sent after the kill")
    finally:
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream
        for proc in processes:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        for kafka, consumer in members:
            await consumer.stop()
            await kafka.stop()
