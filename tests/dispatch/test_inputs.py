"""Bad input to dispatch's HTTP API is a 4xx problem answer, never a 5xx: values that pass a
loose schema but that PostgreSQL (or the conversion to it) cannot hold. One started app per
test, the cases in a loop: starting dispatch costs more than all of them."""

from __future__ import annotations

import base64
import json

import orjson

from tests.dispatch.support import ADMIN, HA_LONG

EXTREME_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1900-01-01T00:00:00Z", "2200-01-01T00:00Z"]
ORDER_ID = "6f1c2d3e-8a9b-4c5d-9e0f-1a2b3c4d5e6f"


def problem(r) -> dict:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return r.json()


async def test_a_location_point_with_an_extreme_time_is_422(dispatch):
    courier = await dispatch.new_courier()
    for at in EXTREME_TIMES:
        point = {"lat": HA_LONG[0], "lng": HA_LONG[1], "at": at}
        r = await dispatch.client.post("/v1/courier/locations", headers=courier.auth, json={"points": [point]})
        assert r.status_code == 422, (at, r.text)
        assert problem(r)["errors"][0]["loc"][-1] == "at"


def cursor_of(*key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


async def test_a_hand_made_cursor_is_422(dispatch):
    cursors = [cursor_of(at, ORDER_ID) for at in EXTREME_TIMES]
    cursors += [cursor_of("2025-01-01T00:00:00+00:00", ORDER_ID, "x"), cursor_of("2025-01-01", "x"), "%%%", "x" * 500]
    for path in ("/v1/admin/jobs", "/v1/admin/couriers"):
        for cursor in cursors:
            r = await dispatch.client.get(path, headers=ADMIN, params={"cursor": cursor})
            assert r.status_code == 422, (path, cursor, r.text)
            assert problem(r)["errors"][0]["loc"] == ["query", "cursor"]


async def test_a_courier_name_with_a_nul_or_control_character_is_422(dispatch):
    for name in ["Trần\x00Minh", "Trần \ud800 Minh", "Trần \u202eMinh", "Trần\x1bMinh", " "]:
        # json.dumps escapes every non-ASCII character: a lone surrogate exists only as an escape.
        body = json.dumps({"name": name, "phone": "0912 345 678", "vehicle": "car"})
        r = await dispatch.client.post(
            "/v1/admin/couriers", headers={**ADMIN, "content-type": "application/json"}, content=body
        )
        assert r.status_code == 422, (name, r.text)
        assert problem(r)["errors"][0]["loc"][-1] == "name"
    assert await dispatch.pool.fetchval("SELECT count(*) FROM couriers") == 0
