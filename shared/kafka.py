"""Consuming events from Kafka through aiokafka's public API, with safe defaults.

- Consumers: batches, offsets committed only after the handler succeeded, by a task that runs
  beside the next batches (EventConsumer says why).
- Keys: the event's subject (order id, courier id), so one subject stays in one partition.
- Dead letters: a record that is not a valid event, or that keeps failing, goes to
  `<topic>.dlq` with the reason in its headers, and the consumer moves on. Outages
  (PostgreSQL or Kafka unreachable) are retried without end instead: they are not the
  message's fault.
- Producers and the admin client: shared.kafka_clients.

Why not FastStream (0.7.8): what follows cannot be said through its public API, and working
around it took private parts of it (a replaced `subscriber.get_msg`, a decoder handing over the
raw message, `subscriber.consumer` taken away at stop), so the consumer is a small loop over
AIOKafkaConsumer's public API instead:
- Latency: a batch subscriber's poll sleeps `batch_timeout_ms` after every empty getmany, and
  nothing turns that off (next_records says what it cost).
- Commits: with AckPolicy.MANUAL, `msg.ack()` is `consumer.commit()` without offsets, the
  consumer's positions on all its partitions, past the batches still in flight, awaited before
  the next poll. Nothing commits chosen offsets, in the order batches were read, beside the poll.
- Concurrency: batch subscribers ignore `max_workers`; for single records it either acks first
  (at-most-once) or makes one group member per worker: neither keeps a subject's events in
  order while other subjects' events go on.
- Stop: `subscriber.stop()` closes the aiokafka consumer as soon as its loop ends; nothing can
  commit what the batches in flight handled once they finish.
- Access: a handler reaches the records and their consumer only through a decoder returning the
  raw message, or Context("message"), which fast_depends resolves in a worker thread (a thread
  hop per batch).
What FastStream's broker still did (create topics with their partitions, publish dead letters,
answer the readiness ping) is a few calls of aiokafka's producer and admin client
(shared.kafka_clients): the project does not use FastStream any more.

Over 400 lines on purpose: EventConsumer is one state machine (records in flight per subject,
the offsets handled, the failed batch to rewind to, the commit task), and each of its parts
reads and writes that state; split across modules it would have to be passed around whole.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, KafkaError
from pydantic import ValidationError

from shared.errors import describe, is_outage
from shared.events import Envelope, dlq_topic, parse_event
from shared.kafka_clients import Kafka, connection, started
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 256 * 1024  # our largest event is a few KiB; anything near this is wrong
ATTEMPTS_BEFORE_DLQ = 3

_POLLING = "polling"  # the poll's entry in EventConsumer._outages while Kafka errors keep it waiting

# (topic without prefix, event) pairs, in the order they were read
Batch = list[tuple[str, Envelope]]
BatchHandler = Callable[[Batch], Awaitable[None]]


async def next_records(consumer: Any, *, timeout_ms: int, max_records: int) -> list[ConsumerRecord]:
    """The records of one getmany, every partition's in order; none after `timeout_ms`.

    FastStream's batch poll slept batch_timeout_ms after every empty getmany, though getmany had
    just waited that long for data: a fetch answered meanwhile waited in the buffer. Under load
    dispatch's consumer found half of its polls empty (aiokafka prefetches while a batch is
    handled, and the broker holds a fetch up to fetch_max_wait_ms), so order.placed often sat
    out that sleep on its way to the matcher. This poll goes on at once; only a getmany that
    came back early with nothing is waited out (no busy loop)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    if not batches:
        left = timeout_ms / 1000 - (loop.time() - started)
        if left > 0:
            await asyncio.sleep(left)
        return []
    return [record for records in batches.values() for record in records]


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
    Once a second, not five times: at 152 orders/s the broker's offset commits (19 a second,
    each a write to its offsets topic by the group coordinator) were a sixth of its requests,
    and nothing reads the committed offsets but a consumer that starts or takes a partition
    over in a rebalance (lag is measured from the consumer's position).

    No commit goes out while the group rebalances (from the revocation of this member's
    partitions until its next assignment), and offsets the broker refused because the group
    rebalanced are dropped, not sent again. A commit sent while this member's JoinGroup waits is
    answered after it, with the generation before it; the broker refuses it (IllegalGeneration)
    and aiokafka resets the member, which joins again. Sending the refused offsets again a second
    later, into that join, kept a member rejoining for minutes and reading nothing (dispatch's
    second instance, after the first was killed: order.placed events waited unread). What was
    handled and not committed is read again by the partition's next owner, and the inbox skips it.
    """

    COMMIT_EVERY_S = 1.0
    POLL_MS = 50  # how long a poll waits for records when none are buffered
    PAUSE_AFTER_KAFKA_ERROR_S = 5.0

    def __init__(
        self,
        kafka: Kafka,
        settings: CommonSettings,
        *,
        name: str,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        max_records: int = 500,
        session_timeout_ms: int = 6000,
        ignore: Collection[str] = (),
        concurrency: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.kafka = kafka
        self.name = name
        self.topics = [settings.topic(t) for t in topics]
        self.group_id = group_id
        self.handler = handler
        self._prefix = settings.topic_prefix
        self.dead_letters: collections.Counter[str] = collections.Counter()  # original topic -> sent
        # What an on-call engineer sees (shared.health reads it every few seconds): when a
        # record was last handled, and since when each batch in an outage has been retrying.
        self.last_progress = time.monotonic()
        self._outages: dict[object, float] = {}
        self._ignore, self.ignored = frozenset(t.encode() for t in ignore), 0
        self._max_records = max_records
        self._consumer_options: dict[str, Any] = dict(
            **connection(settings),
            client_id=kafka.client_id,
            group_id=group_id,
            enable_auto_commit=False,  # committed by _commit_loop (the class docstring says why)
            # Let the broker gather records for up to kafka_fetch_wait_ms (or 64 KiB) per
            # fetch: under load a batch then holds several events (one transaction applies them
            # all) instead of one fetch, one batch and one transaction per event, and an idle
            # consumer asks less often; it adds at most that wait to the hop.
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=settings.kafka_fetch_wait_ms,
            auto_offset_reset="earliest",  # a new group must not miss events sent before it
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(500, session_timeout_ms // 6),
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._poller: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._handled: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._concurrency = concurrency
        self._in_flight: collections.deque[_InFlight] = collections.deque()  # in the order read
        self._failed: asyncio.Task[None] | None = None  # the task of a batch that failed
        self._committer: asyncio.Task[None] | None = None
        self._rebalances = _Rebalances()

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def retrying(self) -> list[float]:
        """The monotonic time each batch now retrying an outage began to, oldest first."""
        return sorted(self._outages.values())

    async def lag(self) -> dict[TopicPartition, int]:
        """Per assigned partition whose high watermark is known: the records this consumer has
        not handled yet (not fetched yet, or fetched and still in flight). No request to the
        broker: the high watermark is the one its last fetch answer carried (aiokafka's
        `highwater`), so while the broker cannot be reached it is the last one seen."""
        consumer = self._consumer
        if consumer is None:
            return {}
        in_flight: collections.Counter[TopicPartition] = collections.Counter(
            TopicPartition(r.topic, r.partition) for batch in self._in_flight for r in batch.records
        )
        lag: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:  # known at once, except while the partition's position is being reset
                position = await asyncio.wait_for(consumer.position(tp), 0.1)
            except (TimeoutError, KafkaError):
                continue
            lag[tp] = max(0, highwater - position) + in_flight[tp]
        return lag

    @property
    def in_flight(self) -> int:
        """Batches read and not yet committed (being handled, or waiting for older ones)."""
        return len(self._in_flight)

    async def start(self) -> None:
        await self.kafka.create_topics(self.topics)
        self._stopping.clear()
        self._consumer = AIOKafkaConsumer(**self._consumer_options)
        self._consumer.subscribe(self.topics, listener=self._rebalances)
        await self._consumer.start()
        self._poller = asyncio.create_task(self._poll(), name=f"{self.name}-poll")
        self._poller.add_done_callback(self._poll_ended)

    def _poll_ended(self, poller: asyncio.Task[None]) -> None:
        if not poller.cancelled() and poller.exception() is not None:  # a bug: say so at once
            exc = poller.exception()
            # The frames (no values in them) and the exception described, not its text: see shared.errors.
            frames = "".join(traceback.format_tb(exc.__traceback__)) if exc is not None else ""
            log.error("%s: stopped consuming: %s\n%s", self.name, describe(exc) if exc else "", frames)

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            self._settle()
            if self._failed is not None:
                await self._rewind(self._failed)
                continue
            try:
                records = await next_records(self._consumer, timeout_ms=self.POLL_MS, max_records=self._max_records)
                self._outages.pop(_POLLING, None)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                self._outages.setdefault(_POLLING, time.monotonic())
                log.error(
                    "%s: polling Kafka: %s; trying again in %.0fs",
                    *(self.name, describe(exc), self.PAUSE_AFTER_KAFKA_ERROR_S),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.PAUSE_AFTER_KAFKA_ERROR_S)
                continue
            if not records or self._stopping.is_set():
                continue  # what a stop interrupted is read again by the next owner
            try:
                await self._consume(records)
            except Exception as exc:  # noqa: BLE001 - the batch is read again
                # A dead letter could not be sent, say: rewind every partition to the batch's
                # first record, so the next poll delivers the batch again.
                self._seek_to_first(records)
                log.error("%s: a batch could not be handed over (%s); reading it again", self.name, describe(exc))

    async def _consume(self, records: list[ConsumerRecord]) -> None:
        parsed: list[tuple[ConsumerRecord, tuple[str, Envelope]]] = []
        for record in records:
            if self._ignore and _event_type(record) in self._ignore:
                self.ignored += 1
                continue
            event = await self._parse_or_dead_letter(record)
            if event is not None:
                parsed.append((record, (record.topic.removeprefix(self._prefix), event)))
        subjects = frozenset((topic, event.subject) for _, (topic, event) in parsed)
        # Per subject, events apply in the order they were read: wait for every batch in
        # flight that shares one, and for a free slot.
        while True:
            running = [b.task for b in self._in_flight if b.task is not None and not b.task.done()]
            sharing = [
                b.task for b in self._in_flight if b.task is not None and not b.task.done() and b.subjects & subjects
            ]
            if not sharing and len(running) < self._concurrency:
                break
            await asyncio.wait(sharing or running, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._handle(parsed), name=f"{self.name}-batch") if parsed else None
        self._in_flight.append(_InFlight(records, subjects, task))
        if task is not None:
            task.add_done_callback(lambda _: self._settle())
        self._settle()

    def _settle(self) -> None:
        """Note the batches handled, oldest first, up to the first still in flight, for the
        commit; note a failed one (its records and everything read after them are read again)."""
        while self._in_flight and self._failed is None:
            batch = self._in_flight[0]
            if batch.task is not None:
                if not batch.task.done():
                    return
                if batch.task.cancelled() or batch.task.exception() is not None:
                    self._failed = batch.task
                    return
            self._in_flight.popleft()
            self._note_handled(batch.records)

    async def _rewind(self, failed: asyncio.Task[None]) -> None:
        """After a batch could not be handled: let the batches read after it finish, then
        seek every partition back to the failed batch's first records (the next poll reads
        them all again)."""
        tasks = [b.task for b in self._in_flight if b.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        self._seek_to_first(record for batch in self._in_flight for record in batch.records)
        self._in_flight.clear()
        self._failed = None
        exc = failed.exception() if not failed.cancelled() else None
        log.error(
            "%s: a batch could not be handled (%s); reading it again",
            *(self.name, describe(exc) if exc is not None else "cancelled"),
        )

    def _seek_to_first(self, records: Iterable[ConsumerRecord]) -> None:
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        consumer = started(self._consumer)
        assigned = consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned:  # a partition taken away goes on from its last commit
                consumer.seek(tp, offset)

    def _note_handled(self, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._handled[tp] = max(self._handled.get(tp, 0), record.offset + 1)
        if records:
            self.last_progress = time.monotonic()
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop(), name=f"{self.name}-commit")

    async def _commit_loop(self) -> None:
        while self._handled:
            await self.commit()
            await asyncio.sleep(self.COMMIT_EVERY_S)

    async def commit(self) -> None:
        """Commit the offsets of what was handled so far (_commit_loop does, every COMMIT_EVERY_S);
        while the group rebalances, they wait (the class docstring says why)."""
        if self._rebalances.under_way:
            return
        offsets, self._handled = self._handled, {}
        # A partition taken away by a rebalance is not ours to commit: its new owner goes on
        # from the last commit (and the inbox skips what was applied here).
        consumer = started(self._consumer)
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # Refused for a generation that is gone: sent again, they would only break the join
            # under way. The partitions' next owners read from the last commit.
            log.warning("%s: offsets refused, the group rebalanced: %s; not sent again", self.name, describe(exc))
        except (KafkaError, asyncio.CancelledError) as exc:
            for tp, offset in offsets.items():  # to be committed next time (or by stop)
                self._handled[tp] = max(self._handled.get(tp, 0), offset)
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("%s: committing offsets: %s; trying again", self.name, describe(exc))

    async def stop(self) -> None:
        """Stop consuming after the batch in hand, commit what was handled, close the consumer."""
        if self._consumer is None:
            return
        self._stopping.set()
        if self._poller is not None:
            await asyncio.wait([self._poller])  # a poll ends within POLL_MS; the batch in hand is handed over
        # The batches in flight finish (each bounded by the caller's grace), and what was
        # handled, in order, is committed below.
        await asyncio.gather(*(b.task for b in self._in_flight if b.task is not None), return_exceptions=True)
        self._settle()
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        if self._handled:
            await self.commit()
        await self._consumer.stop()
        self._consumer = None

    async def _parse_or_dead_letter(self, record: ConsumerRecord) -> Envelope | None:
        value = record.value or b""
        if len(value) > MAX_EVENT_BYTES:
            await self.dead_letter(record, f"too large: {len(value)} bytes (limit {MAX_EVENT_BYTES})")
            return None
        try:
            return parse_event(value)
        except ValidationError as exc:
            await self.dead_letter(record, "invalid event: " + describe(exc))
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
        outage = object()  # this batch's entry in _outages while it retries an outage
        try:
            while True:
                try:
                    await self.handler(batch)
                    return
                except Exception as exc:  # sorted below: an outage, or the message's problem
                    if is_outage(exc):
                        # Not the message's fault: wait for the outage to end (shutdown cancels this).
                        self._outages.setdefault(outage, time.monotonic())
                        log.warning(
                            "%s: outage while handling %d events: %s; retrying in %.2fs",
                            *(self.name, len(batch), describe(exc), backoff),
                        )
                    else:
                        attempt += 1
                        reason = describe(exc)
                        log.warning(
                            "%s: handler failed (attempt %d/%d): %s", self.name, attempt, ATTEMPTS_BEFORE_DLQ, reason
                        )
                        if attempt >= ATTEMPTS_BEFORE_DLQ:
                            raise _GaveUp(reason) from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        finally:
            self._outages.pop(outage, None)

    async def dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        log.error("%s: dead-lettering %s[%d]@%d: %s", self.name, record.topic, record.partition, record.offset, reason)
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
        await self.kafka.publish(dlq_topic(record.topic), value, key=record.key, headers=headers)
        self.dead_letters[record.topic] += 1


def _event_type(record: ConsumerRecord) -> bytes | None:
    headers: Sequence[tuple[str, bytes]] = record.headers or ()
    for key, value in headers:
        if key == "event-type":
            return value
    return None


@dataclass
class _InFlight:
    records: Sequence[ConsumerRecord]
    subjects: frozenset[tuple[str, str]]
    task: asyncio.Task[None] | None  # None: nothing in it to handle (ignored or dead-lettered)


class _GaveUp(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Whether the group is rebalancing: from this member's revocation, which aiokafka calls
    before the member joins again, until its next assignment."""

    def __init__(self) -> None:
        self.under_way = False

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.under_way = True

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.under_way = False
