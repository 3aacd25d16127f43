"""Dispatch's guards against a dishonest (or broken) courier client: delivery codes guessed on
a job or across many jobs, positions no vehicle can reach, and the phone's clock compared
with the phone's clock only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.dispatch.support import ADMIN, Order, east, metric

WRONG = {"delivery_code": "654321", "cod_collected_vnd": 0}
RIGHT = {"delivery_code": "123456", "cod_collected_vnd": 0}


async def _carrying(dispatch, courier, order: Order) -> None:
    await dispatch.place(order)
    await dispatch.offer_for(courier, order)
    assert (await dispatch.act(courier, order.id, "accept")).status_code == 200
    assert (await dispatch.act(courier, order.id, "pickup")).status_code == 200


async def _end_lockout(dispatch, order: Order) -> None:
    """As if the lockout had run out (the tests do not wait 15 minutes)."""
    await dispatch.pool.execute(
        "UPDATE jobs SET code_locked_until = now() - interval '1 second' WHERE order_id = $1", uuid.UUID(order.id)
    )


# --- delivery codes -------------------------------------------------------------------------------


async def test_lockouts_grow_and_a_job_stays_locked_after_the_cap_until_the_admin_clears_it(start):
    dispatch = await start(code_max_failures=2, code_lockout_s=60, code_max_failures_per_job=6)
    courier = await dispatch.new_courier()
    order = Order(code="123456", cod_amount_vnd=0)
    await _carrying(dispatch, courier, order)

    waits = []
    for _ in range(2):
        assert [(await dispatch.act(courier, order.id, "deliver", WRONG)).status_code for _ in range(2)] == [422, 422]
        locked = await dispatch.act(courier, order.id, "deliver", RIGHT)
        assert locked.status_code == 429, locked.text
        # its own problem type: the app must not take it for the rate limit's 429 and resend
        assert locked.json()["type"] == "https://giao.vn/problems/delivery-code-locked"
        assert locked.json()["retry_after_s"] == int(locked.headers["retry-after"])
        waits.append(int(locked.headers["retry-after"]))
        await _end_lockout(dispatch, order)
    assert waits[0] <= 60 < waits[1]  # the second lockout is longer than the first

    assert [(await dispatch.act(courier, order.id, "deliver", WRONG)).status_code for _ in range(2)] == [422, 422]
    await _end_lockout(dispatch, order)  # time passing no longer helps: 6 wrong codes is the cap
    held = await dispatch.act(courier, order.id, "deliver", RIGHT)
    assert held.status_code == 423 and "retry-after" not in held.headers, held.text
    metrics = await dispatch.metrics()
    assert metric(metrics, "dispatch_delivery_code_wrong_total") == 6
    assert metric(metrics, 'dispatch_delivery_code_lockouts_total{kind="job_held"}') == 1

    clear = f"/v1/admin/jobs/{order.id}/code-lock/clear"
    assert (await dispatch.client.post(clear)).status_code == 401
    assert (await dispatch.client.post(clear, headers=ADMIN)).status_code == 204
    log = (await dispatch.client.get("/v1/admin/audit", headers=ADMIN)).json()["items"]
    assert log[0]["action"] == "job.code_lock_cleared" and log[0]["target"] == order.id
    assert (await dispatch.act(courier, order.id, "deliver", RIGHT)).status_code == 200


async def test_a_locked_out_courier_cannot_deliver_a_job_with_no_wrong_code_either(start):
    """The right code on a job never guessed on, just picked up (deliver's first try, without
    a read), is refused all the same once the courier's wrong codes across jobs reached the limit."""
    dispatch = await start(courier_code_max_failures=2)
    guesser = await dispatch.new_courier(name="Lê Văn Đoán")
    orders = [Order(code="123456", cod_amount_vnd=0) for _ in range(3)]
    for order in orders:
        await _carrying(dispatch, guesser, order)
    for order in orders[:2]:
        assert (await dispatch.act(guesser, order.id, "deliver", WRONG)).status_code == 422
    refused = await dispatch.act(guesser, orders[2].id, "deliver", RIGHT)
    assert refused.status_code == 403, refused.text
    job = await dispatch.pool.fetchrow(
        "SELECT status, code_failures_total FROM jobs WHERE order_id = $1", uuid.UUID(orders[2].id)
    )
    assert (job["status"], job["code_failures_total"]) == ("picked_up", 0)


async def test_a_courier_guessing_across_jobs_is_locked_out_of_deliveries_and_gets_no_offers(start):
    dispatch = await start(courier_code_max_failures=3)
    guesser = await dispatch.new_courier(name="Lê Văn Đoán")
    orders = [Order(code="123456", cod_amount_vnd=0) for _ in range(3)]
    for order in orders:
        await _carrying(dispatch, guesser, order)
    for order in orders:  # one wrong code per job: no job's own limit is near
        assert (await dispatch.act(guesser, order.id, "deliver", WRONG)).status_code == 422

    refused = await dispatch.act(guesser, orders[0].id, "deliver", RIGHT)
    assert refused.status_code == 403, refused.text
    shown = (await dispatch.client.get(f"/v1/admin/couriers/{guesser.id}", headers=ADMIN)).json()
    assert shown["flag"]["reason"] == "code_guessing"
    metrics = await dispatch.metrics()
    assert metric(metrics, 'dispatch_delivery_code_lockouts_total{kind="courier"}') == 1

    # the courier finishes no job of theirs, and the next order goes to someone else
    for order in orders:
        assert (await dispatch.act(guesser, order.id, "fail", {"reason": "refused"})).status_code == 200
        assert (await dispatch.act(guesser, order.id, "return")).status_code == 200
    other = await dispatch.new_courier(name="Hồ Thị Xa", at=east(3000))
    nxt = await dispatch.place(Order())
    await dispatch.offer_for(other, nxt)

    clear = f"/v1/admin/couriers/{guesser.id}/flag/clear"
    assert (await dispatch.client.post(clear, headers=ADMIN)).status_code == 204
    assert (await dispatch.client.get(f"/v1/admin/couriers/{guesser.id}", headers=ADMIN)).json()["flag"] is None
    again = await dispatch.place(Order())
    await dispatch.offer_for(guesser, again)


# --- positions no vehicle reaches -----------------------------------------------------------------


def _point(at: datetime, metres_east: float = 0) -> dict:
    lat, lng = east(metres_east)
    return {"lat": lat, "lng": lng, "at": at.isoformat()}


async def test_one_impossible_jump_is_ignored_and_a_sustained_one_flags_the_courier(dispatch):
    courier = await dispatch.new_courier(vehicle="bicycle")
    t0 = datetime.now(UTC)

    async def post(point: dict) -> dict:
        r = await dispatch.client.post("/v1/courier/locations", headers=courier.auth, json={"points": [point]})
        assert r.status_code == 202, r.text
        return r.json()

    assert (await post(_point(t0, 0)))["ignored_reason"] is None
    assert (await post(_point(t0 + timedelta(seconds=5), 20)))["ignored_reason"] is None  # 4 m/s
    glitch = await post(_point(t0 + timedelta(seconds=10), 20_000))  # 20 km in 5 s on a bicycle
    assert glitch["position_updated"] is False and glitch["ignored_reason"] == "impossible_speed"
    lng = await dispatch.pool.fetchval("SELECT lng FROM couriers WHERE id = $1", uuid.UUID(courier.id))
    assert lng == pytest.approx(east(20)[1])
    assert (await post(_point(t0 + timedelta(seconds=15), 40)))["ignored_reason"] is None  # one glitch: no flag
    status = (await dispatch.client.get(f"/v1/admin/couriers/{courier.id}", headers=ADMIN)).json()
    assert status["flag"] is None

    for i in range(3):  # the phone keeps reporting the far side of the city
        await post(_point(t0 + timedelta(seconds=20 + 5 * i), 20_000 + 10 * i))
    status = (await dispatch.client.get(f"/v1/admin/couriers/{courier.id}", headers=ADMIN)).json()
    assert status["flag"]["reason"] == "impossible_speed"
    listed = (await dispatch.client.get("/v1/admin/couriers", headers=ADMIN)).json()["items"]
    assert next(c for c in listed if c["id"] == courier.id)["flag"]["reason"] == "impossible_speed"

    other = await dispatch.new_courier(name="Hồ Thị Xa", at=east(25_000))
    order = await dispatch.place(Order(pickup=east(20_000)))
    await dispatch.offer_for(other, order)  # not to the flagged courier, who is nearer


# --- the phone's clock ---------------------------------------------------------------------------


async def test_a_point_taken_just_before_going_online_is_kept(dispatch):
    courier = await dispatch.new_courier()  # online now, by the server's clock
    r = await dispatch.client.post(
        "/v1/courier/locations",
        headers=courier.auth,
        json={"points": [_point(datetime.now(UTC) - timedelta(seconds=2), 500)]},
    )
    lng = await dispatch.pool.fetchval("SELECT lng FROM couriers WHERE id = $1", uuid.UUID(courier.id))
    assert lng == pytest.approx(east(500)[1])
    assert r.status_code == 202 and r.json()["position_updated"] is True, r.text


async def test_a_phone_behind_the_server_compares_its_points_with_its_own_clock(dispatch):
    courier = await dispatch.new_courier(at=None)
    phone_now = datetime.now(UTC) - timedelta(minutes=3)  # the phone runs three minutes behind
    lat, lng = east(0)
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    r = await dispatch.client.put(
        "/v1/courier/status", headers=courier.auth, json={"online": True, "lat": lat, "lng": lng, "at": future}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "at"], r.text
    r = await dispatch.client.put(
        "/v1/courier/status",
        headers=courier.auth,
        json={"online": True, "lat": lat, "lng": lng, "at": phone_now.isoformat()},
    )
    assert r.status_code == 200, r.text

    async def post(point: dict) -> dict:
        r = await dispatch.client.post("/v1/courier/locations", headers=courier.auth, json={"points": [point]})
        assert r.status_code == 202, r.text
        return r.json()

    assert (await post(_point(phone_now + timedelta(seconds=2), 10)))["position_updated"] is True
    late = await post(_point(phone_now - timedelta(seconds=5), 0))  # taken before the status's position
    assert late == {"accepted": 1, "published": False, "position_updated": False, "ignored_reason": "older"}

    lng = await dispatch.pool.fetchval("SELECT lng FROM couriers WHERE id = $1", uuid.UUID(courier.id))
    assert lng == pytest.approx(east(10)[1])  # the newer point stays


async def test_a_status_position_no_vehicle_reaches_is_ignored_and_counts_toward_the_flag(dispatch):
    """The position a status carries is checked as a point is: the status changes, an
    impossible position does not, and it counts in the same run of jumps as the points."""
    courier = await dispatch.new_courier(vehicle="bicycle", at=None)
    t0 = datetime.now(UTC) - timedelta(minutes=1)

    async def status(online: bool, at: datetime, metres_east: float) -> dict:
        lat, lng = east(metres_east)
        body = {"online": online, "lat": lat, "lng": lng, "at": at.isoformat()}
        r = await dispatch.client.put("/v1/courier/status", headers=courier.auth, json=body)
        assert r.status_code == 200, r.text
        return r.json()

    async def post(point: dict) -> dict:
        r = await dispatch.client.post("/v1/courier/locations", headers=courier.auth, json={"points": [point]})
        assert r.status_code == 202, r.text
        return r.json()

    assert (await status(True, t0, 0))["lng"] == pytest.approx(east(0)[1])
    jumped = await status(False, t0 + timedelta(seconds=5), 20_000)  # 20 km in 5 s on a bicycle
    assert jumped["online"] is False and jumped["lng"] == pytest.approx(east(0)[1]) and jumped["flag"] is None
    assert (await status(True, t0 + timedelta(seconds=10), 30))["lng"] == pytest.approx(east(30)[1])  # 6 m/s

    await status(True, t0 + timedelta(seconds=15), 20_000)  # the same run: status, point, status
    assert (await post(_point(t0 + timedelta(seconds=20), 20_010)))["ignored_reason"] == "impossible_speed"
    third = await status(True, t0 + timedelta(seconds=25), 20_020)
    assert third["flag"]["reason"] == "impossible_speed" and third["lng"] == pytest.approx(east(20_020)[1])
    metrics = await dispatch.metrics()
    assert metric(metrics, 'dispatch_location_points_ignored_total{reason="impossible_speed"}') == 3
