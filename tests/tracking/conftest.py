"""Fixtures of the tracking tests: settings on a database and topics of the test's own, the
app started on them, an HTTP client on it in-process or through a real uvicorn server.
The helpers they use are in tests/tracking/support.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.tracking.settings import TrackingSettings
from tests.support import serving
from tests.tracking.support import create_topics, running


@pytest.fixture
def settings(infra, database, topic_prefix) -> TrackingSettings:
    return TrackingSettings(
        database_url=database,
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_prefix=topic_prefix,
        pool_size=5,
        response_floor_ms=5,
        heartbeat_s=0.2,
        rate_limit_per_s=1000,
        rate_limit_burst=1000,
        shutdown_grace_s=5,
    )


@pytest.fixture
async def app(settings) -> AsyncIterator[FastAPI]:
    await create_topics(settings)
    async with running(settings) as app:
        yield app


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tracking.test") as c:
        yield c


@pytest.fixture
async def server(app) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app) as c:
        yield c
