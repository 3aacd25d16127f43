"""End to end: the three services as real processes, driven only through their public APIs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import eventually
from tools.client import ApiError, Giao

pytestmark = pytest.mark.e2e

FINAL = {"delivered", "returned", "cancelled", "expired"}


class City:
    """One test's corner of the map: a merchant and helpers to make couriers and orders there."""

    def __init__(self, system, client: Giao) -> None:
        self.system = system
        self.client = client
        self.lat, self.lng = system.spot()
        self.key = ""
        self.orders: list[dict] = []

    async def merchant(self) -> str:
        self.key = (await self.client.create_merchant("Cửa hàng Hòn Gai", "0912345678"))["api_key"]
        return self.key

    async def courier(self, *, dlat: float = 0.002, vehicle: str = "motorbike", online: bool = True) -> str:
        token = (await self.client.create_courier("Trần Văn Minh", "0987654321", vehicle))["token"]
        if online:
            await self.client.set_status(token, True, self.lat + dlat, self.lng)
        return token

    async def order(self, cod: int = 150_000) -> dict:
        body = {
            "external_id": f"E2E-{uuid.uuid4().hex[:8]}",
            "pickup": {
                "name": "Shop Thu Trang",
                "phone": "0912345678",
                "address": "Số 5 Lê Thánh Tông, Hồng Gai",
                "lat": self.lat,
                "lng": self.lng,
            },
            "dropoff": {
                "name": "Nguyễn Văn An",
                "phone": "0903123456",
                "address": "Số 12 Cao Xanh, Hạ Long",
                "lat": self.lat + 0.01,
                "lng": self.lng + 0.01,
            },
            "parcel": {"weight_grams": 1200, "description": "Chả mực"},
            "cod_amount_vnd": cod,
        }
        order = await self.client.place_order(self.key, body, idempotency_key=str(uuid.uuid4()))
        self.orders.append(order)
        return order

    async def offer_for(self, token: str, order_id: str, timeout: float = 15) -> dict:
        async def offered():
            return next(
                (j for j in await self.client.jobs(token) if j["order_id"] == order_id and j["status"] == "offered"),
                None,
            )

        return await eventually(offered, timeout=timeout, what=f"an offer of {order_id}")

    async def status(self, order: dict, expected: str, timeout: float = 15) -> dict:
        async def reached():
            o = await self.client.get_order(self.key, order["id"])
            return o if o["status"] == expected else None

        return await eventually(reached, timeout=timeout, what=f"order {order['id']} {expected}")

    async def services_agree(self) -> None:
        """orders and tracking show the same status for every order of this test."""

        async def agree():
            for order in self.orders:
                o = await self.client.get_order(self.key, order["id"])
                t = await self.client.parcel(order["tracking_code"])
                assert o["status"] == t.get("status"), (order["id"], o["status"], t.get("status"))
            return True

        await eventually(agree, timeout=10, what="orders and tracking to agree")


@pytest.fixture
async def city(system):
    async with Giao(system.endpoints()) as client:
        yield City(system, client)


async def test_full_lifecycle(city):
    await city.merchant()
    courier = await city.courier()
    order = await city.order(cod=250_000)
    offer = await city.offer_for(courier, order["id"])
    assert offer["offer_expires_at"] and offer["dropoff"] is None and offer["dropoff_area"]["area"] == "Hạ Long"

    accepted = await city.client.job_action(courier, order["id"], "accept")
    assert accepted["dropoff"]["phone"] == "+84903123456"
    assigned = await city.status(order, "assigned")
    assert assigned["courier"]["phone"] == "+84987654321"
    await city.client.job_action(courier, order["id"], "pickup")
    await city.client.send_locations(courier, [{"lat": city.lat + 0.005, "lng": city.lng + 0.005, "at": _now()}])

    async def tracking_shows_location():
        t = await city.client.parcel(order["tracking_code"])
        return t if t.get("status") == "picked_up" and t["courier"] and t["courier"]["location"] else None

    on_the_way = await eventually(tracking_shows_location, what="tracking to show the courier's location")
    assert on_the_way["courier"]["display_name"] == "Minh T." and on_the_way["eta_minutes"] >= 1

    with pytest.raises(ApiError) as wrong:
        await city.client.job_action(
            courier,
            order["id"],
            "deliver",
            {"delivery_code": _wrong(order["delivery_code"]), "cod_collected_vnd": 250_000},
        )
    assert wrong.value.status == 422
    with pytest.raises(ApiError) as short:
        await city.client.job_action(
            courier, order["id"], "deliver", {"delivery_code": order["delivery_code"], "cod_collected_vnd": 200_000}
        )
    assert short.value.status == 422
    await city.client.job_action(
        courier, order["id"], "deliver", {"delivery_code": order["delivery_code"], "cod_collected_vnd": 250_000}
    )
    done = await city.status(order, "delivered")
    assert [h["status"] for h in done["history"]] == ["placed", "assigned", "picked_up", "delivered"]

    async def tracking_delivered():
        t = await city.client.parcel(order["tracking_code"])
        return t if t.get("status") == "delivered" else None

    final = await eventually(tracking_delivered, what="tracking to show delivered")
    assert [s["status"] for s in final["timeline"]] == ["placed", "assigned", "picked_up", "delivered"]
    assert final["courier"] is None or final["courier"]["location"] is None
    assert await city.client.jobs(courier) == []
    await city.services_agree()


async def test_logs_carry_no_credentials_codes_phones_or_addresses(city):
    """A whole delivery, with the mistakes clients make (a wrong delivery code, an unknown
    tracking code, a made-up token), then every log line the services wrote is searched for
    what a log must never hold: credentials, codes, phones, addresses, names."""
    key = await city.merchant()
    courier = await city.courier()
    order = await city.order()
    await city.offer_for(courier, order["id"])
    for action in ("accept", "pickup"):
        await city.client.job_action(courier, order["id"], action)
    await city.client.send_locations(courier, [{"lat": city.lat + 0.004, "lng": city.lng, "at": _now()}])
    wrong_code = _wrong(order["delivery_code"])
    with pytest.raises(ApiError):
        await city.client.job_action(
            courier, order["id"], "deliver", {"delivery_code": wrong_code, "cod_collected_vnd": 150_000}
        )
    made_up_token = "cr_" + uuid.uuid4().hex
    with pytest.raises(ApiError) as refused:
        await city.client.jobs(made_up_token)
    assert refused.value.status == 401
    code = order["tracking_code"]
    unknown_code = ("Y" if code.startswith("Z") else "Z") + code[1:]  # never the order's own
    await city.client.track(unknown_code, expect=(404,))
    await city.client.job_action(
        courier, order["id"], "deliver", {"delivery_code": order["delivery_code"], "cod_collected_vnd": 150_000}
    )
    await city.status(order, "delivered")
    await eventually(lambda: city.client.parcel(code), what="tracking to know the order")  # a lookup in its log

    never = {
        "API key": key,
        "courier token": courier,
        "made-up token": made_up_token,
        "admin token": city.system.admin_token,
        "delivery code": order["delivery_code"],
        "wrong delivery code": wrong_code,
        "tracking code": order["tracking_code"],
        "unknown tracking code": unknown_code,
    }
    for phone in ("0912345678", "0903123456", "0987654321"):  # as sent and as stored (E.164)
        never[f"phone {phone}"] = phone
        never[f"phone +84{phone[1:]}"] = "+84" + phone[1:]
    for text in ("Lê Thánh Tông", "Cao Xanh", "Nguyễn Văn An", "Trần Văn Minh", "Shop Thu Trang"):
        never[text] = text
        never[f"{text} (JSON-escaped)"] = text.encode("ascii", "backslashreplace").decode().replace("\\x", "\\u00")
    logs = {p.log.name: p.log.read_text(errors="replace") for procs in city.system.procs.values() for p in procs}
    assert any(logs.values()), "the services wrote no log at all"
    found = [f"{what} in {name}" for name, text in logs.items() for what, value in never.items() if value in text]
    assert not found, found


async def test_failure_and_return(city):
    await city.merchant()
    courier = await city.courier()
    order = await city.order()
    await city.offer_for(courier, order["id"])
    for action in ("accept", "pickup"):
        await city.client.job_action(courier, order["id"], action)
    await city.client.job_action(courier, order["id"], "fail", {"reason": "recipient_unreachable"})
    await city.status(order, "delivery_failed")
    await city.client.job_action(courier, order["id"], "return")
    returned = await city.status(order, "returned")
    assert [h["status"] for h in returned["history"]] == [
        "placed",
        "assigned",
        "picked_up",
        "delivery_failed",
        "returned",
    ]
    await city.services_agree()


async def test_cancel_before_pickup_while_assigned_and_refused_after_pickup(city):
    await city.merchant()
    # 1. nobody online yet: the order waits, the merchant cancels it
    waiting = await city.order()
    cancelled = await city.client.cancel_order(city.key, waiting["id"], "Khách đổi ý")
    assert cancelled["cancellation"] == "requested"
    done = await city.status(waiting, "cancelled")
    assert done["cancellation"] == "done"

    # 2. assigned: cancelled, and the courier is free again
    courier = await city.courier()
    assigned = await city.order()
    await city.offer_for(courier, assigned["id"])
    await city.client.job_action(courier, assigned["id"], "accept")
    await city.status(assigned, "assigned")
    await city.client.cancel_order(city.key, assigned["id"])
    await city.status(assigned, "cancelled")
    assert await city.client.jobs(courier) == []
    with pytest.raises(ApiError) as late:
        await city.client.job_action(courier, assigned["id"], "pickup")
    assert late.value.status in (404, 409)

    # 3. picked up: refused, and the delivery goes on
    carried = await city.order()
    await city.offer_for(courier, carried["id"])
    await city.client.job_action(courier, carried["id"], "accept")
    await city.client.job_action(courier, carried["id"], "pickup")
    await city.status(carried, "picked_up")
    # the orders service itself answers 409 once it knows the parcel is picked up
    with pytest.raises(ApiError) as refused:
        await city.client.cancel_order(city.key, carried["id"])
    assert refused.value.status == 409
    await city.client.job_action(
        courier, carried["id"], "deliver", {"delivery_code": carried["delivery_code"], "cod_collected_vnd": 150_000}
    )
    await city.status(carried, "delivered")
    await city.services_agree()


async def test_cancel_racing_the_pickup_is_refused_by_dispatch(city):
    await city.merchant()
    courier = await city.courier()
    order = await city.order()
    await city.offer_for(courier, order["id"])
    await city.client.job_action(courier, order["id"], "accept")
    await city.status(order, "assigned")
    # The courier picks up, and the merchant's cancel arrives before orders heard of the pickup.
    await asyncio.gather(
        city.client.job_action(courier, order["id"], "pickup"),
        city.client.cancel_order(city.key, order["id"], expect=(202, 409)),
    )

    async def settled():
        o = await city.client.get_order(city.key, order["id"])
        return o if o["cancellation"] in (None, "refused") and o["status"] == "picked_up" else None

    settled_order = await eventually(settled, what="the cancel to be refused or never requested")
    assert settled_order["status"] == "picked_up"
    await city.services_agree()


async def test_offer_timeout_passes_to_the_next_courier(city):
    await city.merchant()
    near = await city.courier(dlat=0.001)
    far = await city.courier(dlat=0.02)
    order = await city.order()
    await city.offer_for(near, order["id"])  # the nearest first; it does not answer
    await city.offer_for(far, order["id"], timeout=10)
    assert all(j["order_id"] != order["id"] for j in await city.client.jobs(near)), "not back to the same courier"
    await city.client.job_action(far, order["id"], "accept")
    await city.status(order, "assigned")
    job = await city.client.admin_job(order["id"])
    assert len(job["offers"]) == 2
    await city.services_agree()


async def test_a_point_taken_just_before_going_online_shows_on_tracking(city):
    """Issue 22 (10): the status's position was stamped with the server's clock and a point
    stamped by a phone a little behind it was silently dropped, so tracking never showed them."""
    await city.merchant()
    courier = await city.courier()
    order = await city.order()
    await city.offer_for(courier, order["id"])
    await city.client.job_action(courier, order["id"], "accept")
    await city.client.job_action(courier, order["id"], "pickup")
    await city.client.set_status(courier, True, city.lat + 0.001, city.lng)  # the app resumes the shift
    point = {"lat": city.lat + 0.004, "lng": city.lng + 0.004, "at": _now(seconds_ago=3)}
    answer = await city.client.send_locations(courier, [point])

    async def tracking_shows_the_point():
        t = await city.client.parcel(order["tracking_code"])
        location = (t.get("courier") or {}).get("location")
        return location if location and abs(location["lat"] - point["lat"]) < 1e-6 else None

    await eventually(tracking_shows_the_point, what="tracking to show the courier at the point")
    assert answer["position_updated"] is True and answer["ignored_reason"] is None, answer


async def test_decline_passes_to_the_next_courier(city):
    await city.merchant()
    near = await city.courier(dlat=0.001)
    far = await city.courier(dlat=0.02)
    order = await city.order()
    await city.offer_for(near, order["id"])
    await city.client.job_action(near, order["id"], "decline")
    await city.offer_for(far, order["id"], timeout=5)
    await city.client.job_action(far, order["id"], "accept")
    assigned = await city.status(order, "assigned")
    assert assigned["courier"] is not None
    await city.services_agree()


async def test_nobody_online_means_expired(city):
    await city.merchant()
    await city.courier(online=False)
    order = await city.order()
    expired = await city.status(order, "expired", timeout=30)
    assert [h["status"] for h in expired["history"]] == ["placed", "expired"]
    await city.services_agree()


async def test_two_dispatch_instances_never_double_assign(system):
    """Couriers talk to both dispatch instances at once and accept everything they are offered."""
    clients = [Giao(system.endpoints(i)) for i in range(2)]
    try:
        city = City(system, clients[0])
        await city.merchant()
        couriers = [await city.courier(dlat=0.001 * (i + 1)) for i in range(6)]
        orders = await asyncio.gather(*(city.order() for _ in range(24)))
        accepted: dict[str, list[int]] = {}
        max_load: dict[int, int] = {}

        async def work(i: int, token: str) -> None:
            client = clients[i % 2]
            while sum(len(v) for v in accepted.values()) < len(orders):
                jobs = await client.jobs(token)
                max_load[i] = max(max_load.get(i, 0), len(jobs))
                for job in jobs:
                    if job["status"] == "offered":
                        try:
                            await client.job_action(token, job["order_id"], "accept")
                            accepted.setdefault(job["order_id"], []).append(i)
                            await client.job_action(token, job["order_id"], "pickup")
                            await client.job_action(
                                token,
                                job["order_id"],
                                "deliver",
                                {
                                    "delivery_code": next(
                                        o["delivery_code"] for o in orders if o["id"] == job["order_id"]
                                    ),
                                    "cod_collected_vnd": 150_000,
                                },
                            )
                        except ApiError as exc:
                            assert exc.status == 409, exc
                await asyncio.sleep(0.05)

        await asyncio.wait_for(asyncio.gather(*(work(i, t) for i, t in enumerate(couriers))), timeout=90)
        assert sorted(accepted) == sorted(o["id"] for o in orders)
        assert all(len(v) == 1 for v in accepted.values()), "an order had two couriers"
        assert all(load <= 3 for load in max_load.values()), f"over capacity: {max_load}"
        for order in orders:
            await city.status(order, "delivered")
        await city.services_agree()
    finally:
        for c in clients:
            await c.close()


async def test_dispatch_instances_share_one_port(system):
    """New connections to dispatch's port reach both instances (SO_REUSEPORT), as couriers' do."""

    async def healthz_served(http: httpx.AsyncClient, instance_url: str) -> float:
        text = (await http.get(f"{instance_url}/metrics")).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "http_requests_total" and sample.labels.get("route") == "/healthz"
        )

    instances = [p.ops_url for p in system.procs["dispatch"]]
    assert len(instances) == 2
    async with httpx.AsyncClient() as http:
        before = [await healthz_served(http, url) for url in instances]
        for _ in range(40):  # a connection each
            r = await http.get(f"{system.url_of('dispatch')}/healthz", headers={"connection": "close"})
            assert r.status_code == 200
        served = [await healthz_served(http, url) - b for url, b in zip(instances, before, strict=True)]
    assert sum(served) == 40 and min(served) > 0, served


def _now(seconds_ago: float = 0) -> str:
    from datetime import datetime, timedelta

    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"
