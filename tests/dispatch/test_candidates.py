"""With 10,000 couriers online, finding candidates reads only the cells near the pickup."""

from __future__ import annotations

import math
import random
import uuid

import orjson

from services.dispatch import store_couriers, store_matching
from services.dispatch.service.common import grid
from tests.dispatch.support import ADMIN, HA_LONG, Order, copy_couriers
from tests.support import plan_nodes, plans_of


def courier_row(g, i: int, lat: float, lng: float, *, online: bool) -> tuple:
    """A courier with three units free at (lat, lng), as copy_couriers takes it."""
    cell = g.cell(lat, lng)
    return (
        uuid.uuid4(),
        f"Tài xế {i}",
        "+84912345678",
        "motorbike",
        uuid.uuid4().hex,
        3,
        online,
        lat,
        lng,
        cell,
        g.coarse(cell),
    )


async def test_the_lookup_reads_the_partial_index_of_nearby_cells_only(dispatch):
    g = grid(dispatch.settings)
    rng = random.Random(4)
    rows = []
    for i in range(10_000):  # spread over ~40 x 40 km around Hạ Long
        lat = HA_LONG[0] + rng.uniform(-0.18, 0.18)
        lng = HA_LONG[1] + rng.uniform(-0.19, 0.19)
        rows.append(courier_row(g, i, lat, lng, online=True))

    def rows_in(cells):
        return [r for r in rows if r[9] in cells]

    await copy_couriers(dispatch.pool, rows)
    async with dispatch.pool.acquire() as conn:
        await conn.execute("ANALYZE couriers")
        first = g.plan()[0]
        # two pickups searched in one statement, as a matcher pass does
        pickups = [HA_LONG, (HA_LONG[0] + 0.05, HA_LONG[1] - 0.05)]
        cells = [list(g.cells(g.cell(*p), first)) for p in pickups]
        explained = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + store_matching.CANDIDATES_BY_CELL,
            [uuid.uuid4(), uuid.uuid4()],
            [p[0] for p in pickups],
            [p[1] for p in pickups],
            cells,
            32,
        )
        found = await store_matching.find_candidates(
            conn,
            coarse=False,
            limit=32,
            searches=[
                store_matching.Search(uuid.uuid4(), lat, lng, c) for (lat, lng), c in zip(pickups, cells, strict=True)
            ],
        )
    if isinstance(explained, str):
        explained = orjson.loads(explained)
    nodes = plan_nodes(explained[0]["Plan"])
    scans = [n for n in nodes if n.get("Relation Name") == "couriers" or n.get("Index Name")]
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), scans
    assert any(n.get("Index Name") == "couriers_available_by_cell" for n in nodes)
    courier_scans = [n for n in nodes if n.get("Index Name") == "couriers_available_by_cell"]
    read = max(n["Actual Rows"] for n in courier_scans)
    assert read < 100, f"read {read} rows per pickup for 7 cells out of 10,000 couriers"
    assert len(found) == 2 and all(found), "each pickup has couriers of its own cells"
    for c, nearby in zip(cells, found, strict=True):
        assert {r["id"] for r in nearby} <= {r[0] for r in rows_in(c)}

    # and the matcher offers the order to the courier standing at the pickup, among 10,000
    r = await dispatch.client.post(
        "/v1/admin/couriers",
        headers=ADMIN,
        json={"name": "Trần Văn Gần", "phone": "0912 345 678", "vehicle": "motorbike"},
    )
    token = r.json()["token"]
    nearest = {"Authorization": f"Bearer {token}"}
    await dispatch.client.put(
        "/v1/courier/status", headers=nearest, json={"online": True, "lat": HA_LONG[0], "lng": HA_LONG[1] + 1e-5}
    )
    order = await dispatch.place(Order())

    async def offered_to():
        return await dispatch.pool.fetchval(
            "SELECT courier_id FROM jobs WHERE order_id = $1 AND status = 'offered'", uuid.UUID(order.id)
        )

    from tests.support import eventually

    assert str(await eventually(offered_to, what="the offer")) == r.json()["id"]
    why = (await dispatch.client.get(f"/v1/admin/jobs/{order.id}", headers=ADMIN)).json()["offers"][0]["why"]
    assert why["distance_m"] <= 2 and 1 <= why["candidates_weighed"] <= 32 and why["search_resolution"] == 9
    assert math.isclose(why["courier_load"], 0)


async def test_capacity_given_back_by_one_statement_counts_each_unit_of_each_courier(dispatch):
    """Expiry, cancels and going offline give back several units at once, of one courier or
    of several: each courier gets back as many as its id appears, and nobody else anything."""
    one, two, other = [await dispatch.new_courier(name=f"Phạm Văn {n}") for n in ("Một", "Hai", "Ba")]
    ids = {c.id: uuid.UUID(c.id) for c in (one, two, other)}
    await dispatch.pool.execute("UPDATE couriers SET load = 3")
    async with dispatch.pool.acquire() as conn, conn.transaction():
        before = await conn.fetchval("SELECT max(capacity_at) FROM couriers WHERE id = $1", ids[two.id])
        await store_couriers.release_couriers(conn, [ids[two.id], ids[one.id], ids[two.id]])
        await store_couriers.release_couriers(conn, [ids[one.id]] * 2)  # one courier, two units
        await store_couriers.release_couriers(conn, [])
    loads = {
        str(r["id"]): (r["load"], r["capacity_at"])
        for r in await dispatch.pool.fetch("SELECT id, load, capacity_at FROM couriers")
    }
    assert {k: v[0] for k, v in loads.items()} == {one.id: 0, two.id: 1, other.id: 3}
    assert loads[two.id][1] > before, "the capacity is news for postponed orders near the courier"


async def test_couriers_offered_before_are_read_once_per_job_however_many_couriers_are_near(dispatch):
    """A pass leaves out the couriers a job was offered to before (declined, expired). Read
    per courier of the job's cells, that was a probe of `offers` for each of them, some 50 an
    order at 152/s: once per job instead, in whichever plan a prepared statement takes."""
    g = grid(dispatch.settings)
    rng = random.Random(5)
    rows = []
    for i in range(400):  # a busy quarter: 400 couriers within ~1 km of the pickup, the first at it
        lat, lng = (HA_LONG[0] + rng.uniform(-0.005, 0.005), HA_LONG[1] + rng.uniform(-0.005, 0.005)) if i else HA_LONG
        rows.append(courier_row(g, i, lat, lng, online=False))
    await copy_couriers(dispatch.pool, rows)
    orders = [uuid.uuid4() for _ in range(15)]  # a pass's jobs, all declined by the nearest courier
    nearest = rows[0][0]
    async with dispatch.pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO offers (order_id, courier_id, state, expires_at, distance_m, travel_s, courier_load,
                                   capacity, candidates, search_rings, search_resolution)
               SELECT o, c, 'declined', now(), 500, 60, 0, 3, 10, 1, 9
               FROM unnest($1::uuid[], $2::uuid[]) AS d(o, c)
               UNION ALL  -- and the day's other offers
               SELECT gen_random_uuid(), r.id, 'declined', now(), 500, 60, 0, 3, 10, 1, 9
               FROM couriers r, generate_series(1, 50)""",
            orders,
            [nearest] * len(orders),
        )
        # the statistics as they were taken before the shift, nobody online yet
        await conn.execute("ANALYZE couriers; ANALYZE offers; UPDATE couriers SET online = true")
        cells = list(g.cells(g.cell(*HA_LONG), g.plan()[0]))
        args = (orders, [HA_LONG[0]] * 15, [HA_LONG[1]] * 15, [cells] * 15, 32)
        plans = await plans_of(conn, store_matching.CANDIDATES_BY_CELL, *args, analyze=True)
        for mode, nodes in plans.items():
            reads = [(n["Node Type"], n["Actual Loops"]) for n in nodes if n.get("Relation Name") == "offers"]
            assert reads and all(loops <= len(orders) for _, loops in reads), (mode, reads)
        found = await store_matching.find_candidates(
            conn,
            coarse=False,
            limit=32,
            searches=[store_matching.Search(o, *HA_LONG, cells) for o in [*orders, uuid.uuid4()]],
        )
    *offered_before, never_offered = found
    assert all(len(couriers) == 32 and nearest not in {r["id"] for r in couriers} for couriers in offered_before)
    assert never_offered[0]["id"] == nearest
