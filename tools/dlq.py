"""Dead letters: list a topic's, and send them back to it once what failed them is fixed.

    python -m tools.dlq list giao.orders.v1
    python -m tools.dlq replay giao.orders.v1

A consumer sends a record it cannot handle to `<topic>.dlq`, with the reason in its headers, and
goes on (shared.kafka). An order.placed there is an order that dispatch never heard of: it stays
`placed` until someone acts. Once the cause is fixed (a handler's bug deployed again, a
producer's bad events corrected), `replay` publishes each dead letter not replayed yet back to
the topic it came from, with its key, so it lands in its subject's partition. The consumers then
take it as any event, through their inbox: one applied meanwhile (a duplicate) or superseded
(stale) is skipped. A record that is still not valid goes to the dead letters again, as a new one.

What was replayed is the committed offset of the consumer group `giao-dlq-replay` on the
dead-letter topic: each run picks up where the last one ended, and `list` marks what is behind
it. A run stopped between publishing and committing sends those records again next time, which
the inbox makes harmless. Run it as the broker's admin principal (GIAO_KAFKA_USERNAME and
GIAO_KAFKA_PASSWORD; docs/operations.md, Dead letters).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.events import dlq_topic
from shared.kafka_clients import connection, existing_partitions, new_producer
from shared.settings import CommonSettings

REPLAY_GROUP = "giao-dlq-replay"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    original: str  # topic[partition]@offset the record was first read from
    key: bytes | None
    reason: str
    replayed: bool


async def list_dead_letters(settings: CommonSettings, topic: str) -> list[DeadLetter]:
    """Every record on `topic`'s dead-letter topic (`topic` without the prefix), oldest first by
    partition, each marked whether a replay has sent it back."""
    letters = []
    async with _reading(settings, topic) as (consumer, tps):
        if not tps:
            return []  # nothing was ever dead-lettered there
        committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
        await consumer.seek_to_beginning(*tps)
        for record in await _until_end(consumer, tps):
            tp = TopicPartition(record.topic, record.partition)
            headers = _headers(record)
            original = f"{headers.get('x-original-topic', '?')}[{headers.get('x-original-partition', '?')}]"
            letters.append(
                DeadLetter(
                    partition=record.partition,
                    offset=record.offset,
                    original=f"{original}@{headers.get('x-original-offset', '?')}",
                    key=record.key,
                    reason=headers.get("x-error", ""),
                    replayed=record.offset < committed[tp],
                )
            )
    return letters


async def replay(settings: CommonSettings, topic: str) -> int:
    """Send every dead letter of `topic` not replayed yet back to the topic it came from; the
    count sent. Records dead-lettered while it runs wait for the next run."""
    async with _reading(settings, topic) as (consumer, tps):
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        records = await _until_end(consumer, tps)
        producer = new_producer(settings, client_id="giao-dlq-replay")
        await producer.start()
        try:
            sent = [
                await producer.send(
                    _headers(record).get("x-original-topic") or record.topic.removesuffix(".dlq"),
                    record.value,
                    key=record.key,
                    headers=_event_headers(record),
                )
                for record in records
            ]
            await asyncio.gather(*sent)  # every record acknowledged before the offsets move
        finally:
            await producer.stop()
        ends: dict[TopicPartition, int] = {}
        for record in records:
            ends[TopicPartition(record.topic, record.partition)] = record.offset + 1
        if ends:
            await consumer.commit(ends)
    return len(records)


@contextlib.asynccontextmanager
async def _reading(
    settings: CommonSettings, topic: str
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer of the replay group with the dead-letter topic's partitions assigned."""
    tps = await existing_partitions(settings, [dlq_topic(settings.topic(topic))])
    consumer = AIOKafkaConsumer(**connection(settings), group_id=REPLAY_GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        if tps:
            consumer.assign(tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def _until_end(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> list[ConsumerRecord]:
    """The records from each partition's position up to its end as it was when called."""
    if not tps:
        return []
    ends = await consumer.end_offsets(list(tps))
    records: list[ConsumerRecord] = []
    while any([await consumer.position(tp) < ends[tp] for tp in tps]):
        for tp, batch in (await consumer.getmany(*tps, timeout_ms=1000)).items():
            records += [r for r in batch if r.offset < ends[tp]]
    return records


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


def _event_headers(record: ConsumerRecord) -> list[tuple[str, bytes]]:
    """The headers the relay gives an event (shared.outbox), and where this copy comes from."""
    headers = [("content-type", b"application/json")]
    try:
        event_type = orjson.loads(record.value or b"").get("type")
    except (orjson.JSONDecodeError, AttributeError):
        event_type = None
    if isinstance(event_type, str):
        headers.append(("event-type", event_type.encode()))
    headers.append(("x-replayed-from", f"{record.topic}[{record.partition}]@{record.offset}".encode()))
    return headers


def main(argv: list[str] | None = None, settings: CommonSettings | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.dlq", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("list", "replay"))
    p.add_argument("topic", help="the topic whose dead letters these are, e.g. giao.orders.v1")
    args = p.parse_args(argv)
    settings = settings or CommonSettings()
    if args.command == "replay":
        print(f"{asyncio.run(replay(settings, args.topic))} sent back to {args.topic}")
        return 0
    letters = asyncio.run(list_dead_letters(settings, args.topic))
    for d in letters:
        key = d.key.decode(errors="replace") if d.key else "-"
        print(f"[{d.partition}]@{d.offset}\t{'replayed' if d.replayed else 'waiting'}\t{d.original}\t{key}\t{d.reason}")
    waiting = sum(1 for d in letters if not d.replayed)
    print(f"{len(letters)} dead letters of {args.topic}, {waiting} not replayed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
