"""What a courier sees of a job in each status, and steps the courier app replays after being
offline: a repeat of the step a job is already in answers the job and changes nothing."""

from __future__ import annotations

import uuid

import pytest

from tests.dispatch.support import HA_LONG, Order, east, events_written

# What identifies the recipient in conftest.Order: none of it may reach a courier before they accept.
RECIPIENT = (
    "Nguyễn Văn An",
    "+84987654321",
    "0987654321",
    "Trần Hưng Đạo",
    "20.9555",
    "107.0452",
    "Gọi trước khi giao",
)


async def _raw_jobs(dispatch, courier) -> str:
    r = await dispatch.client.get("/v1/courier/jobs", headers=courier.auth)
    assert r.status_code == 200, r.text
    return r.text


async def test_an_offer_shows_the_area_not_the_recipient_until_accepted(dispatch):
    first = await dispatch.new_courier(name="Lê Văn Một", at=east(100))
    second = await dispatch.new_courier(name="Lê Văn Hai", at=east(900))
    order = await dispatch.place(Order())
    offer = await dispatch.offer_for(first, order)
    raw = await _raw_jobs(dispatch, first)
    assert order.id in raw
    for secret in RECIPIENT:
        assert secret not in raw, secret
    assert offer["dropoff"] is None and offer["note"] is None
    assert offer["dropoff_area"] == {"area": "Bãi Cháy, Hạ Long, Quảng Ninh", "lat": 20.96, "lng": 107.05}
    assert (offer["distance_m"], offer["fee_vnd"]) == (4200, 25_000)
    assert offer["pickup"]["name"] == "Shop Hoa Mai" and offer["pickup"]["lat"] == HA_LONG[0]

    # the first declines (having seen nothing), the second accepts and sees who and where
    assert (await dispatch.act(first, order.id, "decline")).status_code == 200
    await dispatch.offer_for(second, order)
    for secret in RECIPIENT:
        assert secret not in await _raw_jobs(dispatch, second), secret
    r = await dispatch.act(second, order.id, "accept")
    assert r.status_code == 200
    assert r.json()["dropoff"] == {
        "name": "Nguyễn Văn An",
        "phone": "+84987654321",
        "address": "45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh",
        "lat": 20.9555,
        "lng": 107.0452,
    }
    [job] = await dispatch.jobs(second)
    assert job["status"] == "assigned" and job["dropoff"]["phone"] == "+84987654321"
    assert job["note"] == "Gọi trước khi giao, cổng số 3" and job["dropoff_area"] == offer["dropoff_area"]
    assert await dispatch.jobs(first) == []


async def test_each_step_repeated_answers_the_job_and_emits_nothing_more(dispatch):
    courier = await dispatch.new_courier()
    order = await dispatch.place(Order(cod_amount_vnd=250_000))
    await dispatch.offer_for(courier, order)
    deliver = {"delivery_code": order.code, "cod_collected_vnd": 250_000}
    for action, body, status in (
        ("accept", None, "assigned"),
        ("pickup", None, "picked_up"),
        ("deliver", deliver, "delivered"),
    ):
        first = await dispatch.act(courier, order.id, action, body)
        again = await dispatch.act(courier, order.id, action, body)
        assert first.status_code == again.status_code == 200, (action, again.text)
        assert first.json() == again.json() and again.json()["status"] == status
    assert await events_written(dispatch.pool) == {
        "delivery.offered": 1,
        "delivery.assigned": 1,
        "delivery.picked_up": 1,
        "delivery.delivered": 1,
    }
    assert await dispatch.pool.fetchval("SELECT load FROM couriers") == 0  # given back once, not twice


async def test_a_repeated_deliver_checks_and_counts_nothing(dispatch):
    courier = await dispatch.new_courier()
    order = await dispatch.place(Order(cod_amount_vnd=100_000))
    await dispatch.offer_for(courier, order)
    await dispatch.act(courier, order.id, "accept")
    await dispatch.act(courier, order.id, "pickup")
    r = await dispatch.act(courier, order.id, "deliver", {"delivery_code": order.code, "cod_collected_vnd": 100_000})
    assert r.status_code == 200
    # a wrong code or amount on the delivered job is not a new attempt: nothing to check
    for body in (
        {"delivery_code": "000000", "cod_collected_vnd": 100_000},
        {"delivery_code": order.code, "cod_collected_vnd": 5},
    ):
        again = await dispatch.act(courier, order.id, "deliver", body)
        assert again.status_code == 200 and again.json() == r.json()
    row = await dispatch.pool.fetchrow(
        "SELECT code_failures, cod_collected_vnd FROM jobs WHERE order_id = $1", uuid.UUID(order.id)
    )
    assert (row["code_failures"], row["cod_collected_vnd"]) == (0, 100_000)
    assert (await events_written(dispatch.pool))["delivery.delivered"] == 1


async def test_fail_and_return_repeated_answer_the_job_once_each(dispatch):
    courier = await dispatch.new_courier()
    order = await dispatch.place(Order())
    await dispatch.offer_for(courier, order)
    await dispatch.act(courier, order.id, "accept")
    await dispatch.act(courier, order.id, "pickup")
    for action, body, status in (("fail", {"reason": "refused"}, "delivery_failed"), ("return", None, "returned")):
        first = await dispatch.act(courier, order.id, action, body)
        again = await dispatch.act(courier, order.id, action, body)
        assert first.status_code == again.status_code == 200, (action, again.text)
        assert first.json() == again.json() and again.json()["status"] == status
    # a repeat with another reason changes nothing either
    assert await dispatch.pool.fetchval("SELECT fail_reason FROM jobs") == "refused"
    events = await events_written(dispatch.pool)
    assert (events["delivery.failed"], events["delivery.returned"]) == (1, 1)
    assert await dispatch.pool.fetchval("SELECT load FROM couriers") == 0


async def test_an_earlier_step_after_a_later_one_is_still_409(dispatch):
    courier = await dispatch.new_courier()
    order = await dispatch.place(Order())
    await dispatch.offer_for(courier, order)
    await dispatch.act(courier, order.id, "accept")
    await dispatch.act(courier, order.id, "pickup")
    assert (await dispatch.act(courier, order.id, "accept")).status_code == 409
    assert (await dispatch.act(courier, order.id, "return")).status_code == 409
    assert (await dispatch.act(courier, order.id, "decline")).status_code == 409


@pytest.mark.parametrize(
    "action,body",
    [
        ("accept", None),
        ("pickup", None),
        ("deliver", {"delivery_code": "482913", "cod_collected_vnd": 0}),
        ("fail", {"reason": "other"}),
        ("return", None),
    ],
)
async def test_another_couriers_job_is_not_repeated_for_them(dispatch, action, body):
    mine = await dispatch.new_courier(name="Lê Thị Hoa")
    other = await dispatch.new_courier(name="Phạm Văn Đức", at=east(20_000))
    order = await dispatch.place(Order(cod_amount_vnd=0))
    await dispatch.offer_for(mine, order)
    steps = {
        "accept": [("accept", None)],
        "pickup": [("accept", None), ("pickup", None)],
        "deliver": [("accept", None), ("pickup", None), ("deliver", body)],
        "fail": [("accept", None), ("pickup", None), ("fail", body)],
        "return": [("accept", None), ("pickup", None), ("fail", {"reason": "other"}), ("return", None)],
    }
    for step, step_body in steps[action]:
        assert (await dispatch.act(mine, order.id, step, step_body)).status_code == 200
    r = await dispatch.act(other, order.id, action, body)
    assert r.status_code == 404 and "Nguyễn Văn An" not in r.text
