"""API keys: a second key, the list, revocation seen by two instances on one database within the
cache time, the admin's revocations and the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from services.orders import store
from services.orders.app import create_app
from services.orders.settings import OrdersSettings
from tests.orders.support import ADMIN
from tests.support import eventually, running


@pytest.fixture
def settings(infra, database, topic_prefix) -> OrdersSettings:
    return OrdersSettings(
        database_url=database,
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_prefix=topic_prefix,
        db_pool_size=4,
        api_key_cache_s=0.5,
    )


@pytest.fixture
async def other_client(settings, app) -> AsyncIterator[httpx.AsyncClient]:
    """A second orders instance on the same database (started after the first one migrated it)."""
    async with (
        running(create_app(settings)) as other,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://orders-2.test") as c,
    ):
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_second_key_listed_and_revoked_is_refused_by_every_instance(client, other_client, merchant):
    first = merchant["headers"]
    r = await client.post("/v1/api-keys", headers=first)
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["api_key"].startswith("gk_") and second["api_key"].startswith(second["prefix"])
    listed = (await other_client.get("/v1/api-keys", headers=bearer(second["api_key"]))).json()
    assert [k["prefix"] for k in listed] == [merchant["api_key"][:10], second["prefix"]]
    assert all(set(k) == {"id", "prefix", "created_at"} for k in listed)
    # Both instances know (and remember) the second key.
    for c in (client, other_client):
        assert (await c.get("/v1/orders", headers=bearer(second["api_key"]))).status_code == 200

    assert (await client.delete(f"/v1/api-keys/{second['id']}", headers=first)).status_code == 204

    async def refused_everywhere():
        return all(
            [
                (await c.get("/v1/orders", headers=bearer(second["api_key"]))).status_code == 401
                for c in (client, other_client)
            ]
        )

    await eventually(refused_everywhere, timeout=5, what="the revoked key refused by both instances")
    assert (await other_client.get("/v1/orders", headers=first)).status_code == 200
    assert [k["id"] for k in (await client.get("/v1/api-keys", headers=first)).json()] == [listed[0]["id"]]
    # The last key stays: a merchant cannot lock itself out.
    r = await client.delete(f"/v1/api-keys/{listed[0]['id']}", headers=first)
    assert r.status_code == 409
    assert (await client.delete(f"/v1/api-keys/{second['id']}", headers=first)).status_code == 404


async def test_the_admin_revokes_any_key_and_the_audit_log_says_so(client, other_client, merchant):
    key_id = (await client.get("/v1/api-keys", headers=merchant["headers"])).json()[0]["id"]
    assert (await other_client.get("/v1/orders", headers=merchant["headers"])).status_code == 200
    assert (await client.delete(f"/v1/admin/api-keys/{key_id}", headers=merchant["headers"])).status_code == 401
    assert (await client.delete(f"/v1/admin/api-keys/{key_id}", headers=ADMIN)).status_code == 204
    assert (await client.delete(f"/v1/admin/api-keys/{key_id}", headers=ADMIN)).status_code == 404

    async def refused():
        return (await other_client.get("/v1/orders", headers=merchant["headers"])).status_code == 401

    await eventually(refused, timeout=5, what="the revoked key refused by the other instance")

    assert (await client.get("/v1/admin/audit", headers=merchant["headers"])).status_code == 401
    log = (await other_client.get("/v1/admin/audit", headers=ADMIN)).json()
    assert [(e["actor"], e["action"], e["target"]) for e in log["items"]] == [
        ("admin", "api_key.revoked", key_id),
        ("admin", "merchant.created", merchant["id"]),
    ]
    assert log["items"][0]["detail"] == {"merchant_id": merchant["id"]}
    page = (await client.get("/v1/admin/audit?limit=1", headers=ADMIN)).json()
    older = (await client.get(f"/v1/admin/audit?limit=1&cursor={page['next_cursor']}", headers=ADMIN)).json()
    assert [e["action"] for e in page["items"] + older["items"]] == ["api_key.revoked", "merchant.created"]
    assert older["next_cursor"] is None


async def test_two_revocations_at_once_cannot_revoke_the_last_key(client, merchant, settings, monkeypatch):
    # The first revocation stops inside its transaction once it has counted the live keys; the
    # second one runs meanwhile, to its end or until it waits for a lock the first one holds;
    # then the first one goes on. Each alone sees another live key: together they must not
    # leave the merchant without one.
    first = merchant["headers"]
    second = (await client.post("/v1/api-keys", headers=first)).json()
    first_id = next(
        k["id"] for k in (await client.get("/v1/api-keys", headers=first)).json() if k["id"] != second["id"]
    )
    counted, go_on = asyncio.Event(), asyncio.Event()
    count_live_keys = store.live_api_keys

    async def count_then_wait_the_first_time(conn: Any, merchant_id: UUID) -> int:
        live = await count_live_keys(conn, merchant_id)
        if not counted.is_set():
            counted.set()
            await go_on.wait()
        return live

    monkeypatch.setattr(store, "live_api_keys", count_then_wait_the_first_time)
    watcher = await asyncpg.connect(settings.database_url)
    try:
        revoke_first = asyncio.create_task(client.delete(f"/v1/api-keys/{first_id}", headers=first))
        await asyncio.wait_for(counted.wait(), 10)
        revoke_second = asyncio.create_task(client.delete(f"/v1/api-keys/{second['id']}", headers=first))

        async def second_ended_or_waits_for_a_lock() -> bool:
            return revoke_second.done() or await watcher.fetchval(
                """SELECT count(*) > 0 FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
                     AND query LIKE '%api_keys%'"""
            )

        await eventually(second_ended_or_waits_for_a_lock, timeout=10, what="the second revocation to end or wait")
        go_on.set()
        answers = sorted([(await revoke_first).status_code, (await revoke_second).status_code])
        live = await watcher.fetchval(
            "SELECT count(*) FROM api_keys WHERE merchant_id = $1 AND revoked_at IS NULL", UUID(merchant["id"])
        )
    finally:
        go_on.set()
        await watcher.close()
    assert answers == [204, 409]
    assert live == 1
