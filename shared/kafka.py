"""Kafka through FastStream, with safe defaults.

- Producer: idempotent, acks=all (aiokafka's own default is acks=1 without idempotence).
- Consumers: batches, offsets committed only after the handler succeeded (an explicit
  ack policy: FastStream's Kafka default auto-commits, which is at-most-once). The commit
  runs beside the next batches instead of between them (see EventConsumer.COMMIT_EVERY_S).
- Keys: the event's subject (order id, courier id), so one subject stays in one partition.
- Dead letters: a record that is not a valid event, or that keeps failing, goes to
  `<topic>.dlq` with the reason in its headers, and the consumer moves on. Outages
  (PostgreSQL or Kafka unreachable) are retried without end instead: they are not the
  message's fault.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, Topic
from pydantic import ValidationError

from shared.events import Envelope, dlq_topic, parse_event
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 256 * 1024  # our largest event is a few KiB; anything near this is wrong
ATTEMPTS_BEFORE_DLQ = 3

# (topic without prefix, event) pairs, in the order they were read
Batch = list[tuple[str, Envelope]]
BatchHandler = Callable[[Batch], Awaitable[None]]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, KafkaError,
    asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
)


def make_broker(settings: CommonSettings, *, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,  # a short wait lets the relay's records share requests
        max_batch_size=256 * 1024,
        ack_policy=AckPolicy.NACK_ON_ERROR,  # never commit what was not handled
        graceful_timeout=settings.shutdown_grace_s,
        log_level=logging.DEBUG,  # FastStream logs each message at this level: keep it out of INFO logs
    )


async def _the_message(msg: Any) -> Any:
    """Decoder that hands the handler FastStream's message itself: its aiokafka records
    untouched (we parse them ourselves), its consumer and its nack. Asking for the message
    with Context("message") instead costs a thread hop per batch: fast_depends resolves
    Context with a sync function, which it runs in anyio's worker thread, and under load the
    batch then waits for that thread and for the GIL to come back."""
    return msg


class EventConsumer:
    """Consumes batches of events, parses them, dead-letters the bad ones, calls the handler.

    Event types the consumer has no use for (`ignore`) are recognised by the relay's
    `event-type` header and committed unread: parsing them and passing them through the
    inbox only to drop them cost each consumer a share of its work (dispatch's topic
    carries an offer per order that neither orders nor tracking shows). A record without
    that header is parsed as always.

    Up to `concurrency` batches are handled at once, each in a transaction of its own, while
    the next is fetched: a batch's handling is mostly round trips to PostgreSQL, and under
    load records waited in the buffer for the batch before them (dispatch: p50 90 ms, p99
    400 ms of placed -> offered). A batch waits for every batch in flight that shares a
    subject with it, so each subject's events still apply in the order they were read, and
    offsets are committed in that order too, only up to the oldest batch not yet handled. A
    batch that could not be handled (its dead letter could not be sent) sends every
    partition back to its first records once the batches after it finished.

    The handler gets the valid events of a batch and should apply them in one transaction,
    idempotently (shared.inbox). If it raises an error that is not an outage, the batch is
    tried again, then one event at a time, and the event that still fails is dead-lettered.

    Offsets: those of handled (or dead-lettered) records only, committed by a task of their
    own, at most every COMMIT_EVERY_S, while the next batches are fetched and handled. Waiting
    for each commit before the next fetch cost dispatch's consumer 52-68 ms per batch under
    load (its event loop is busy with couriers), and order.placed waited for it on its way to
    the matcher. After a crash up to that much more is consumed again, which the handlers'
    inbox makes harmless; a stop commits what was handled before it closes the consumer.
    """

    COMMIT_EVERY_S = 0.2

    def __init__(self, broker: KafkaBroker, settings: CommonSettings, *, name: str,
                 topics: Sequence[str], group_id: str, handler: BatchHandler,
                 max_records: int = 500, session_timeout_ms: int = 6000,
                 ignore: Collection[str] = (), concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.broker = broker
        self.settings = settings
        self.name = name
        self.group_id = group_id
        self.handler = handler
        self._prefix = settings.topic_prefix
        self.dead_lettered = 0
        self._ignore = frozenset(t.encode() for t in ignore)
        self.ignored = 0
        self.subscriber = broker.subscriber(
            # FastStream creates missing topics when a subscriber starts, with one partition
            # unless told otherwise: then a second instance in the group would get nothing.
            *[Topic(settings.topic(t), num_partitions=settings.kafka_topic_partitions) for t in topics],
            group_id=group_id,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=50,
            # Let the broker gather records for up to 50 ms (or 64 KiB) per fetch: under load a
            # batch then holds several events (one transaction applies them all) instead of
            # one fetch, one batch and one transaction per event; it adds at most 50 ms.
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=50,
            auto_offset_reset="earliest",  # a new group must not miss events sent before it
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(500, session_timeout_ms // 6),
            ack_policy=AckPolicy.MANUAL,  # committed by _commit_handled (the class docstring says why)
            decoder=_the_message,
            title=name,
        )
        self.subscriber(self._consume)
        self._max_records = max_records
        # FastStream's batch poll sleeps batch_timeout_ms after every getmany that came back
        # empty, though getmany itself had just waited that long for data: a fetch answered
        # during that sleep waited in the buffer for the rest of it. Under load dispatch's
        # consumer found half of its polls empty (aiokafka prefetches while a batch is
        # handled, and the broker holds a fetch up to fetch_max_wait_ms), so order.placed
        # often sat out that sleep on its way to the matcher. This poll goes on at once.
        self.subscriber.get_msg = self._next_batch
        self._handled: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._concurrency = concurrency
        self._in_flight: collections.deque[_InFlight] = collections.deque()  # in the order read
        self._failed: _InFlight | None = None
        self._kafka_consumer: Any = None
        self._committer: asyncio.Task | None = None

    async def _next_batch(self, consumer: Any) -> tuple[ConsumerRecord, ...]:
        self._kafka_consumer = consumer
        self._settle()
        if self._failed is not None:
            await self._rewind()
            return ()
        timeout_s = self.subscriber.batch_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        started = loop.time()
        batches = await consumer.getmany(timeout_ms=self.subscriber.batch_timeout_ms,
                                         max_records=self._max_records)
        if not batches:
            # Should getmany ever come back early with nothing, wait out the rest: no busy loop.
            left = timeout_s - (loop.time() - started)
            if left > 0:
                await asyncio.sleep(left)
            return ()
        return tuple(record for records in batches.values() for record in records)

    async def _consume(self, message: Any) -> None:
        self._kafka_consumer = message.consumer
        raw = message.raw_message
        records = list(raw) if isinstance(raw, tuple) else [raw]
        try:
            parsed: list[tuple[ConsumerRecord, tuple[str, Envelope]]] = []
            for record in records:
                if self._ignore and _event_type(record) in self._ignore:
                    self.ignored += 1
                    continue
                event = await self._parse_or_dead_letter(record)
                if event is not None:
                    parsed.append((record, (record.topic.removeprefix(self._prefix), event)))
        except Exception:
            # A dead letter could not be sent, say: rewind every partition to the batch's
            # first record, so the next poll delivers the batch again.
            await message.nack()
            raise
        subjects = frozenset((topic, event.subject) for _, (topic, event) in parsed)
        # Per subject, events apply in the order they were read: wait for every batch in
        # flight that shares one, and for a free slot.
        while True:
            running = [b.task for b in self._in_flight if b.task is not None and not b.task.done()]
            sharing = [b.task for b in self._in_flight
                       if b.task is not None and not b.task.done() and b.subjects & subjects]
            if not sharing and len(running) < self._concurrency:
                break
            await asyncio.wait(sharing or running, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._handle(parsed), name=f"{self.name}-batch") if parsed else None
        self._in_flight.append(_InFlight(records, subjects, task))
        if task is not None:
            task.add_done_callback(lambda _: self._settle())
        self._settle()

    def _settle(self) -> None:
        """Commit the batches handled, oldest first, up to the first still in flight; note a
        failed one (its records and everything read after them are read again)."""
        while self._in_flight and self._failed is None:
            batch = self._in_flight[0]
            if batch.task is not None:
                if not batch.task.done():
                    return
                if batch.task.cancelled() or batch.task.exception() is not None:
                    self._failed = batch
                    return
            self._in_flight.popleft()
            self._commit_handled(self._kafka_consumer, batch.records)

    async def _rewind(self) -> None:
        """After a batch could not be handled: let the batches read after it finish, then
        seek every partition back to the failed batch's first records (the next poll reads
        them all again)."""
        failed = self._failed
        await asyncio.gather(*(b.task for b in self._in_flight if b.task is not None), return_exceptions=True)
        first: dict[TopicPartition, int] = {}
        for batch in self._in_flight:  # the failed batch and all read after it
            for record in batch.records:
                tp = TopicPartition(record.topic, record.partition)
                first[tp] = min(first.get(tp, record.offset), record.offset)
        self._in_flight.clear()
        self._failed = None
        for tp, offset in first.items():
            if tp in self._kafka_consumer.assignment():
                self._kafka_consumer.seek(tp, offset)
        log.error("%s: a batch could not be handled (%r); reading it again", self.name,
                  failed.task.exception() if not failed.task.cancelled() else "cancelled")

    def _commit_handled(self, kafka_consumer: Any, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._handled[tp] = max(self._handled.get(tp, 0), record.offset + 1)
        self._kafka_consumer = kafka_consumer
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop(), name=f"{self.name}-commit")

    async def _commit_loop(self) -> None:
        while self._handled:
            await self._commit_now()
            await asyncio.sleep(self.COMMIT_EVERY_S)

    async def _commit_now(self) -> None:
        offsets, self._handled = self._handled, {}
        # A partition taken away by a rebalance is not ours to commit: its new owner goes on
        # from the last commit (and the inbox skips what was applied here).
        assigned = self._kafka_consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._kafka_consumer.commit(offsets)
        except (KafkaError, asyncio.CancelledError) as exc:
            for tp, offset in offsets.items():  # to be committed next time (or by stop)
                self._handled[tp] = max(self._handled.get(tp, 0), offset)
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("%s: committing offsets: %r; trying again", self.name, exc)

    async def stop(self) -> None:
        """Stop consuming after the batch in hand, commit what was handled, close the consumer.

        FastStream's stop would close the Kafka consumer right after the consume loop ends;
        taking the consumer from it first leaves room for the last commit."""
        kafka_consumer, self.subscriber.consumer = self.subscriber.consumer, None
        await self.subscriber.stop()
        # The batches in flight finish (each bounded by the caller's grace), and what was
        # handled, in order, is committed below.
        await asyncio.gather(*(b.task for b in self._in_flight if b.task is not None), return_exceptions=True)
        self._settle()
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        if kafka_consumer is not None:
            if self._handled:
                self._kafka_consumer = kafka_consumer
                await self._commit_now()
            await kafka_consumer.stop()

    async def _parse_or_dead_letter(self, record: ConsumerRecord) -> Envelope | None:
        value = record.value or b""
        if len(value) > MAX_EVENT_BYTES:
            await self.dead_letter(record, f"too large: {len(value)} bytes (limit {MAX_EVENT_BYTES})")
            return None
        try:
            return parse_event(value)
        except ValidationError as exc:
            await self.dead_letter(record, "invalid event: " + _short(exc))
            return None

    async def _handle(self, parsed: list[tuple[ConsumerRecord, tuple[str, Envelope]]]) -> None:
        try:
            await self._with_retries([item for _, item in parsed])
            return
        except _GaveUp as gave_up:
            if len(parsed) == 1:
                return await self.dead_letter(parsed[0][0], f"handler failed: {gave_up.reason}")
        # One event at a time, so that only the event that fails goes to the dead letters.
        for record, item in parsed:
            try:
                await self._with_retries([item])
            except _GaveUp as gave_up:
                await self.dead_letter(record, f"handler failed: {gave_up.reason}")

    async def _with_retries(self, batch: Batch) -> None:
        attempt, backoff = 0, 0.05
        while True:
            try:
                await self.handler(batch)
                return
            except TRANSIENT_ERRORS as exc:
                # Not the message's fault: wait for the outage to end (shutdown cancels this).
                log.warning("%s: outage while handling %d events: %r; retrying in %.2fs",
                            self.name, len(batch), exc, backoff)
            except Exception as exc:  # noqa: BLE001 - anything else is this message's problem
                attempt += 1
                log.warning("%s: handler failed (attempt %d/%d): %r", self.name, attempt,
                            ATTEMPTS_BEFORE_DLQ, exc)
                if attempt >= ATTEMPTS_BEFORE_DLQ:
                    raise _GaveUp(repr(exc)) from exc
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        log.error("%s: dead-lettering %s[%d]@%d: %s", self.name, record.topic, record.partition,
                  record.offset, reason)
        value = record.value or b""
        headers = {
            "x-error": reason[:2000],
            "x-original-topic": record.topic,
            "x-original-partition": str(record.partition),
            "x-original-offset": str(record.offset),
            "x-consumer-group": self.group_id,
        }
        if len(value) > MAX_EVENT_BYTES:
            value, headers["x-truncated"] = value[:MAX_EVENT_BYTES], "true"
        await self.broker.publish(value, topic=dlq_topic(record.topic), key=record.key, headers=headers)
        self.dead_lettered += 1


def _event_type(record: ConsumerRecord) -> bytes | None:
    for key, value in record.headers or ():
        if key == "event-type":
            return value
    return None


@dataclass
class _InFlight:
    records: Sequence[ConsumerRecord]
    subjects: frozenset[tuple[str, str]]
    task: asyncio.Task | None  # None: nothing in it to handle (ignored or dead-lettered)


class _GaveUp(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10])


class RelayProducer:
    """The outbox relay's own idempotent producer (acks=all), made anew after a Kafka error.

    After a broker restart an idempotent producer can be left with sequence numbers the broker
    no longer agrees with (OutOfOrderSequenceNumber); aiokafka retries that forever, and the
    relay published nothing until the service restarted. A new producer gets a new producer
    id and goes on; at worst a few rows go out twice, which consumers already handle.
    """

    def __init__(self, settings: CommonSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    def _new(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self._settings.kafka_bootstrap_servers,
                                client_id=f"{self._client_id}-relay", acks="all", enable_idempotence=True,
                                linger_ms=2, max_batch_size=256 * 1024)

    async def start(self) -> None:
        self._producer = self._new()
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, topic: str, key: bytes, payload: bytes, headers: dict[str, str]):
        """Hand the record to the producer; returns the future of Kafka's acknowledgement."""
        return await self._producer.send(topic, payload, key=key,
                                         headers=[(k, v.encode()) for k, v in headers.items()])

    async def reset(self, error: BaseException) -> None:
        if not isinstance(error, KafkaError):
            return  # a database error: the producer is fine
        log.warning("relay producer: %r; starting a new producer", error)
        old, self._producer = self._producer, self._new()
        try:
            await old.stop()
        except Exception:  # noqa: BLE001 - it is being replaced because it is broken
            pass
        await self._producer.start()
