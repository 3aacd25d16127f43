"""The ops console's admin views: couriers and open jobs in an area (paged with an opaque
cursor), a courier's jobs, the overview's counters; their credentials and bad input."""

from __future__ import annotations

import uuid

import pytest

from shared.pages import CONTENT_SECURITY_POLICY
from tests.dispatch.support import ADMIN, HA_LONG, Order, east
from tests.support import eventually

HA_LONG_BOX = "106.9,20.9,107.2,21.05"


async def test_couriers_in_an_area_come_with_vehicle_load_and_busy(dispatch):
    near = await dispatch.new_courier(name="Đỗ Thị Gần", vehicle="bicycle", at=east(300))
    elsewhere = await dispatch.new_courier(name="Lê Văn Xa", at=(21.0285, 105.8542))  # Hà Nội
    offline = await dispatch.new_courier(name="Phạm Văn Nghỉ", at=None)
    order = await dispatch.place(Order())
    await dispatch.offer_for(near, order)

    r = await dispatch.client.get("/v1/admin/couriers", params={"bbox": HA_LONG_BOX}, headers=ADMIN)
    assert r.status_code == 200, r.text
    [shown] = r.json()["items"]
    assert shown["id"] == near.id and shown["display_name"] == "Gần Đ." and shown["vehicle"] == "bicycle"
    assert (shown["load"], shown["capacity"], shown["busy"], shown["online"]) == (1, 1, True, True)
    assert shown["lat"] == pytest.approx(east(300)[0]) and r.json()["next_cursor"] is None
    everywhere = (await dispatch.client.get("/v1/admin/couriers", headers=ADMIN)).json()["items"]
    assert {c["id"] for c in everywhere} == {near.id, elsewhere.id}  # offline ones only with online=false
    assert offline.id not in {c["id"] for c in everywhere}


async def test_pages_of_couriers_follow_the_cursor_to_the_end(dispatch):
    ids = {(await dispatch.new_courier(name=f"Courier Số {i}", at=east(100 * i))).id for i in range(5)}
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await dispatch.client.get("/v1/admin/couriers", params=params, headers=ADMIN)).json()
        seen += [c["id"] for c in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 5 and set(seen) == ids and seen == sorted(seen)


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "107,20,108"},
        {"bbox": "a,b,c,d"},
        {"bbox": "108,20,107,21"},
        {"bbox": "0,-91,1,0"},
        {"bbox": "nan,20,107,21"},
        {"cursor": "not-a-cursor"},
        {"cursor": "WyJ4Il0"},
        {"limit": 501},
        {"limit": 0},
        {"online": "maybe"},
        {"colour": "red"},
    ],
)
async def test_a_malformed_area_cursor_or_limit_is_422(dispatch, params):
    r = await dispatch.client.get("/v1/admin/couriers", params=params, headers=ADMIN)
    assert r.status_code == 422, (params, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("params", [{"status": "delivered"}, {"cursor": "WyJ4Il0"}, {"bbox": "1,2,3"}])
async def test_a_malformed_job_query_is_422(dispatch, params):
    assert (await dispatch.client.get("/v1/admin/jobs", params=params, headers=ADMIN)).status_code == 422


async def test_open_jobs_in_an_area_by_status_oldest_first_and_a_couriers_jobs(dispatch):
    courier = await dispatch.new_courier(vehicle="bicycle", at=east(200))  # capacity 1
    first = await dispatch.place(Order())
    await dispatch.offer_for(courier, first)
    assert (await dispatch.act(courier, first.id, "accept")).status_code == 200
    # the only courier is now busy: these wait
    waiting = [await dispatch.place(Order(pickup=east(50))) for _ in range(4)]

    async def listed() -> dict | None:
        r = await dispatch.client.get("/v1/admin/jobs", params={"bbox": HA_LONG_BOX}, headers=ADMIN)
        items = r.json()["items"]
        return r.json() if len(items) == 5 and any(j["status"] == "waiting" for j in items) else None

    body = await eventually(listed, timeout=10, what="the five open jobs")
    items = body["items"]
    assert items[0]["order_id"] == first.id and items[0]["status"] == "assigned"
    assert items[0]["courier_id"] == courier.id and items[0]["age_s"] >= 0
    assert [j["placed_at"] for j in items] == sorted(j["placed_at"] for j in items)
    assert {j["order_id"] for j in items} == {first.id, *(o.id for o in waiting)}
    assert items[0]["pickup_lat"] == pytest.approx(HA_LONG[0])

    only = (await dispatch.client.get("/v1/admin/jobs", params={"status": "assigned"}, headers=ADMIN)).json()
    assert [j["order_id"] for j in only["items"]] == [first.id]
    page = (await dispatch.client.get("/v1/admin/jobs", params={"limit": 2}, headers=ADMIN)).json()
    rest = (
        await dispatch.client.get("/v1/admin/jobs", params={"limit": 500, "cursor": page["next_cursor"]}, headers=ADMIN)
    ).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 3 and rest["next_cursor"] is None
    assert {j["order_id"] for j in page["items"] + rest["items"]} == {j["order_id"] for j in items}
    nowhere = await dispatch.client.get("/v1/admin/jobs", params={"bbox": "0,0,1,1"}, headers=ADMIN)
    assert nowhere.json() == {"items": [], "next_cursor": None}

    r = await dispatch.client.get(f"/v1/admin/couriers/{courier.id}/jobs", headers=ADMIN)
    assert r.status_code == 200
    held = r.json()["items"]
    assert first.id in {j["order_id"] for j in held} and all(j["courier_id"] == courier.id for j in held)
    for unknown in (str(uuid.uuid4()), "nope"):
        assert (await dispatch.client.get(f"/v1/admin/couriers/{unknown}/jobs", headers=ADMIN)).status_code == 404


async def test_the_overview_counts_waiting_offered_in_progress_and_expired(dispatch):
    empty = (await dispatch.client.get("/v1/admin/overview", headers=ADMIN)).json()
    assert (empty["waiting"], empty["offers_out"], empty["in_progress"], empty["oldest_waiting_s"]) == (0, 0, 0, None)
    assert empty["dead_letters"] == 0 and empty["outbox_backlog"] >= 0

    courier = await dispatch.new_courier(vehicle="bicycle", at=east(100))  # capacity 1
    assigned = await dispatch.place(Order())
    await dispatch.offer_for(courier, assigned)
    await dispatch.act(courier, assigned.id, "accept")
    await dispatch.place(Order())  # nobody free: waits
    await dispatch.pool.execute("UPDATE jobs SET placed_at = now() - interval '90 seconds' WHERE status = 'waiting'")

    async def counted() -> dict | None:
        body = (await dispatch.client.get("/v1/admin/overview", headers=ADMIN)).json()
        return body if (body["waiting"], body["in_progress"]) == (1, 1) else None

    body = await eventually(counted, timeout=10, what="one waiting, one in progress")
    assert body["offers_out"] == 0 and body["couriers_online"] == 1
    assert 90 <= body["oldest_waiting_s"] < 120 and body["expired_today"] == 0


async def test_the_views_need_the_admin_token(dispatch):
    courier = await dispatch.new_courier()
    for path in ("/v1/admin/couriers", "/v1/admin/jobs", "/v1/admin/overview", f"/v1/admin/couriers/{courier.id}/jobs"):
        assert (await dispatch.client.get(path)).status_code == 401
        assert (await dispatch.client.get(path, headers=courier.auth)).status_code == 401


async def test_the_views_are_documented_in_openapi(dispatch):
    paths = (await dispatch.client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/admin/couriers", "/v1/admin/jobs", "/v1/admin/overview", "/v1/admin/couriers/{courier_id}/jobs"):
        assert "get" in paths[path] and "401" in paths[path]["get"]["responses"], path
    names = {p["name"] for p in paths["/v1/admin/couriers"]["get"]["parameters"]}
    assert names == {"bbox", "online", "cursor", "limit"}


async def test_dispatch_serves_the_console_and_the_shared_map_files_with_the_strict_csp(dispatch):
    page = await dispatch.client.get("/ops/")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert 'data-testid="ops-login"' in page.text and 'data-testid="ops-map"' in page.text
    assert (await dispatch.client.get("/ops")).headers["location"] == "/ops/"
    for path in (
        "/ops/ops.js",
        "/ops/messages.js",
        "/web/shared/map.js",
        "/web/shared/vendor/qrcode-generator/qrcode.js",
    ):
        r = await dispatch.client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript"), path
    area = await dispatch.client.get("/map/service-area.geojson")
    assert area.status_code == 200 and area.json()["type"] == "FeatureCollection"
