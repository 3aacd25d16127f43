"""The Kafka clients a process has besides its consumers (shared.kafka): producers, idempotent
with acks=all (aiokafka's own default is acks=1 without idempotence), and an admin client.
aiokafka's public API only (shared.kafka says why not FastStream)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from shared.settings import CommonSettings

log = logging.getLogger(__name__)


Client = TypeVar("Client")


def started(client: Client | None) -> Client:
    """The client that start() made; None means it was used before start() or after stop()."""
    if client is None:
        raise RuntimeError("a Kafka client used before start() or after stop()")
    return client


def connection(settings: CommonSettings) -> dict[str, Any]:
    """What every Kafka client of the process is given to reach the broker: its address and,
    when the settings name a principal, SASL/SCRAM authentication as that principal."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers}
    if settings.kafka_username:
        options.update(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_username,
            sasl_plain_password=settings.kafka_password,
        )
    return options


def new_producer(settings: CommonSettings, *, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,  # a short wait lets the relay's records share requests
        max_batch_size=256 * 1024,
    )


class Kafka:
    """What a process needs of Kafka besides its consumers and its outbox relay: a producer
    (dead letters) and an admin client (topics, readiness)."""

    def __init__(self, settings: CommonSettings, *, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def start(self) -> None:
        self._producer = new_producer(self.settings, client_id=self.client_id)
        await self._producer.start()
        self._admin = AIOKafkaAdminClient(**connection(self.settings), client_id=self.client_id)
        await self._admin.start()

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.close()
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]) -> None:
        """Send one record and wait for Kafka's acknowledgement."""
        await started(self._producer).send_and_wait(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )

    async def create_topics(self, names: Sequence[str]) -> None:
        """Create those of the topics that do not exist, with settings.kafka_topic_partitions
        partitions: the broker would create a missing topic on first use with its own default
        (one partition, unless configured), and a second instance in the group would get
        nothing. A failure is logged: the consumer still starts on what exists."""
        partitions = self.settings.kafka_topic_partitions
        try:
            response = await started(self._admin).create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
            )
        except KafkaError as exc:
            log.warning("%s: creating topics %s: %r", self.client_id, list(names), exc)
            return
        for result in response.to_object()["topic_errors"]:
            if result["error_code"]:
                error = for_code(result["error_code"])(result.get("error_message") or "")
                if not isinstance(error, TopicAlreadyExistsError):
                    log.warning("%s: creating topic %s: %r", self.client_id, result["topic"], error)

    async def ping(self, timeout: float) -> bool:
        """Whether Kafka answers a metadata request within `timeout` (asked again meanwhile)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        await started(self._admin).describe_cluster()
                        return True
                    except Exception:  # noqa: BLE001 - unreachable for now: ask again
                        await asyncio.sleep(timeout / 10)
        except TimeoutError:
            return False


async def existing_partitions(settings: CommonSettings, topics: Sequence[str]) -> list[TopicPartition]:
    """The partitions of those of `topics` that exist, by topic then partition. Asked of every
    topic: a metadata request naming a missing topic creates it (auto.create.topics.enable)."""
    admin = AIOKafkaAdminClient(**connection(settings))
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics() if not t["error_code"]}
    finally:
        await admin.close()
    return [
        TopicPartition(topic, p["partition"])
        for topic in topics
        if topic in described
        for p in sorted(described[topic]["partitions"], key=lambda p: p["partition"])
    ]


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
        return new_producer(self._settings, client_id=f"{self._client_id}-relay")

    async def start(self) -> None:
        self._producer = self._new()
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, topic: str, key: bytes, payload: bytes, headers: dict[str, str]) -> asyncio.Future[Any]:
        """Hand the record to the producer; returns the future of Kafka's acknowledgement."""
        encoded = [(k, v.encode()) for k, v in headers.items()]
        acknowledged: asyncio.Future[Any] = await started(self._producer).send(topic, payload, key=key, headers=encoded)
        return acknowledged

    async def reset(self, error: BaseException) -> None:
        if not isinstance(error, KafkaError):
            return  # a database error: the producer is fine
        log.warning("relay producer: %r; starting a new producer", error)
        old, new = self._producer, self._new()
        self._producer = new
        if old is not None:
            try:
                await old.stop()
            except Exception:  # noqa: BLE001 - it is being replaced because it is broken
                pass
        await new.start()


class RepeatsHeldBack(logging.Filter):
    """Lets aiokafka's warnings and errors through at most once per `every_s` for each logger
    and message template, and says how many were held back meanwhile.

    While the broker is away, a producer with records pending spins in aiokafka 0.14: its sender
    asks for metadata, the connection is refused at once, and it asks again with no pause. One
    such process logged about 11,000 records a second ("Unable connect to node", "Unable to
    update metadata"), and its disk fills at that pace for as long as the broker is down. The
    loop keeps a core busy, logged or not, and nothing in aiokafka's public API paces it; this
    keeps what the log says and drops the repeats. (A filter of our own: the standard library
    has none that limits a rate, and a package for twenty lines is not worth it.)
    """

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s = every_s
        # (logger, template) -> (when one was last let through, how many were held back since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith("aiokafka"):
            return True  # a group's joins and the like, a few a minute: each is worth a line
        key = (record.name, str(record.msg))
        last = self._seen.get(key)
        if last is not None and record.created - last[0] < self.every_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        self._seen[key] = (record.created, 0)
        if last is not None and last[1]:
            record.msg = f"{record.msg} [{last[1]} more like this in {self.every_s:.0f}s, not logged]"
        return True
