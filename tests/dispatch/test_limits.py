"""Rate limits of the courier API: a courier over its rate gets 429 with Retry-After, and a
flood of made-up tokens from one address costs no queries past the address's burst."""

from __future__ import annotations

import secrets

import httpx

from services.dispatch import store_couriers

FLOODER = "203.0.113.9"


def made_up_token() -> str:
    return "ct_" + secrets.token_urlsafe(32)


async def test_a_courier_over_its_rate_gets_429_with_retry_after(start):
    d = await start(courier_rate_per_s=0.1, courier_rate_burst=3, background=False)
    courier, other = await d.new_courier(at=None), await d.new_courier(name="Lê Thị Hoa", at=None)
    point = {"points": [{"lat": 20.95, "lng": 107.07, "at": "2026-01-01T08:00:00+07:00"}]}
    assert (await d.client.get("/v1/courier/jobs", headers=courier.auth)).status_code == 200
    assert (await d.client.post("/v1/courier/locations", json=point, headers=courier.auth)).status_code == 202
    assert (await d.client.get("/v1/courier/jobs", headers=courier.auth)).status_code == 200
    r = await d.client.post("/v1/courier/locations", json=point, headers=courier.auth)
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    # A token every 10 s, the burst spent just now: the next is 10 s away, less the moment the
    # requests took (ceil: 10, or 9 on a host slow enough to take over a second).
    assert int(r.headers["retry-after"]) in (9, 10) and r.json()["status"] == 429, r.headers["retry-after"]
    assert r.json()["type"] == "https://giao.vn/problems/429"  # not a lockout: the app waits and resends
    r = await d.client.post(f"/v1/courier/jobs/{other.id}/accept", headers=courier.auth)
    assert r.status_code == 429, "steps too"
    assert (await d.client.get("/v1/courier/jobs", headers=other.auth)).status_code == 200, "each courier its own"
    assert 'dispatch_rate_limited_total{limit="courier"} 2.0' in await d.metrics()


async def test_a_flood_of_made_up_tokens_costs_no_queries_past_the_address_burst(start, monkeypatch):
    d = await start(auth_failures_per_s=0.01, auth_failures_burst=5, background=False)
    lookups: list[str] = []
    lookup = store_couriers.couriers_by_secret_hashes

    async def counted(pool, digests: list[str]):
        lookups.extend(digests)
        return await lookup(pool, digests)

    monkeypatch.setattr(store_couriers, "couriers_by_secret_hashes", counted)
    transport = httpx.ASGITransport(app=d.app, client=(FLOODER, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://dispatch.test") as flood:
        for token in ("ct_not-a-token", "gk_" + made_up_token()[3:], ""):
            r = await d.client.get("/v1/courier/jobs", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
        assert lookups == [], "a malformed token costs no query"
        statuses = [
            (await flood.get("/v1/courier/jobs", headers={"Authorization": f"Bearer {made_up_token()}"})).status_code
            for _ in range(100)
        ]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
    assert len(lookups) == 5
    courier = await d.new_courier(at=None)
    assert (await d.client.get("/v1/courier/jobs", headers=courier.auth)).status_code == 200, "other addresses go on"
