"""An orders app on a database and topics of its own, started the way uvicorn would start it."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.orders.app import create_app
from services.orders.settings import OrdersSettings
from shared.settings import DEV_ADMIN_TOKEN
from tests.support import running

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}

ORDER = {
    "external_id": "HM-0001",
    "pickup": {"name": "Shop Hoa Mai", "phone": "0912 345 678",
               "address": "12 Lê Thánh Tông, Hồng Gai, Hạ Long, Quảng Ninh", "lat": 20.9511, "lng": 107.0735},
    "dropoff": {"name": "Nguyễn Văn An", "phone": "0987654321",
                "address": "45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh", "lat": 20.9586, "lng": 107.0452},
    "parcel": {"weight_grams": 1200, "description": "Áo dài lụa", "value_vnd": 850000},
    "cod_amount_vnd": 850000,
    "note": "Gọi trước khi giao",
}


def order_body(**changes: Any) -> dict[str, Any]:
    """The example order with top-level fields changed (None removes a field)."""
    body = copy.deepcopy(ORDER)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


@pytest.fixture
def settings(infra, database, topic_prefix) -> OrdersSettings:
    return OrdersSettings(database_url=database, kafka_bootstrap_servers=infra.kafka_bootstrap,
                          topic_prefix=topic_prefix, db_pool_size=10)


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


async def new_merchant(client: httpx.AsyncClient, name: str = "Shop Hoa Mai") -> dict[str, Any]:
    r = await client.post("/v1/admin/merchants", json={"name": name, "phone": "0912 345 678"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    body = r.json()
    return {**body, "headers": {"Authorization": f"Bearer {body['api_key']}"}}


@pytest.fixture
async def merchant(client) -> dict[str, Any]:
    return await new_merchant(client)
