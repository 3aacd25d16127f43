"""Helpers of the tracking tests: the test's topics, a tracking app started on them, the
app behind a real uvicorn server, events produced to the topics, an SSE stream read in the
background.

SSE needs a real server: httpx's ASGI transport buffers the whole response, and a stream
never ends on its own before a final status."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import FastAPI

from services.tracking.app import create_app
from services.tracking.settings import TrackingSettings
from shared.events import TOPICS
from shared.kafka_clients import connection
from tests import support
from tests.support import produce
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(app: FastAPI, config: uvicorn.Config | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind a real uvicorn server (its runtime already started): on a free port, or
    as `config` says (such as shared.service's production configuration)."""
    config = config or uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", timeout_graceful_shutdown=1
    )
    config.lifespan = "off"  # the runtime is started by `running`
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # it failed to start: say why
        return srv.started

    await support.eventually(started, what="uvicorn to start")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{config.port}", timeout=10) as c:
            yield c
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


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


class Stream:
    """Reads one SSE stream in the background: raw text, and the events as (name, data)."""

    def __init__(self, http: httpx.AsyncClient, code: str) -> None:
        self.raw: list[str] = []
        self.events: list[tuple[str, Any]] = []
        self.comments = 0
        self.status: int | None = None
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._read(http, code))

    async def _read(self, http: httpx.AsyncClient, code: str) -> None:
        try:
            async with http.stream(
                "GET", f"/v1/tracking/{code}/events", timeout=httpx.Timeout(10, read=30)
            ) as response:
                self.status = response.status_code
                name, data = "message", []
                async for line in response.aiter_lines():
                    self.raw.append(line)
                    if line == "":
                        if data:
                            self.events.append((name, orjson.loads("\n".join(data))))
                        name, data = "message", []
                    elif line.startswith(":"):
                        self.comments += 1
                    elif line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        finally:
            self.ended.set()

    def states(self) -> list[dict[str, Any]]:
        return [data for name, data in self.events if name == "tracking"]

    async def seen(self, check: Callable[[dict[str, Any]], bool]) -> bool:
        return any(check(state) for state in self.states())

    async def finished(self, timeout: float = 20) -> None:
        await asyncio.wait_for(self._task, timeout)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
