"""Rate limits of the merchant API: a flood of made-up API keys costs (almost) no queries, a
merchant over its rate gets 429 with Retry-After, and two instances together hold the limit."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.orders import store
from services.orders.app import create_app
from services.orders.settings import OrdersSettings
from tests.orders.support import ORDER, new_merchant, order_body
from tests.support import ops_client, running

FLOODER = "203.0.113.9"  # one client address


def made_up_key() -> str:
    """The shape of a real key (gk_ and 43 URL-safe characters), of nobody."""
    return "gk_" + secrets.token_urlsafe(32)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def make_settings(infra, database, topic_prefix) -> Callable[..., OrdersSettings]:
    def make(**limits: Any) -> OrdersSettings:
        return OrdersSettings(
            database_url=database,
            kafka_bootstrap_servers=infra.kafka_bootstrap,
            topic_prefix=topic_prefix,
            db_pool_size=4,
            **limits,
        )

    return make


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """Every query for an API key's merchant, as it happens."""
    seen: list[str] = []
    lookup = store.merchant_by_key_hash

    async def counted(pool, key_hash: str):
        seen.append(key_hash)
        return await lookup(pool, key_hash)

    monkeypatch.setattr(store, "merchant_by_key_hash", counted)
    return seen


@asynccontextmanager
async def client_of(app: FastAPI, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://orders.test") as c:
        yield c


async def test_a_flood_of_made_up_keys_costs_no_queries_past_the_address_burst(make_settings, lookups):
    settings = make_settings(auth_failures_per_s=0.01, auth_failures_burst=10, api_key_cache_s=60)
    async with running(create_app(settings)) as app, client_of(app) as admin, client_of(app, FLOODER) as flood:
        merchant = await new_merchant(admin)
        assert (await flood.get("/v1/orders", headers=merchant["headers"])).status_code == 200  # now remembered
        lookups.clear()

        # Not of a key's shape: refused without a lookup (each from an address of its own, so
        # that no address limit is reached).
        for i, token in enumerate(
            ["gk_nope", "ct_" + made_up_key()[3:], made_up_key() + "A", "x" * 46, "gk_" + "!" * 43]
        ):
            async with client_of(app, f"198.51.100.{i}") as one:
                r = await one.get("/v1/orders", headers=bearer(token))
            assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert lookups == [], "a malformed key costs no query"
        # One unknown key from many addresses: looked up once, then refused from memory.
        unknown = made_up_key()
        for i in range(20):
            async with client_of(app, f"192.0.2.{i}") as one:
                assert (await one.get("/v1/orders", headers=bearer(unknown))).status_code == 401
        assert len(lookups) == 1, "an unknown key is remembered as unknown"
        lookups.clear()

        # Random well-formed keys from one address: past its burst, 429 before any lookup.
        answers = [(await flood.get("/v1/orders", headers=bearer(made_up_key()))) for _ in range(200)]
        statuses = [r.status_code for r in answers]
        assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}, statuses
        assert len(lookups) == 10, "queries are bounded by the address's burst, not by the flood"
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert answers[-1].json()["status"] == 429
        # A key this instance knows still works from that address; a key it does not know waits.
        assert (await flood.get("/v1/orders", headers=merchant["headers"])).status_code == 200
        assert (await admin.get("/v1/orders", headers=bearer(made_up_key()))).status_code == 401, "others unaffected"


async def test_a_merchant_over_its_rate_gets_429_with_retry_after(make_settings):
    settings = make_settings(api_key_rate_per_s=0.1, api_key_rate_burst=3)
    async with running(create_app(settings)) as app, client_of(app) as c:
        merchant, other = await new_merchant(c), await new_merchant(c, "Shop Bánh Mì")
        r = await c.post("/v1/api-keys", headers=merchant["headers"])
        assert r.status_code == 201, r.text
        second_key = bearer(r.json()["api_key"])
        quote = {k: ORDER[k] for k in ("pickup", "dropoff", "parcel")}
        assert (await c.post("/v1/quotes", json=quote, headers=merchant["headers"])).status_code == 200
        assert (await c.post("/v1/orders", json=ORDER, headers=merchant["headers"])).status_code == 201
        r = await c.post("/v1/orders", json=order_body(external_id="HM-0002"), headers=merchant["headers"])
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        # A token every 10 s, the burst spent just now: the next is 10 s away, less the moment
        # the requests took (ceil: 10, or 9 on a host slow enough to take over a second).
        assert int(r.headers["retry-after"]) in (9, 10), r.headers["retry-after"]
        assert r.json()["status"] == 429
        r = await c.post("/v1/quotes", json=quote, headers=second_key)
        assert r.status_code == 429, "a merchant's keys share its limit: minting keys does not multiply it"
        assert (await c.get("/v1/orders", headers=other["headers"])).status_code == 200, "each merchant its own"
        async with ops_client(app) as ops:
            metrics = (await ops.get("/metrics")).text
        assert 'orders_rate_limited_total{limit="api_key"} 2.0' in metrics


async def test_two_instances_together_let_through_no_more_than_the_limit(make_settings, lookups):
    # No refill to speak of: the bursts alone, 4 requests per merchant and 4 failures per address.
    limits = {"api_key_rate_per_s": 0.001, "api_key_rate_burst": 4, "auth_failures_per_s": 0.001}
    settings = make_settings(instances=2, auth_failures_burst=4, **limits)
    async with (
        running(create_app(settings)) as one,
        running(create_app(settings)) as two,
        client_of(one) as a,
        client_of(two) as b,
        client_of(one, FLOODER) as flood_a,
        client_of(two, FLOODER) as flood_b,
    ):
        merchant = await new_merchant(a)
        statuses = [(await c.get("/v1/orders", headers=merchant["headers"])).status_code for c in (a, b) * 5]
        assert sorted(statuses) == [200] * 4 + [429] * 6, statuses
        lookups.clear()
        statuses = [
            (await c.get("/v1/orders", headers=bearer(made_up_key()))).status_code for c in (flood_a, flood_b) * 5
        ]
        assert sorted(statuses) == [401] * 4 + [429] * 6, statuses
        assert len(lookups) == 4
