"""Cash on delivery after the doorstep: the cash a courier holds (their delivered jobs' cash not
yet handed in), the admin's hand-ins that settle the oldest deliveries first (audited), the
couriers holding cash, the longest first; bad input, and two hand-ins at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.dispatch.support import ADMIN, HA_LONG, Courier, Dispatch, Order
from tests.support import eventually


async def deliver(dispatch: Dispatch, courier: Courier, cod_vnd: int) -> Order:
    """One order placed, offered to `courier` (the only one online), accepted, picked up and
    delivered with its cash collected."""
    order = await dispatch.place(Order(cod_amount_vnd=cod_vnd))
    await dispatch.offer_for(courier, order)
    for action in ("accept", "pickup"):
        assert (await dispatch.act(courier, order.id, action)).status_code == 200
    r = await dispatch.act(courier, order.id, "deliver", {"delivery_code": order.code, "cod_collected_vnd": cod_vnd})
    assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
    return order


async def cash_of(dispatch: Dispatch, courier_id: str) -> dict:
    r = await dispatch.client.get(f"/v1/admin/couriers/{courier_id}/cash", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


async def hand_in(dispatch: Dispatch, courier_id: str, amount) -> object:
    return await dispatch.client.post(
        f"/v1/admin/couriers/{courier_id}/cash-handins", headers=ADMIN, json={"amount_vnd": amount}
    )


async def test_a_hand_in_settles_the_oldest_deliveries_and_is_audited(dispatch):
    courier = await dispatch.new_courier()
    first, second = await deliver(dispatch, courier, 100_000), await deliver(dispatch, courier, 200_000)
    await deliver(dispatch, courier, 0)  # no cash: nothing held
    third = await deliver(dispatch, courier, 300_000)
    # the admin clears the code lock of a delivered job: it stays where it was delivered
    assert (await dispatch.client.post(f"/v1/admin/jobs/{first.id}/code-lock/clear", headers=ADMIN)).status_code == 204

    held = await cash_of(dispatch, courier.id)
    assert (held["courier_id"], held["held_vnd"], held["held_deliveries"], held["more"]) == (
        courier.id,
        600_000,
        3,
        False,
    )
    assert [d["order_id"] for d in held["deliveries"]] == [first.id, second.id, third.id]
    assert [d["cod_collected_vnd"] for d in held["deliveries"]] == [100_000, 200_000, 300_000]
    tracking = await dispatch.pool.fetchval("SELECT tracking_code FROM jobs WHERE order_id = $1", uuid.UUID(first.id))
    assert held["deliveries"][0]["tracking_code"] == tracking and held["handins"] == []
    delivered_at = [d["delivered_at"] for d in held["deliveries"]]
    assert delivered_at == sorted(delivered_at)

    r = await hand_in(dispatch, courier.id, 300_000)  # the two oldest
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["courier_id"], made["amount_vnd"], made["deliveries"], made["held_vnd"]) == (
        courier.id,
        300_000,
        2,
        300_000,
    )
    after = await cash_of(dispatch, courier.id)
    assert (after["held_vnd"], after["held_deliveries"]) == (300_000, 1)
    assert [d["order_id"] for d in after["deliveries"]] == [third.id]
    assert after["handins"] == [{k: made[k] for k in ("id", "amount_vnd", "deliveries", "received_at")}]

    # 200 000 is no run of the oldest (300 000 is), nor is more than is held: refused, nothing changes
    refused = await hand_in(dispatch, courier.id, 200_000)
    assert refused.status_code == 409 and refused.json()["held_vnd"] == 300_000
    assert (await hand_in(dispatch, courier.id, 10**12)).status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert await cash_of(dispatch, courier.id) == after
    assert (await hand_in(dispatch, courier.id, 300_000)).json()["held_vnd"] == 0
    empty = await cash_of(dispatch, courier.id)
    assert (empty["held_vnd"], empty["deliveries"], len(empty["handins"])) == (0, [], 2)
    assert empty["handins"][0]["amount_vnd"] == 300_000 and empty["handins"][0]["id"] > made["id"]
    nothing = await hand_in(dispatch, courier.id, 1)
    assert (nothing.status_code, nothing.json()["held_vnd"]) == (409, 0)

    audit = (await dispatch.client.get("/v1/admin/audit", headers=ADMIN)).json()["items"]
    received = [e for e in audit if e["action"] == "courier.cash_received"]
    assert [(e["target"], e["actor"], e["detail"]["amount_vnd"], e["detail"]["deliveries"]) for e in received] == [
        (courier.id, "admin", 300_000, 1),
        (courier.id, "admin", 300_000, 2),
    ]
    actors = await dispatch.pool.fetch("SELECT DISTINCT actor FROM cash_handins")
    assert [a["actor"] for a in actors] == ["admin"]


@pytest.mark.parametrize("amount", [0, -5, 1.5, 100_000.0, "100000", True, None, 10**12 + 1])
async def test_a_bad_amount_is_422_and_changes_nothing(dispatch, amount):
    courier = await dispatch.new_courier()
    await deliver(dispatch, courier, 100_000)
    r = await hand_in(dispatch, courier.id, amount)
    assert r.status_code == 422, (amount, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await cash_of(dispatch, courier.id))["held_vnd"] == 100_000
    assert await dispatch.pool.fetchval("SELECT count(*) FROM cash_handins") == 0


async def test_unknown_couriers_are_404_and_the_routes_need_the_admin_token(dispatch):
    courier = await dispatch.new_courier()
    for unknown in (str(uuid.uuid4()), "nope"):
        assert (await dispatch.client.get(f"/v1/admin/couriers/{unknown}/cash", headers=ADMIN)).status_code == 404
        assert (await hand_in(dispatch, unknown, 1000)).status_code == 404
    for method, path in (
        ("GET", f"/v1/admin/couriers/{courier.id}/cash"),
        ("POST", f"/v1/admin/couriers/{courier.id}/cash-handins"),
        ("GET", "/v1/admin/cash"),
    ):
        for headers in ({}, courier.auth):
            r = await dispatch.client.request(method, path, headers=headers, json={"amount_vnd": 1})
            assert r.status_code == 401, (method, path)
    r = await dispatch.client.post(
        f"/v1/admin/couriers/{courier.id}/cash-handins", headers=ADMIN, json={"amount_vnd": 1, "note": "x"}
    )
    assert r.status_code == 422


async def test_two_hand_ins_at_once_never_settle_the_same_delivery(dispatch):
    """Both hand in everything the courier holds, at the same moment: the deliveries' rows are
    held locked until both hand-ins wait on them, then let go. One settles them, the other is
    refused, and no delivery names two hand-ins."""
    courier = await dispatch.new_courier()
    orders = [await deliver(dispatch, courier, cod) for cod in (100_000, 150_000)]
    ids = [uuid.UUID(o.id) for o in orders]
    async with dispatch.pool.acquire() as blocker:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM jobs WHERE order_id = ANY($1::uuid[]) FOR UPDATE", ids)
            both = asyncio.gather(hand_in(dispatch, courier.id, 250_000), hand_in(dispatch, courier.id, 250_000))

            async def both_waiting() -> bool:
                waiting = await dispatch.pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE '%cash_handin_id%'"
                )
                return waiting == 2

            await eventually(both_waiting, timeout=10, what="both hand-ins waiting on the locked deliveries")
        answers = await both
    assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
    [made] = [r.json() for r in answers if r.status_code == 201]
    assert (made["deliveries"], made["held_vnd"]) == (2, 0)
    settled = await dispatch.pool.fetch("SELECT cash_handin_id FROM jobs WHERE order_id = ANY($1::uuid[])", ids)
    assert {r["cash_handin_id"] for r in settled} == {made["id"]}
    assert await dispatch.pool.fetchval("SELECT count(*) FROM cash_handins") == 1


async def test_two_part_hand_ins_at_once_settle_one_delivery_each(dispatch):
    courier = await dispatch.new_courier()
    orders = [await deliver(dispatch, courier, 100_000) for _ in range(2)]
    answers = await asyncio.gather(*(hand_in(dispatch, courier.id, 100_000) for _ in range(2)))
    assert [r.status_code for r in answers] == [201, 201]
    ids = [uuid.UUID(o.id) for o in orders]
    settled = await dispatch.pool.fetch("SELECT cash_handin_id FROM jobs WHERE order_id = ANY($1::uuid[])", ids)
    assert {r["cash_handin_id"] for r in settled} == {r.json()["id"] for r in answers}
    assert sorted(r.json()["held_vnd"] for r in answers) == [0, 100_000]


async def test_couriers_holding_cash_come_longest_held_first_a_page_at_a_time(dispatch):
    couriers = [await dispatch.new_courier(name=f"Nguyễn Văn {c}", at=None) for c in "ABC"]
    for courier, cod in zip(couriers, (100_000, 200_000, 300_000), strict=True):  # one online at a time
        shift = {"online": True, "lat": HA_LONG[0], "lng": HA_LONG[1]}
        assert (await dispatch.client.put("/v1/courier/status", headers=courier.auth, json=shift)).status_code == 200
        await deliver(dispatch, courier, cod)
        off = await dispatch.client.put("/v1/courier/status", headers=courier.auth, json={"online": False})
        assert off.status_code == 200
    # C has held cash longest, then A, then B
    for courier, minutes in zip(couriers, (30, 10, 50), strict=True):
        await dispatch.pool.execute(
            "UPDATE jobs SET updated_at = now() - make_interval(mins => $2) WHERE courier_id = $1",
            uuid.UUID(courier.id),
            minutes,
        )
    a, b, c = couriers
    first = (await dispatch.client.get("/v1/admin/cash", params={"limit": 2}, headers=ADMIN)).json()
    assert [i["courier_id"] for i in first["items"]] == [c.id, a.id] and first["total_held_vnd"] == 600_000
    assert first["items"][0] | {"oldest_delivered_at": None} == {
        "courier_id": c.id,
        "display_name": "C N.",
        "held_vnd": 300_000,
        "deliveries": 1,
        "oldest_delivered_at": None,
    }
    rest = await dispatch.client.get(
        "/v1/admin/cash", params={"limit": 2, "cursor": first["next_cursor"]}, headers=ADMIN
    )
    assert [i["courier_id"] for i in rest.json()["items"]] == [b.id] and rest.json()["next_cursor"] is None
    assert (await hand_in(dispatch, c.id, 300_000)).status_code == 201
    after = (await dispatch.client.get("/v1/admin/cash", headers=ADMIN)).json()
    assert [i["courier_id"] for i in after["items"]] == [a.id, b.id] and after["total_held_vnd"] == 300_000


@pytest.mark.parametrize(
    "params", [{"cursor": "not-a-cursor"}, {"cursor": "WyJ4Il0"}, {"limit": 0}, {"limit": 501}, {"colour": "red"}]
)
async def test_a_malformed_cash_query_is_422(dispatch, params):
    r = await dispatch.client.get("/v1/admin/cash", params=params, headers=ADMIN)
    assert r.status_code == 422, (params, r.text)


async def test_a_courier_reads_the_cash_they_hold_within_their_rate(start):
    dispatch = await start()
    limited = await start(courier_rate_per_s=0.1, courier_rate_burst=3, background=False)  # the same database
    courier, other = await dispatch.new_courier(), await dispatch.new_courier(name="Lê Thị Hoa", at=None)
    await deliver(dispatch, courier, 120_000)
    r = await dispatch.client.get("/v1/courier/cash", headers=courier.auth)
    assert r.status_code == 200 and r.json() == {"held_vnd": 120_000, "deliveries": 1}
    assert (await dispatch.client.get("/v1/courier/cash", headers=other.auth)).json() == {
        "held_vnd": 0,
        "deliveries": 0,
    }
    assert (await dispatch.client.get("/v1/courier/cash")).status_code == 401
    assert (await dispatch.client.get("/v1/courier/cash", headers=ADMIN)).status_code == 401
    assert (await hand_in(dispatch, courier.id, 120_000)).status_code == 201
    assert (await dispatch.client.get("/v1/courier/cash", headers=courier.auth)).json()["held_vnd"] == 0
    statuses = [(await limited.client.get("/v1/courier/cash", headers=courier.auth)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429], statuses


async def test_the_cash_routes_are_documented_in_openapi(dispatch):
    spec = (await dispatch.client.get("/openapi.json")).json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    handins = paths["/v1/admin/couriers/{courier_id}/cash-handins"]["post"]
    assert {"201", "401", "404", "409", "422"} <= set(handins["responses"])
    for name in ("CashHandinCreate", "CashHandinCreated", "CourierCash", "CashHeld"):
        assert schemas[name]["examples"], name
    for path in ("/v1/admin/couriers/{courier_id}/cash", "/v1/admin/cash", "/v1/courier/cash"):
        assert "401" in paths[path]["get"]["responses"], path
    assert {p["name"] for p in paths["/v1/admin/cash"]["get"]["parameters"]} == {"cursor", "limit"}
