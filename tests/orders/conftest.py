"""An orders app on a database and topics of its own, started the way uvicorn would start it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.orders.app import create_app
from services.orders.settings import OrdersSettings
from tests.orders.support import new_merchant
from tests.support import running


@pytest.fixture
def settings(infra, database, topic_prefix) -> OrdersSettings:
    return OrdersSettings(
        database_url=database, kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix, db_pool_size=10
    )


@pytest.fixture
async def app(settings) -> AsyncIterator[FastAPI]:
    async with running(create_app(settings)) as app:
        yield app


@pytest.fixture
async def outbox_kept(app) -> None:
    """The app's outbox relay stopped: the events a test writes stay in the outbox for it to
    read. (Kafka creates the test's topics on the first publish, so a running relay would
    publish and delete them while the test looks.)"""
    await app.state.runtime.relay.stop()


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orders.test") as c:
        yield c


@pytest.fixture
async def merchant(client) -> dict[str, Any]:
    return await new_merchant(client)
