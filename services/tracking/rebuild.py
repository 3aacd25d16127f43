"""Rebuild the read model from the topics: `python -m services.tracking rebuild`.

The read model is only a projection of the events on giao.order-tracking.v1 and giao.dispatch.v1,
so it can be thrown away and made again, after a bug fix in the projection, say:

1. Stop every tracking instance (the command refuses while a consumer group has members:
   Kafka refuses the offset commit then).
2. `python -m services.tracking rebuild` (same environment as the service: database URL,
   Kafka, topic prefix). It moves the status consumer group (`tracking-status`) back to
   the beginning of both topics and the location group (`tracking-locations`) to their
   end (old pings are worthless: the next ping of each courier within a second says where
   they are), then empties the read model and the status consumer's inbox rows.
3. Start the instances: they consume everything from the beginning and the read model
   fills again; tracking answers 404 for codes it has not reached yet meanwhile.

Offsets are moved before the tables are emptied: should the command stop in between, a
restart replays into the old read model, where the inbox makes every replayed event a
harmless duplicate.

How far back it reaches: as far as the topics' retention, 7 days by default
(`log.retention.hours=168` in deploy/local/kafka/server.properties.in). Orders whose
`order.trackable` is older than that come back without their tracking code and stay
invisible (404): keep retention above the longest time a customer may still look a
parcel up, or rebuild only within it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from aiokafka.structs import OffsetAndMetadata

from services.tracking import store
from services.tracking.app import LOCATION_CONSUMER, STATUS_CONSUMER
from services.tracking.handlers import CONSUMER
from services.tracking.settings import TrackingSettings
from shared.db import create_pool, migrate
from shared.events import COURIER_LOCATIONS_TOPIC, DISPATCH_TOPIC, ORDER_TRACKING_TOPIC
from shared.kafka_clients import connection, existing_partitions

log = logging.getLogger(__name__)


class RebuildRefused(Exception):
    pass


@dataclass(frozen=True)
class RebuildReport:
    replay_from_start: dict[str, int]  # partitions moved to their beginning, per topic
    skip_to_end: dict[str, int]  # partitions moved to their end, per topic


async def rebuild(settings: TrackingSettings) -> RebuildReport:
    status_group = f"{settings.topic_prefix}{STATUS_CONSUMER}"
    location_group = f"{settings.topic_prefix}{LOCATION_CONSUMER}"
    replay = await _move_offsets(
        settings, status_group, [settings.topic(ORDER_TRACKING_TOPIC), settings.topic(DISPATCH_TOPIC)], to_end=False
    )
    skip = await _move_offsets(settings, location_group, [settings.topic(COURIER_LOCATIONS_TOPIC)], to_end=True)
    # As the owner role when there is one: emptying the read model (TRUNCATE) is not the
    # runtime role's to do.
    pool = await create_pool(settings.migration_database_url or settings.database_url, min_size=1, max_size=2)
    try:
        await migrate(pool, Path(__file__).parent / "migrations")  # a fresh database has no tables yet
        async with pool.acquire() as conn:
            await store.clear_read_model(conn, CONSUMER)
    finally:
        await pool.close()
    return RebuildReport(replay, skip)


async def _move_offsets(settings: TrackingSettings, group: str, topics: list[str], *, to_end: bool) -> dict[str, int]:
    consumer = AIOKafkaConsumer(**connection(settings), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await existing_partitions(settings, topics)
        if not tps:
            return {}
        consumer.assign(tps)
        offsets = await (consumer.end_offsets(tps) if to_end else consumer.beginning_offsets(tps))
        try:
            # Kafka takes a commit from outside the group only while the group has no members.
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
        except (CommitFailedError, IllegalGenerationError, UnknownMemberIdError, RebalanceInProgressError) as exc:
            raise RebuildRefused(
                f"consumer group {group} is in use: stop every tracking instance first ({type(exc).__name__})"
            ) from None
        moved: dict[str, int] = {}
        for tp in tps:
            moved[tp.topic] = moved.get(tp.topic, 0) + 1
        return moved
    finally:
        await consumer.stop()


def main(settings: TrackingSettings | None = None) -> int:
    settings = settings or TrackingSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        report = asyncio.run(rebuild(settings))
    except RebuildRefused as exc:
        log.error("rebuild refused: %s", exc)
        return 2
    log.info(
        "read model emptied; replaying from the start: %s; locations from now on: %s. "
        "Start the tracking instances to rebuild.",
        report.replay_from_start,
        report.skip_to_end,
    )
    return 0
