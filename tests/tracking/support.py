"""Helpers of the tracking tests: the test's topics, a tracking app started on them, events
produced to the topics, a parcel's SSE stream read in the background (tests.support.serving
puts the app behind a real server, as streams need)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import FastAPI

from services.tracking.app import create_app
from services.tracking.settings import TrackingSettings
from shared.events import TOPICS
from shared.kafka_clients import connection
from tests import support
from tests.support import EventStream, produce
from tests.tracking.stories import Item


async def create_topics(settings: TrackingSettings) -> None:
    """The test's topics before any consumer subscribes (no wait for auto-creation).

    One partition each: events of different orders keep the order they were sent in, so a
    test can send a marker after a replay and know that the replay was consumed first.
    """
    admin = AIOKafkaAdminClient(**connection(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topic(t), 1, 1) for t in TOPICS])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


def running(settings: TrackingSettings) -> contextlib.AbstractAsyncContextManager[FastAPI]:
    return support.running(create_app(settings))


async def send(settings: TrackingSettings, *items: Item) -> None:
    """Produce events to the test's topics, keyed by subject as the producers key them."""
    by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
    for topic, event in items:
        by_topic.setdefault(topic, []).append((event.subject.encode(), event.model_dump_json().encode()))
    await asyncio.gather(
        *(
            produce(settings.kafka_bootstrap_servers, settings.topic(topic), values)
            for topic, values in by_topic.items()
        )
    )


class Stream(EventStream):
    """One parcel's SSE stream, read in the background."""

    def __init__(self, http: httpx.AsyncClient, code: str) -> None:
        super().__init__(http, f"/v1/tracking/{code}/events")

    def states(self) -> list[dict[str, Any]]:
        return [data for name, data in self.events if name == "tracking"]

    async def seen(self, check: Callable[[dict[str, Any]], bool]) -> bool:
        return any(check(state) for state in self.states())
