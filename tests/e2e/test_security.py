"""Nobody gets in where they do not belong, secrets are never stored in the clear, and text that
looks like SQL stays text. Against the services as real processes (that SQL is always
parameterized is read from the source: tests/foundation/test_static.py)."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.system import LOGS, Proc
from tests.e2e.test_flows import City
from tests.infra import free_port
from tests.support import eventually
from tools.client import ApiError, Giao

pytestmark = pytest.mark.e2e

INJECTION = "Robert'); DROP TABLE orders;-- \" OR 1=1 --"


@pytest.fixture
async def city(system):
    async with Giao(system.endpoints()) as client:
        yield City(system, client)


async def test_merchants_see_and_touch_only_their_own_orders(city):
    key_a = await city.merchant()
    order = await city.order()
    key_b = (await city.client.create_merchant("Shop khác", "0911111111"))["api_key"]
    for call in (city.client.get_order(key_b, order["id"]), city.client.cancel_order(key_b, order["id"])):
        with pytest.raises(ApiError) as denied:
            await call
        assert denied.value.status == 404, "another merchant's order is 404, never 403"
    assert all(o["id"] != order["id"] for o in (await city.client.list_orders(key_b))["items"])
    assert order["id"] in [o["id"] for o in (await city.client.list_orders(key_a))["items"]]
    for bad in ("", "Bearer nope", f"Bearer {key_a}x"):
        r = await city.client.http.get(
            f"{city.system.procs['orders'][0].url}/v1/orders", headers={"Authorization": bad} if bad else {}
        )
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")


async def test_couriers_see_and_act_only_on_their_own_jobs(city):
    await city.merchant()
    x = await city.courier(dlat=0.001)
    y = await city.courier(dlat=0.05)
    order = await city.order()
    await city.offer_for(x, order["id"])
    assert all(j["order_id"] != order["id"] for j in await city.client.jobs(y))
    for action, body in (
        ("accept", None),
        ("decline", None),
        ("pickup", None),
        ("return", None),
        ("fail", {"reason": "other"}),
        ("deliver", {"delivery_code": order["delivery_code"], "cod_collected_vnd": 150_000}),
    ):
        with pytest.raises(ApiError) as denied:
            await city.client.job_action(y, order["id"], action, body)
        assert denied.value.status == 404, (action, denied.value.status)
    await city.client.job_action(x, order["id"], "accept")


async def test_admin_endpoints_need_the_admin_token(system):
    async with httpx.AsyncClient() as http:
        for url, body in (
            (f"{system.procs['orders'][0].url}/v1/admin/merchants", {"name": "X", "phone": "0912345678"}),
            (
                f"{system.procs['dispatch'][0].url}/v1/admin/couriers",
                {"name": "X", "phone": "0912345678", "vehicle": "car"},
            ),
        ):
            for headers in ({}, {"Authorization": "Bearer dev-admin-token"}, {"Authorization": "Basic YWRtaW4="}):
                r = await http.post(url, json=body, headers=headers)
                assert r.status_code == 401, (url, headers, r.status_code)
        r = await http.get(f"{system.procs['dispatch'][0].url}/v1/admin/jobs/{uuid.uuid4()}")
        assert r.status_code == 401


@pytest.mark.parametrize("service", ["orders", "dispatch"])
@pytest.mark.parametrize("env", ["production", "staging"])
def test_outside_development_the_default_secrets_are_refused(service, env):
    # tracking holds neither secret (tests/foundation/test_settings.py)
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("GIAO_")}
    env_vars.update(GIAO_ENV=env, **{f"GIAO_{service.upper()}_PORT": "1"})
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env=env_vars,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "GIAO_ADMIN_TOKEN must be set" in result.stderr


async def test_secrets_are_stored_hashed(city):
    key = await city.merchant()
    order = await city.order()
    token = await city.courier()
    for service, secret in (("orders", key), ("dispatch", token)):
        conn = await asyncpg.connect(city.system.databases[service])
        try:
            tables = [
                r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            ]
            for table in tables:
                found = await conn.fetchval(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE $1', f"%{secret}%")
                assert found == 0, f"{service}.{table} holds a bearer secret in the clear"
        finally:
            await conn.close()
    # The delivery code is the merchant's to see, and never travels in plain text: dispatch holds only a hash.
    conn = await asyncpg.connect(city.system.databases["dispatch"])
    try:

        async def job_known():
            return await conn.fetchval("SELECT count(*) FROM jobs WHERE order_id = $1", uuid.UUID(order["id"]))

        await eventually(job_known, what="dispatch to know the order")
        for table in [
            r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        ]:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t WHERE t::text LIKE $1', f"%{order['id']}%")
            assert not any(
                f'"{order["delivery_code"]}"' in r["row"] or f",{order['delivery_code']}," in r["row"] for r in rows
            ), f"dispatch.{table} holds the delivery code in the clear"
    finally:
        await conn.close()


async def test_sql_looking_text_is_stored_as_text(city):
    await city.merchant()
    body = {
        "external_id": "x'; DELETE FROM orders;--",
        "pickup": {"name": INJECTION, "phone": "0912345678", "address": INJECTION, "lat": city.lat, "lng": city.lng},
        "dropoff": {"name": INJECTION, "phone": "0903123456", "address": "1 Lê Lợi", "lat": city.lat, "lng": city.lng},
        "parcel": {"weight_grams": 100, "description": INJECTION},
        "note": INJECTION,
    }
    order = await city.client.place_order(city.key, body)
    again = await city.client.get_order(city.key, order["id"])
    assert again["pickup"]["name"] == INJECTION and again["note"] == INJECTION
    assert again["external_id"] == "x'; DELETE FROM orders;--"
    assert len((await city.client.list_orders(city.key))["items"]) == 1


async def test_wrong_delivery_codes_are_limited(city):
    await city.merchant()
    courier = await city.courier()
    order = await city.order()
    await city.offer_for(courier, order["id"])
    await city.client.job_action(courier, order["id"], "accept")
    await city.client.job_action(courier, order["id"], "pickup")
    wrong = f"{(int(order['delivery_code']) + 1) % 1_000_000:06d}"
    statuses = []
    for _ in range(8):
        try:
            await city.client.job_action(
                courier, order["id"], "deliver", {"delivery_code": wrong, "cod_collected_vnd": 150_000}
            )
        except ApiError as exc:
            statuses.append(exc.status)
    assert statuses[0] == 422 and statuses[-1] == 429, statuses
    # Locked: even the right code waits now, so the million codes cannot be walked.
    with pytest.raises(ApiError) as locked:
        await city.client.job_action(
            courier, order["id"], "deliver", {"delivery_code": order["delivery_code"], "cod_collected_vnd": 150_000}
        )
    assert locked.value.status == 429


async def test_the_merchant_clears_a_delivery_code_lock_of_their_own_order(city):
    """Through orders' API, an event and dispatch's consumer: the lock on a picked-up order
    goes, and the courier delivers with the right code; nobody else's order, nothing before
    the pickup."""
    other_key = await city.merchant()
    key = await city.merchant()
    courier = await city.courier()
    order = await city.order()
    unlock = f"{city.system.url_of('orders')}/v1/orders/{order['id']}/delivery-code/unlock"
    await city.client.call("unlock", "POST", unlock, token=key, expect=(409,))  # not picked up yet
    await city.offer_for(courier, order["id"])
    for action in ("accept", "pickup"):
        await city.client.job_action(courier, order["id"], action)
    wrong = {"delivery_code": f"{(int(order['delivery_code']) + 1) % 1_000_000:06d}", "cod_collected_vnd": 150_000}
    right = {"delivery_code": order["delivery_code"], "cod_collected_vnd": 150_000}
    for _ in range(6):
        with pytest.raises(ApiError):
            await city.client.job_action(courier, order["id"], "deliver", wrong)
    with pytest.raises(ApiError) as locked:
        await city.client.job_action(courier, order["id"], "deliver", right)
    assert locked.value.status == 429

    await city.status(order, "picked_up")
    await city.client.call("unlock", "POST", unlock, token=other_key, expect=(404,))  # not theirs
    await city.client.call("unlock", "POST", unlock, token=key, expect=(202,))

    async def delivered():
        try:
            return await city.client.job_action(courier, order["id"], "deliver", right)
        except ApiError as exc:
            assert exc.status == 429, exc
            return None

    await eventually(delivered, what="the lock cleared by dispatch")
    audit = await city.client.call(
        "audit", "GET", f"{city.system.url_of('dispatch')}/v1/admin/audit", token=city.system.admin_token
    )
    cleared = [a for a in audit["items"] if a["action"] == "job.code_lock_cleared" and a["target"] == order["id"]]
    assert [a["actor"].split(":")[0] for a in cleared] == ["merchant"], cleared


async def test_tracking_lookups_are_rate_limited(system):
    strict = system.add(
        "tracking",
        {
            "GIAO_TRACKING_RATE_LIMIT_EXEMPT": "",
            "GIAO_TRACKING_RATE_LIMIT_PER_S": "5",
            "GIAO_TRACKING_RATE_LIMIT_BURST": "10",
        },
    )
    try:
        strict.wait_ready()
        async with httpx.AsyncClient() as http:
            answers = [await http.get(f"{strict.url}/v1/tracking/NOSUCHCODE23") for _ in range(30)]
        # Past the burst of 10 most are refused; one may pass now and then, as the bucket
        # refills at 5/s (a 31st request right after the 30th could be that one).
        limited = [a for a in answers if a.status_code == 429]
        assert answers[0].status_code == 404 and len(limited) >= 10, [a.status_code for a in answers]
        assert all(int(a.headers["Retry-After"]) >= 1 for a in limited)
    finally:
        strict.terminate()
        system.procs["tracking"].remove(strict)


async def test_two_dispatch_instances_on_one_port_hold_a_couriers_limit_together(city):
    """Two instances sharing a port (SO_REUSEPORT, as deploy/local runs them) each enforce half
    of a courier's limit (GIAO_DISPATCH_INSTANCES=2), so together they let through no more
    than the limit, with no I/O between them. HTTP only and a burst without refill to speak of,
    so that the count does not depend on the machine's speed."""
    token = (await city.client.create_courier("Phạm Văn Đức", "0912345678", "motorbike"))["token"]
    base = city.system.procs["dispatch"][0]
    shared = free_port()
    strict = {
        "GIAO_DISPATCH_PORT": str(shared),
        "GIAO_DISPATCH_INSTANCES": "2",
        "GIAO_DISPATCH_BACKGROUND": "false",
        "GIAO_DISPATCH_COURIER_RATE_PER_S": "0.01",
        "GIAO_DISPATCH_COURIER_RATE_BURST": "10",
    }
    pair = []
    for i in range(2):
        own = free_port()
        env = {**base.env, **strict, "GIAO_INSTANCE_PORT": str(own), "GIAO_OPS_PORT": str(free_port())}
        pair.append(Proc("dispatch", own, env, LOGS / f"{city.system.prefix}dispatch-strict-{i}.log"))
    try:
        for proc in pair:
            proc.start()
        for proc in pair:
            proc.wait_ready()
        url = f"http://127.0.0.1:{shared}/v1/courier/jobs"
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20), timeout=60) as http:
            answers = await asyncio.gather(
                *(http.get(url, headers={"Authorization": f"Bearer {token}"}) for _ in range(60))
            )
            refused = []
            for proc in pair:  # each on a port of its own
                metrics = (await http.get(f"{proc.ops_url}/metrics")).text.splitlines()
                line = next(m for m in metrics if m.startswith('dispatch_rate_limited_total{limit="courier"}'))
                refused.append(float(line.split()[-1]))
    finally:
        for proc in pair:
            proc.terminate()
    statuses = collections.Counter(r.status_code for r in answers)
    assert all(refused) and sum(refused) == statuses[429], f"both instances refused some: {refused}, {statuses}"
    assert statuses[200] == 10, f"5 from each, the limit's burst in all: {statuses}"
