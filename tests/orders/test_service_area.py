"""The service area: orders and quotes only inside it (422 naming the place outside, nothing
stored), the default (Quảng Ninh) holding the demo's and the bench's places, and the
ray cast on polygons with holes and several parts."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from services.orders.domain import OutsideServiceArea, ServiceArea
from services.orders.settings import OrdersSettings
from shared.maps import NEIGHBOURHOODS
from tests.orders.support import order_body
from tools.bench.load import ORIGIN as BENCH_ORIGIN

HANOI = (21.0285, 105.8342)
CAT_BA = (20.7270, 107.0480)  # Hải Phòng, across the bay from Hạ Long
SQUARE_WITH_HOLE = {
    "type": "Polygon",
    "coordinates": [
        [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
        [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]],
    ],
}


def test_a_polygon_with_a_hole_and_a_multipolygon():
    area = ServiceArea.from_geojson(SQUARE_WITH_HOLE)
    assert area.contains(lat=1, lng=1) and area.contains(lat=9.9, lng=5)
    assert not area.contains(lat=5, lng=5), "in the hole"
    assert not area.contains(lat=11, lng=5) and not area.contains(lat=5, lng=-0.1)
    two = ServiceArea.from_geojson(
        {
            "type": "Feature",
            "properties": {},
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [SQUARE_WITH_HOLE["coordinates"], [[[20, 20], [30, 20], [25, 30]]]],
            },
        }
    )
    assert two.contains(lat=22, lng=25) and two.contains(lat=1, lng=1)
    assert not two.contains(lat=15, lng=15) and not two.contains(lat=29, lng=21)


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "Point", "coordinates": [107, 21]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 100], [2, 0]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], ["a", 1], [2, 0]]]},
        {"type": "FeatureCollection", "features": []},
        [],
    ],
)
def test_what_is_not_an_area_is_refused(doc):
    with pytest.raises(ValueError):
        ServiceArea.from_geojson(doc)


def test_the_setting_takes_a_file_or_inline_geojson_and_stops_a_bad_one(tmp_path):
    path = tmp_path / "area.geojson"
    path.write_bytes(orjson.dumps(SQUARE_WITH_HOLE))
    for value in (str(path), orjson.dumps(SQUARE_WITH_HOLE).decode()):
        area = OrdersSettings(GIAO_SERVICE_AREA=value).area()
        assert area.contains(lat=1, lng=1) and not area.contains(*HANOI)
    for bad in (str(tmp_path / "missing.geojson"), "{not json", '{"type": "Point", "coordinates": [1, 2]}'):
        with pytest.raises(ValidationError, match=r"GIAO_SERVICE_AREA|GeoJSON"):
            OrdersSettings(GIAO_SERVICE_AREA=bad)


def test_the_default_area_is_quang_ninh_with_the_demo_and_the_bench_inside():
    area = OrdersSettings().area()
    body = order_body()
    places = [*NEIGHBOURHOODS.values(), BENCH_ORIGIN, (body["pickup"]["lat"], body["pickup"]["lng"])]
    # The bench's orders and couriers reach 3 km around its origin, the demo's 3.5 km around its shops.
    places += [(lat + dlat, lng + dlng) for lat, lng in places for dlat in (-0.04, 0.04) for dlng in (-0.04, 0.04)]
    assert all(area.contains(lat, lng) for lat, lng in places)
    for outside in (HANOI, CAT_BA, (10.7769, 106.7009), (0.0, 0.0), (-90.0, 180.0)):
        assert not area.contains(*outside), outside
    with pytest.raises(OutsideServiceArea) as refused:
        area.check(pickup=(20.9511, 107.0735), dropoff=HANOI)
    assert refused.value.places == ["dropoff"]


async def test_orders_and_quotes_outside_the_area_are_422_and_store_nothing(client, merchant, app):
    inside = order_body()
    r = await client.post(
        "/v1/quotes", json={k: inside[k] for k in ("pickup", "dropoff", "parcel")}, headers=merchant["headers"]
    )
    assert r.status_code == 200, r.text
    far = {**inside["dropoff"], "lat": HANOI[0], "lng": HANOI[1]}
    for pickup, dropoff, named in [
        (inside["pickup"], far, [["body", "dropoff"]]),
        (far, inside["dropoff"], [["body", "pickup"]]),
        (far, far, [["body", "pickup"], ["body", "dropoff"]]),
    ]:
        body = order_body(pickup=pickup, dropoff=dropoff)
        for path, sent in (("/v1/orders", body), ("/v1/quotes", {k: body[k] for k in ("pickup", "dropoff", "parcel")})):
            for headers in (merchant["headers"], {**merchant["headers"], "Idempotency-Key": f"k-{len(named)}"}):
                r = await client.post(path, json=sent, headers=headers)
                assert r.status_code == 422, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
                assert [e["loc"] for e in r.json()["errors"]] == named
    pool = app.state.runtime.pool
    assert await pool.fetchval("SELECT count(*) FROM orders") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    r = await client.post("/v1/orders", json=inside, headers=merchant["headers"])
    assert r.status_code == 201, r.text


async def test_the_console_map_is_given_the_area_bounds(client):
    r = await client.get("/merchant/config.json")
    assert r.status_code == 200
    (south, west), (north, east) = r.json()["service_area_bounds"]
    assert south < 20.95 < north and west < 107.07 < east and north - south < 2 and east - west < 2
