"""Dispatch's HTTP API through the real database, with its matcher and expiry loops running.

Orders arrive as orders' events handed to the consumer's handler (the broker is exercised
in test_integration.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.dispatch.service import couriers
from shared.events import COURIER_LOCATIONS_TOPIC, DISPATCH_TOPIC
from tests.dispatch.support import ADMIN, HA_LONG, Order, east, events_written, metric
from tests.support import eventually, read_topic, statements_run

# --- couriers ---------------------------------------------------------------------------------------


async def test_admin_creates_a_courier_with_a_token_shown_once(dispatch):
    r = await dispatch.client.post(
        "/v1/admin/couriers", headers=ADMIN, json={"name": "Trần Văn Minh", "phone": "0912 345 678", "vehicle": "van"}
    )
    assert r.status_code == 201
    body = r.json()
    assert body["name"] == "Trần Văn Minh" and body["capacity"] == 20 and body["token"].startswith("ct_")
    stored = await dispatch.pool.fetchrow(
        "SELECT phone, secret_hash FROM couriers WHERE id = $1", uuid.UUID(body["id"])
    )
    assert stored["phone"] == "+84912345678"
    assert body["token"] not in stored["secret_hash"]
    r = await dispatch.client.get(f"/v1/admin/couriers/{body['id']}", headers=ADMIN)
    assert r.json()["display_name"] == "Minh T." and r.json()["online"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Trần Văn Minh", "phone": "0912 345 678", "vehicle": "rocket"},
        {"name": "Trần Văn Minh", "phone": "12", "vehicle": "car"},
        {"name": "", "phone": "0912 345 678", "vehicle": "car"},
        {"phone": "0912 345 678", "vehicle": "car"},
    ],
)
async def test_invalid_couriers_are_422_naming_the_field(dispatch, body):
    r = await dispatch.client.post("/v1/admin/couriers", headers=ADMIN, json=body)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"]


async def test_admin_and_courier_routes_need_their_credentials(dispatch):
    body = {"name": "Trần Văn Minh", "phone": "0912 345 678", "vehicle": "car"}
    assert (await dispatch.client.post("/v1/admin/couriers", json=body)).status_code == 401
    courier = await dispatch.new_courier()
    assert (await dispatch.client.post("/v1/admin/couriers", json=body, headers=courier.auth)).status_code == 401
    assert (await dispatch.client.get("/v1/courier/jobs")).status_code == 401
    bad = {"Authorization": "Bearer ct_not-a-token"}
    assert (await dispatch.client.get("/v1/courier/jobs", headers=bad)).status_code == 401
    assert (await dispatch.client.get("/v1/courier/jobs", headers=ADMIN)).status_code == 401
    assert (await dispatch.client.get(f"/v1/admin/jobs/{uuid.uuid4()}", headers=courier.auth)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"online": True},
        {"online": True, "lat": 91, "lng": 107},
        {"online": True, "lat": 20.9, "lng": 181},
        {"online": False, "lat": 20.9},
        {"online": "maybe", "lat": 20.9, "lng": 107},
    ],
)
async def test_status_needs_a_valid_position_to_go_online(dispatch, body):
    courier = await dispatch.new_courier(at=None)
    r = await dispatch.client.put("/v1/courier/status", headers=courier.auth, json=body)
    assert r.status_code == 422, r.text


async def test_status_online_and_offline(dispatch):
    courier = await dispatch.new_courier(at=None)
    r = await dispatch.client.put(
        "/v1/courier/status", headers=courier.auth, json={"online": True, "lat": 20.95, "lng": 107.07}
    )
    assert r.status_code == 200 and r.json()["online"] is True and r.json()["capacity"] == 3
    r = await dispatch.client.put("/v1/courier/status", headers=courier.auth, json={"online": False})
    assert r.status_code == 200 and r.json()["online"] is False and r.json()["lat"] == 20.95


def _points(n: int, at: datetime | None = None) -> list[dict]:
    at = at or datetime.now(UTC)
    return [
        {"lat": 20.95 + i / 1e4, "lng": 107.07, "at": (at - timedelta(seconds=n - 1 - i)).isoformat()} for i in range(n)
    ]


@pytest.mark.parametrize(
    "points",
    [
        [],
        _points(101),
        [{"lat": 20.95, "lng": 107.07, "at": "2025-03-14T09:30:00"}],  # no offset
        [{"lat": 95, "lng": 107.07, "at": "2025-03-14T09:30:00+07:00"}],
        [{"lat": 20.95, "lng": 107.07, "at": "yesterday"}],
        "from the future",  # made when the test runs: a time made at collection may be past by then
    ],
)
async def test_invalid_location_batches_are_422(dispatch, points):
    if points == "from the future":
        points = _points(1, datetime.now(UTC) + timedelta(minutes=5))
    courier = await dispatch.new_courier()
    r = await dispatch.client.post("/v1/courier/locations", headers=courier.auth, json={"points": points})
    assert r.status_code == 422, r.text
    assert r.json()["errors"]


async def test_locations_keep_the_newest_point(dispatch):
    courier = await dispatch.new_courier()
    points = _points(100, datetime.now(UTC) + timedelta(seconds=1))  # newer than going online
    newest = points[-1]
    r = await dispatch.client.post(
        "/v1/courier/locations", headers=courier.auth, json={"points": list(reversed(points))}
    )
    assert r.status_code == 202  # no active job: nothing published
    assert r.json() == {"accepted": 100, "published": False, "position_updated": True, "ignored_reason": None}
    row = await dispatch.pool.fetchrow("SELECT lat, position_at FROM couriers WHERE id = $1", uuid.UUID(courier.id))
    assert row["lat"] == pytest.approx(newest["lat"])
    # an older batch arriving late does not move the courier back
    late = await dispatch.client.post("/v1/courier/locations", headers=courier.auth, json={"points": points[:1]})
    assert (late.json()["position_updated"], late.json()["ignored_reason"]) == (False, "older")
    assert await dispatch.pool.fetchval(
        "SELECT lat FROM couriers WHERE id = $1", uuid.UUID(courier.id)
    ) == pytest.approx(newest["lat"])


# --- the whole life of a job -------------------------------------------------------------------------


async def test_offer_accept_pickup_deliver(dispatch):
    courier = await dispatch.new_courier()
    order = await dispatch.place(Order(cod_amount_vnd=250_000))
    offer = await dispatch.offer_for(courier, order)
    assert offer["offer_expires_at"] and offer["cod_amount_vnd"] == 250_000 and offer["fee_vnd"] == 25_000
    assert offer["dropoff"] is None and offer["dropoff_area"]["area"] == "Bãi Cháy, Hạ Long, Quảng Ninh"
    assert offer["pickup"]["lat"] == HA_LONG[0] and offer["distance_m"] == 4200

    r = await dispatch.act(courier, order.id, "accept")
    assert r.status_code == 200 and r.json()["status"] == "assigned" and r.json()["offer_expires_at"] is None
    assert r.json()["dropoff"]["name"] == "Nguyễn Văn An" and r.json()["dropoff"]["phone"] == "+84987654321"
    assert (
        await dispatch.act(courier, order.id, "deliver", {"delivery_code": order.code, "cod_collected_vnd": 250_000})
    ).status_code == 409
    r = await dispatch.act(courier, order.id, "pickup")
    assert r.status_code == 200 and r.json()["status"] == "picked_up"
    assert [j["status"] for j in await dispatch.jobs(courier)] == ["picked_up"]

    r = await dispatch.act(courier, order.id, "deliver", {"delivery_code": "000000", "cod_collected_vnd": 250_000})
    assert r.status_code == 422 and r.json()["attempts_left"] == 4
    r = await dispatch.act(courier, order.id, "deliver", {"delivery_code": order.code, "cod_collected_vnd": 200_000})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "cod_collected_vnd"]
    r = await dispatch.act(courier, order.id, "deliver", {"delivery_code": order.code, "cod_collected_vnd": 250_000})
    assert r.status_code == 200 and r.json()["status"] == "delivered"
    assert await dispatch.jobs(courier) == []
    assert await dispatch.pool.fetchval("SELECT load FROM couriers WHERE id = $1", uuid.UUID(courier.id)) == 0
    assert await events_written(dispatch.pool) == {
        "delivery.offered": 1,
        "delivery.assigned": 1,
        "delivery.picked_up": 1,
        "delivery.delivered": 1,
    }


async def test_fail_then_return(dispatch):
    courier = await dispatch.new_courier(vehicle="bicycle")
    order = await dispatch.place(Order())
    await dispatch.offer_for(courier, order)
    await dispatch.act(courier, order.id, "accept")
    assert (await dispatch.act(courier, order.id, "return")).status_code == 409
    await dispatch.act(courier, order.id, "pickup")
    assert (await dispatch.act(courier, order.id, "fail", {"reason": "lost"})).status_code == 422
    assert (await dispatch.act(courier, order.id, "fail", {})).status_code == 422
    r = await dispatch.act(courier, order.id, "fail", {"reason": "recipient_unreachable"})
    assert r.status_code == 200 and r.json()["status"] == "delivery_failed"
    # the parcel is still with the courier: the bicycle (capacity 1) gets no new offer
    second = await dispatch.place(Order())
    assert (await dispatch.act(courier, order.id, "pickup")).status_code == 409
    r = await dispatch.act(courier, order.id, "return")
    assert r.status_code == 200 and r.json()["status"] == "returned"
    await dispatch.offer_for(courier, second)  # capacity back: the next order comes


async def test_another_couriers_job_is_404_and_bad_ids_are_404(dispatch):
    mine = await dispatch.new_courier(name="Lê Thị Hoa")
    other = await dispatch.new_courier(name="Phạm Văn Đức", at=east(20_000))
    order = await dispatch.place(Order())
    await dispatch.offer_for(mine, order)
    for action in ("accept", "decline", "pickup", "return"):
        assert (await dispatch.act(other, order.id, action)).status_code == 404, action
    assert (await dispatch.act(other, order.id, "fail", {"reason": "other"})).status_code == 404
    await dispatch.act(mine, order.id, "accept")
    assert (await dispatch.act(other, order.id, "pickup")).status_code == 404
    for bad in ("not-a-uuid", "123", str(uuid.uuid4())):
        assert (await dispatch.act(mine, bad, "accept")).status_code == 404
        assert (await dispatch.client.get(f"/v1/admin/jobs/{bad}", headers=ADMIN)).status_code == 404


async def test_the_nearest_courier_gets_the_offer_and_the_admin_sees_why(dispatch):
    far = await dispatch.new_courier(name="Vũ Văn Xa", at=east(700))
    near = await dispatch.new_courier(name="Đỗ Thị Gần", at=east(400))
    too_far = await dispatch.new_courier(name="Hoàng Văn Tít", at=east(60_000))
    order = await dispatch.place(Order())
    await dispatch.offer_for(near, order)
    assert await dispatch.jobs(far) == [] and await dispatch.jobs(too_far) == []

    r = await dispatch.client.get(f"/v1/admin/jobs/{order.id}", headers=ADMIN)
    assert r.status_code == 200
    job = r.json()
    assert job["status"] == "offered" and job["courier_id"] == near.id
    [offer] = job["offers"]
    assert offer["courier_id"] == near.id and offer["state"] == "open"
    why = offer["why"]
    assert why["distance_m"] == pytest.approx(400 * 1.3, rel=0.05)
    assert why["candidates_weighed"] == 2  # the search stops well short of the courier 60 km away
    assert (why["courier_load"], why["courier_capacity"]) == (0, 3)
    assert why["travel_estimate_s"] > 0 and why["search_rings"] >= 1 and why["summary"]


async def test_declined_and_expired_offers_go_to_the_next_courier_and_never_back(start):
    dispatch = await start(offer_timeout_s=1)
    first = await dispatch.new_courier(name="Ngô Văn Một", at=east(100))
    second = await dispatch.new_courier(name="Ngô Văn Hai", at=east(500))
    third = await dispatch.new_courier(name="Ngô Văn Ba", at=east(900))
    order = await dispatch.place(Order())
    await dispatch.offer_for(first, order)
    r = await dispatch.act(first, order.id, "decline")
    assert r.status_code == 200 and r.json() == {"order_id": order.id, "declined": True}
    assert (await dispatch.act(first, order.id, "decline")).status_code == 409
    await dispatch.offer_for(second, order)  # ... and the second lets it expire
    await dispatch.offer_for(third, order)
    assert (await dispatch.act(second, order.id, "accept")).status_code == 409
    assert (await dispatch.act(first, order.id, "accept")).status_code == 409
    assert (await dispatch.act(third, order.id, "accept")).status_code == 200
    offers = (await dispatch.client.get(f"/v1/admin/jobs/{order.id}", headers=ADMIN)).json()["offers"]
    assert [(o["courier_id"], o["state"]) for o in offers] == [
        (first.id, "declined"),
        (second.id, "expired"),
        (third.id, "accepted"),
    ]
    loads = await dispatch.pool.fetch("SELECT id::text, load FROM couriers")
    assert {r["id"]: r["load"] for r in loads} == {first.id: 0, second.id: 0, third.id: 1}
    # the first offer was the orders consumer's; the next two the matching loop's
    metrics = await dispatch.metrics()
    assert metric(metrics, "dispatch_offers_expired_total") == 1
    assert metric(metrics, "dispatch_matcher_offers_total") == 2
    assert metric(metrics, "dispatch_matcher_passes_total") >= 2


async def test_an_order_nobody_accepts_expires_after_the_window(start):
    dispatch = await start(window_s=1.5, offer_timeout_s=0.5)
    courier = await dispatch.new_courier()
    order = await dispatch.place(Order())
    await dispatch.offer_for(courier, order)
    lonely = await dispatch.place(Order(pickup=(10.77, 106.70)))  # nobody near Sài Gòn
    await eventually(lambda: _is(dispatch, order.id, "expired"), timeout=10, what="order expired")
    await eventually(lambda: _is(dispatch, lonely.id, "expired"), timeout=10, what="lonely order expired")
    assert await dispatch.pool.fetchval("SELECT load FROM couriers") == 0
    assert (await dispatch.act(courier, order.id, "accept")).status_code == 409
    assert metric(await dispatch.metrics(), "dispatch_orders_expired_total") == 2


async def _is(dispatch, order_id: str, status: str) -> bool:
    return await dispatch.job_status(order_id) == status


async def test_a_courier_never_holds_more_than_capacity(dispatch):
    bicycle = await dispatch.new_courier(vehicle="bicycle")
    orders = [await dispatch.place(Order()) for _ in range(3)]
    first = await eventually(lambda: dispatch.jobs(bicycle), what="an offer")
    assert len(first) == 1
    await dispatch.act(bicycle, first[0]["order_id"], "accept")
    still = await dispatch.pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'waiting'")
    assert still == 2 and len(await dispatch.jobs(bicycle)) == 1
    assert {o.id for o in orders} >= {first[0]["order_id"]}


async def test_going_offline_withdraws_open_offers(dispatch):
    leaving = await dispatch.new_courier(name="Bùi Văn Đi", at=east(50))
    staying = await dispatch.new_courier(name="Bùi Văn Ở", at=east(2000))
    order = await dispatch.place(Order())
    await dispatch.offer_for(leaving, order)
    r = await dispatch.client.put("/v1/courier/status", headers=leaving.auth, json={"online": False})
    assert r.json()["load"] == 0
    await dispatch.offer_for(staying, order)
    assert await dispatch.jobs(leaving) == []


async def test_wrong_codes_are_limited_per_job(dispatch):
    courier = await dispatch.new_courier()
    order = await dispatch.place(Order(code="123456", cod_amount_vnd=0))
    await dispatch.offer_for(courier, order)
    await dispatch.act(courier, order.id, "accept")
    await dispatch.act(courier, order.id, "pickup")
    wrong = {"delivery_code": "654321", "cod_collected_vnd": 0}
    lefts = [(await dispatch.act(courier, order.id, "deliver", wrong)).json()["attempts_left"] for _ in range(5)]
    assert lefts == [4, 3, 2, 1, 0]
    r = await dispatch.act(courier, order.id, "deliver", {"delivery_code": "123456", "cod_collected_vnd": 0})
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 900
    assert (
        await dispatch.act(courier, order.id, "deliver", {"delivery_code": "12345x", "cod_collected_vnd": 0})
    ).status_code == 422
    # the courier can still report the failed delivery
    assert (await dispatch.act(courier, order.id, "fail", {"reason": "refused"})).status_code == 200


async def test_location_events_only_while_carrying_and_once_per_second(dispatch):
    courier = await dispatch.new_courier()

    def post():
        return dispatch.client.post("/v1/courier/locations", headers=courier.auth, json={"points": _points(2)})

    assert (await post()).json()["published"] is False
    order = await dispatch.place(Order())
    await dispatch.offer_for(courier, order)
    assert (await post()).json()["published"] is False  # an offer is not a job
    await dispatch.act(courier, order.id, "accept")
    assert (await post()).json()["published"] is True
    assert (await post()).json()["published"] is False  # within the same second
    await eventually(lambda: _published_after_a_second(post), timeout=5, what="next second's event")
    assert (await events_written(dispatch.pool)).get("courier.location") == 2  # one per answer that said so


async def _published_after_a_second(post) -> bool:
    return (await post()).json()["published"]


async def test_a_position_and_its_event_are_one_statement_after_reading_the_jobs_carried(dispatch, infra):
    """A courier's commonest call holds their row, which a delivery and a matcher pass's
    reservation lock too, only while its statement runs: no BEGIN, no COMMIT, no second write."""
    courier = await dispatch.new_courier()
    order = await dispatch.place(Order())
    await dispatch.offer_for(courier, order)
    await dispatch.act(courier, order.id, "accept")
    point = couriers.Point(HA_LONG[0] + 0.001, HA_LONG[1], datetime.now(UTC))
    async with dispatch.pool.acquire() as conn, statements_run(conn) as statements:
        moved, published = await couriers.report_locations(
            conn, dispatch.settings, uuid.UUID(courier.id), "motorbike", [point]
        )
    assert (moved.kept, published) == (True, True)
    assert len(statements) == 2 and not any(q.split()[0] in ("BEGIN", "COMMIT") for q in statements), statements
    topic = dispatch.settings.topic(COURIER_LOCATIONS_TOPIC)
    published_events = [orjson.loads(r.value) for r in await read_topic(infra.kafka_bootstrap, topic, at_least=1)]
    [event] = published_events
    assert event["data"]["order_ids"] == [order.id] and event["data"]["lat"] == point.lat
    assert event["subject"] == courier.id and event["sequence"] == 1


# --- the cancel saga ----------------------------------------------------------------------------------


async def _cancel_answers(dispatch, infra) -> dict[str, list[str]]:
    """The cancel saga's answers per order, as published on the (prefixed) dispatch topic."""
    topic = dispatch.settings.topic(DISPATCH_TOPIC)
    answers: dict[str, list[str]] = {}
    for record in await read_topic(infra.kafka_bootstrap, topic, at_least=1):
        event = orjson.loads(record.value)
        if event["type"].startswith("delivery.cancel"):
            answers.setdefault(event["subject"], []).append(event["type"])
    return answers


async def test_cancel_before_pickup_frees_the_courier_after_pickup_is_refused(dispatch, infra):
    courier = await dispatch.new_courier()
    waiting = await dispatch.place(Order(pickup=(10.77, 106.70)))  # nobody near: stays waiting
    offered, assigned, picked = [await dispatch.place(Order()) for _ in range(3)]
    for o in (offered, assigned, picked):
        await dispatch.offer_for(courier, o)
    for o in (assigned, picked):
        await dispatch.act(courier, o.id, "accept")
    await dispatch.act(courier, picked.id, "pickup")
    assert await dispatch.pool.fetchval("SELECT load FROM couriers") == 3

    await dispatch.feed(*(o.cancel_event() for o in (waiting, offered, assigned, picked)))
    for o in (waiting, offered, assigned):
        assert await dispatch.job_status(o.id) == "cancelled"
    assert await dispatch.job_status(picked.id) == "picked_up"
    assert await dispatch.pool.fetchval("SELECT load FROM couriers") == 1
    assert (await dispatch.act(courier, assigned.id, "pickup")).status_code == 409
    assert (await dispatch.act(courier, offered.id, "accept")).status_code == 409
    assert [j["order_id"] for j in await dispatch.jobs(courier)] == [picked.id]
    # asked again: answered again, nothing freed twice
    await dispatch.feed(waiting.cancel_event())
    assert await dispatch.pool.fetchval("SELECT load FROM couriers") == 1

    expected = {
        waiting.id: ["delivery.cancel_confirmed"] * 2,
        offered.id: ["delivery.cancel_confirmed"],
        assigned.id: ["delivery.cancel_confirmed"],
        picked.id: ["delivery.cancel_refused"],
    }

    async def all_answered():
        answers = await _cancel_answers(dispatch, infra)
        assert answers == expected
        return True

    await eventually(all_answered, what="the cancel answers on Kafka")


async def test_events_are_applied_once(dispatch):
    order = Order(pickup=(10.77, 106.70))
    placed = order.placed_event()
    await dispatch.feed(placed, placed)
    await dispatch.feed(placed)
    assert await dispatch.pool.fetchval("SELECT count(*) FROM jobs") == 1


async def test_capacity_coming_free_nearby_is_offered_at_once_whatever_the_backoff(start):
    # A long backoff: unless capacity appearing nearby brings them back, these orders wait 30 s.
    dispatch = await start(match_retry_base_s=30, match_retry_max_s=30)
    bicycle = await dispatch.new_courier(name="Mai Văn Đạp", vehicle="bicycle")
    first, second = await dispatch.place(Order(cod_amount_vnd=0)), await dispatch.place(Order(cod_amount_vnd=0))
    held = (await eventually(lambda: dispatch.jobs(bicycle), what="an offer"))[0]["order_id"]
    other = second if held == first.id else first

    async def postponed():
        return await dispatch.pool.fetchval(
            "SELECT next_match_at > now() + interval '20 seconds' FROM jobs WHERE order_id = $1", uuid.UUID(other.id)
        )

    await eventually(postponed, what="the other order backed off")
    await dispatch.act(bicycle, held, "accept")
    await dispatch.act(bicycle, held, "pickup")
    r = await dispatch.act(bicycle, held, "deliver", {"delivery_code": "482913", "cod_collected_vnd": 0})
    assert r.status_code == 200
    await dispatch.offer_for(bicycle, other)  # within offer_for's 10 s, long before the backoff ends

    # ... and a courier coming online near a backed-off order gets it at once too
    lonely = await dispatch.place(Order(pickup=east(30_000)))
    await eventually(lambda: _backed_off(dispatch, lonely.id), what="the lonely order backed off")
    newcomer = await dispatch.new_courier(name="Mai Thị Mới", at=east(30_200))
    await dispatch.offer_for(newcomer, lonely)


async def test_a_delivery_wakes_the_matcher_only_while_orders_wait_for_a_courier(start):
    # No pass comes from a timer here (a minute between looks, a 30 s backoff): only from a wake-up.
    dispatch = await start(poll_s=60, match_poll_s=60, match_retry_base_s=30, match_retry_max_s=30)
    bicycle = await dispatch.new_courier(name="Mai Văn Đạp", vehicle="bicycle")  # one parcel at a time

    async def deliver(order_id: str) -> None:
        for action, body in (
            ("accept", None),
            ("pickup", None),
            ("deliver", {"delivery_code": "482913", "cod_collected_vnd": 0}),
        ):
            assert (await dispatch.act(bicycle, order_id, action, body)).status_code == 200

    async def passes() -> float:
        return metric(await dispatch.metrics(), "dispatch_matcher_passes_total")

    first, second = await dispatch.place(Order(cod_amount_vnd=0)), await dispatch.place(Order(cod_amount_vnd=0))
    held = (await eventually(lambda: dispatch.jobs(bicycle), what="an offer"))[0]["order_id"]
    other = second if held == first.id else first
    await eventually(lambda: _backed_off(dispatch, other.id), what="the other order waiting for a courier")
    await deliver(held)
    await dispatch.offer_for(bicycle, other)  # woken by the delivery: the backoff alone would take 30 s
    matcher = dispatch.app.state.hints
    assert matcher.waiting_for_capacity
    await deliver(other.id)  # the pass that offered it had seen it waiting: this wakes the loop once more,
    await eventually(lambda: _not(matcher.waiting_for_capacity), what="a pass that finds nobody waiting")

    third = await dispatch.place(Order(cod_amount_vnd=0))  # offered by the consumer's own pass
    await dispatch.offer_for(bicycle, third)
    before = await passes()
    await deliver(third.id)
    # Nothing waits for a courier now: the delivery starts no pass. (Absence is observed for a
    # bounded time; a pass it had started would have ended within it.)
    await asyncio.sleep(0.5)
    assert await passes() == before


async def test_the_matcher_of_another_process_finds_capacity_an_http_only_process_gave_back(start):
    # The same as above with dispatch split in two: couriers talk to an HTTP-only process (no
    # matcher there), orders reach a background one that consumes and matches.
    worker = await start(match_retry_base_s=30, match_retry_max_s=30, match_poll_s=0.05)
    api = await start(background=False)
    assert api.app.state.runtime.consumers == [] and worker.app.state.runtime.consumers
    bicycle = await api.new_courier(name="Mai Văn Đạp", vehicle="bicycle")
    first, second = await worker.place(Order(cod_amount_vnd=0)), await worker.place(Order(cod_amount_vnd=0))
    held = (await eventually(lambda: api.jobs(bicycle), what="an offer"))[0]["order_id"]
    other = second if held == first.id else first
    await eventually(lambda: _backed_off(api, other.id), what="the other order backed off")
    await api.act(bicycle, held, "accept")
    await api.act(bicycle, held, "pickup")
    r = await api.act(bicycle, held, "deliver", {"delivery_code": "482913", "cod_collected_vnd": 0})
    assert r.status_code == 200
    await api.offer_for(bicycle, other)  # within 10 s: the backoff alone would take 30

    lonely = await worker.place(Order(pickup=east(30_000)))
    await eventually(lambda: _backed_off(api, lonely.id), what="the lonely order backed off")
    newcomer = await api.new_courier(name="Mai Thị Mới", at=east(30_200))
    await api.offer_for(newcomer, lonely)


async def test_an_order_that_waited_gets_capacity_before_a_newer_one(start):
    # The worker matches only when poked (by new orders) here, so one pass sees both the
    # capacity the HTTP-only process gave back and the newer order.
    worker = await start(match_retry_base_s=30, match_retry_max_s=30, poll_s=30, match_poll_s=30)
    api = await start(background=False)
    bicycle = await api.new_courier(name="Mai Văn Đạp", vehicle="bicycle")
    held = await worker.place(Order(cod_amount_vnd=0))
    await api.offer_for(bicycle, held)
    waited = await worker.place(Order(cod_amount_vnd=0))
    await eventually(lambda: _backed_off(api, waited.id), what="the second order backed off")
    for action, body in (
        ("accept", None),
        ("pickup", None),
        ("deliver", {"delivery_code": "482913", "cod_collected_vnd": 0}),
    ):
        assert (await api.act(bicycle, held.id, action, body)).status_code == 200
    newer = await worker.place(Order(cod_amount_vnd=0))
    await api.offer_for(bicycle, waited)
    assert await api.job_status(newer.id) == "waiting"


async def _not(value: bool) -> bool:
    return not value


async def _backed_off(dispatch, order_id: str) -> bool:
    return await dispatch.pool.fetchval(
        "SELECT match_attempts > 0 AND next_match_at > now() + interval '20 seconds' FROM jobs WHERE order_id = $1",
        uuid.UUID(order_id),
    )


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/courier/locations", {"points": [{"lat": 20.95, "lng": 107.07, "at": 0}]}),
        ("/v1/courier/locations", {"points": [{"lat": False, "lng": 107.07, "at": "2025-03-14T09:30:00+07:00"}]}),
        ("/v1/courier/status", {"online": 1, "lat": 20.95, "lng": 107.07}),
        ("/v1/courier/status", {"online": True, "lat": 20.95, "lng": "107.07"}),
    ],
)
async def test_lax_values_are_not_coerced(dispatch, path, body):
    courier = await dispatch.new_courier()
    send = dispatch.client.put if path.endswith("status") else dispatch.client.post
    r = await send(path, headers=courier.auth, json=body)
    assert r.status_code == 422, r.text


async def test_broken_bodies_are_problems_not_crashes(dispatch):
    courier = await dispatch.new_courier()
    r = await dispatch.client.put(
        "/v1/courier/status", headers={**courier.auth, "content-type": "application/json"}, content=b"\x00{"
    )
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    r = await dispatch.client.post(
        f"/v1/courier/jobs/{uuid.uuid4()}/deliver",
        headers=courier.auth,
        json={"delivery_code": "123456", "cod_collected_vnd": True},
    )
    assert r.status_code == 422
    r = await dispatch.client.post("/v1/courier/locations", headers=courier.auth, content=b"x" * 70_000)
    assert r.status_code in (413, 415)
