"""The admin revokes or re-issues a courier's token: every instance refuses the old one within
GIAO_DISPATCH_TOKEN_CACHE_S, even one that had it remembered (the courier app then signs out);
a revoked courier goes offline and their open offers go on at once."""

from __future__ import annotations

import uuid

from tests.dispatch.support import ADMIN, Courier, Order, east
from tests.support import eventually

CACHE_S = 0.5


async def _answers(d, courier: Courier) -> int:
    return (await d.client.get("/v1/courier/jobs", headers=courier.auth)).status_code


async def test_a_revoked_token_is_refused_by_every_instance_within_the_cache_time(start):
    a = await start(token_cache_s=CACHE_S, background=False)
    b = await start(token_cache_s=CACHE_S, background=False)  # the same database: a second instance
    courier = await a.new_courier(at=None)
    assert [await _answers(a, courier), await _answers(b, courier)] == [200, 200]  # both remember it now

    assert (await a.client.delete(f"/v1/admin/couriers/{courier.id}/token", headers=ADMIN)).status_code == 204

    async def refused_by_both() -> bool:
        return [await _answers(a, courier), await _answers(b, courier)] == [401, 401]

    await eventually(refused_by_both, timeout=5 * CACHE_S + 5, what="both instances to refuse the old token")


async def test_a_revoked_courier_goes_offline_and_their_offer_to_the_next_courier_at_once(start):
    d = await start(offer_timeout_s=120)  # an offer left to time out would wait two minutes
    lost = await d.new_courier(name="Trần Văn Mất", vehicle="bicycle")
    order = await d.place(Order(cod_amount_vnd=0))
    await d.offer_for(lost, order)
    assert (await d.client.delete(f"/v1/admin/couriers/{lost.id}/token", headers=ADMIN)).status_code == 204
    status = (await d.client.get(f"/v1/admin/couriers/{lost.id}", headers=ADMIN)).json()
    assert status["online"] is False and status["load"] == 0
    other = await d.new_courier(name="Lê Thị Hoa", at=east(300))
    await d.offer_for(other, order)


async def test_a_reissued_token_works_and_the_old_one_does_not(start):
    d = await start(token_cache_s=0.0, background=False)
    courier = await d.new_courier(at=None)
    r = await d.client.post(f"/v1/admin/couriers/{courier.id}/token", headers=ADMIN)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == courier.id and body["signin_link"].endswith("/app/#t=" + body["token"])
    fresh = Courier(courier.id, body["token"], courier.name, courier.vehicle)
    assert [await _answers(d, courier), await _answers(d, fresh)] == [401, 200]


async def test_tokens_of_unknown_couriers_and_without_the_admin_token(start):
    d = await start(background=False)
    unknown = uuid.uuid4()
    assert (await d.client.delete(f"/v1/admin/couriers/{unknown}/token", headers=ADMIN)).status_code == 404
    assert (await d.client.post("/v1/admin/couriers/not-a-uuid/token", headers=ADMIN)).status_code == 404
    courier = await d.new_courier(at=None)
    assert (await d.client.delete(f"/v1/admin/couriers/{courier.id}/token")).status_code == 401
    assert (await d.client.delete(f"/v1/admin/couriers/{courier.id}/token", headers=courier.auth)).status_code == 401
    assert await _answers(d, courier) == 200  # nothing changed


async def test_the_admins_actions_on_couriers_are_in_the_audit_log(start):
    d = await start(background=False)
    courier = await d.new_courier(at=None)
    assert (await d.client.post(f"/v1/admin/couriers/{courier.id}/token", headers=ADMIN)).status_code == 201
    assert (await d.client.delete(f"/v1/admin/couriers/{courier.id}/token", headers=ADMIN)).status_code == 204
    assert (await d.client.get("/v1/admin/audit")).status_code == 401
    log = (await d.client.get("/v1/admin/audit", headers=ADMIN)).json()
    assert [(e["action"], e["target"], e["actor"]) for e in log["items"]] == [
        ("courier.token_revoked", courier.id, "admin"),
        ("courier.token_reissued", courier.id, "admin"),
        ("courier.created", courier.id, "admin"),
    ]
    first = (await d.client.get("/v1/admin/audit?limit=2", headers=ADMIN)).json()
    rest = (await d.client.get(f"/v1/admin/audit?limit=2&cursor={first['next_cursor']}", headers=ADMIN)).json()
    assert [e["action"] for e in first["items"] + rest["items"]] == [e["action"] for e in log["items"]]
    assert rest["next_cursor"] is None
    assert (await d.client.get("/v1/admin/audit?cursor=x", headers=ADMIN)).status_code == 422
