"""The console's views stay cheap with 10,000 couriers online: the statements store_admin.py
runs are EXPLAINed (ANALYZE, BUFFERS) on a database holding them, plus 3,000 open jobs and
20,000 finished ones, and must read through their indexes, touching few pages.

Run with `-s` to see the numbers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from services.dispatch import store_admin
from services.dispatch.store_admin import Area
from tests.dispatch.support import ADMIN
from tests.support import plan_nodes

CITY = Area(106.9, 20.9, 107.2, 21.05)
CORNER = Area(107.0, 20.94, 107.02, 20.96)  # a few streets


class Explaining:
    """Stands in for a connection: EXPLAINs the statement it is given instead of running it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.plan: dict = {}

    async def _explain(self, query: str, *args: Any) -> None:
        plan = await self.conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, *args)
        self.plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]

    async def fetch(self, query: str, *args: Any) -> list:
        await self._explain(query, *args)
        return []

    async def fetchrow(self, query: str, *args: Any) -> dict:
        await self._explain(query, *args)
        return {f: 0 for f in store_admin.Counts.__dataclass_fields__}


def summary(name: str, explained: dict) -> tuple[float, int]:
    plan = explained["Plan"]
    ms = explained["Execution Time"]
    pages = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    scans = sorted(
        {
            f"{n['Node Type']}({n.get('Index Name', n.get('Relation Name', ''))})"
            for n in plan_nodes(plan)
            if "Scan" in n["Node Type"]
        }
    )
    print(f"{name}: {ms:.2f} ms, {pages} pages; {', '.join(scans)}")
    assert not any(s.startswith("Seq Scan(jobs)") for s in scans), f"{name} reads every job: {scans}"
    return ms, pages


async def fill(pool) -> None:
    await pool.execute("""
        INSERT INTO couriers (id, name, phone, vehicle, secret_hash, capacity, load, online, lat, lng,
                              cell, coarse_cell)
        SELECT gen_random_uuid(), 'Courier ' || i, '+84912345678', 'motorbike', md5(i::text), 3, i % 4,
               i <= 10000, 20.90 + (i % 100) * 0.0015, 106.95 + (i / 100) * 0.0024, 0, 0
        FROM generate_series(1, 12000) AS i""")
    await pool.execute("""
        INSERT INTO jobs (order_id, tracking_code, merchant_id, pickup, dropoff, parcel, cod_amount_vnd, fee_vnd,
                          distance_m, pickup_lat, pickup_lng, pickup_cell, pickup_coarse_cell, code_salt, code_hash,
                          status, placed_at, dispatch_deadline, next_match_at, updated_at, courier_id)
        SELECT gen_random_uuid(), 'T' || i, gen_random_uuid(), '{}', '{}', '{}', 0, 0, 0,
               20.90 + (i % 97) * 0.0015, 106.95 + (i % 89) * 0.0024, 0, 0, 's', 'h',
               CASE WHEN i <= 1000 THEN 'waiting' WHEN i <= 23000 THEN 'delivered' ELSE 'expired' END,
               now() - i * interval '1 second', now() + interval '1 hour', now(),
               CASE WHEN i > 23000 THEN now() ELSE now() - i * interval '1 second' END,
               CASE WHEN i > 1000 AND i <= 23000 THEN (SELECT min(id::text)::uuid FROM couriers) END
        FROM generate_series(1, 24000) AS i""")
    await pool.execute("ANALYZE couriers; ANALYZE jobs")


async def test_the_views_read_few_pages_with_10000_couriers_online(dispatch):
    pool = dispatch.pool
    await fill(pool)
    results = {}
    async with pool.acquire() as conn:
        ex = Explaining(conn)
        await store_admin.couriers_in_area(ex, CITY, online=True, after=None, limit=501)
        results["couriers, city, first page of 500"] = summary("couriers, city, first page of 500", ex.plan)
        last = await conn.fetchval("SELECT id FROM couriers WHERE online ORDER BY id OFFSET 9000 LIMIT 1")
        await store_admin.couriers_in_area(ex, CITY, online=True, after=last, limit=501)
        results["couriers, city, page after 9000"] = summary("couriers, city, page after 9000", ex.plan)
        await store_admin.couriers_in_area(ex, CORNER, online=True, after=None, limit=501)
        results["couriers, a corner"] = summary("couriers, a corner", ex.plan)
        await store_admin.jobs_in_area(ex, CITY, statuses=store_admin.OPEN_STATUSES, after=None, limit=501)
        results["open jobs, city"] = summary("open jobs, city", ex.plan)
        await store_admin.jobs_in_area(ex, CITY, statuses=("waiting",), after=None, limit=501)
        results["waiting jobs, city"] = summary("waiting jobs, city", ex.plan)
        await store_admin.counts(ex, expired_since=datetime.now(UTC) - timedelta(hours=24))
        results["overview"] = summary("overview", ex.plan)
    for name, (ms, pages) in results.items():
        # 10,000 online couriers fill ~150 heap pages; a view reads them at most once, and never the history
        assert ms < 100 and pages < 1500, (name, ms, pages)

    # and through HTTP, end to end (JSON of 500 couriers included)
    for path, params in (
        ("/v1/admin/couriers", {"bbox": "106.9,20.9,107.2,21.05", "limit": 500}),
        ("/v1/admin/jobs", {"limit": 500}),
        ("/v1/admin/overview", {}),
    ):
        started = time.perf_counter()
        r = await dispatch.client.get(path, params=params, headers=ADMIN)
        took = (time.perf_counter() - started) * 1000
        print(f"GET {path}: {took:.1f} ms")
        assert r.status_code == 200 and took < 1000
    overview = (await dispatch.client.get("/v1/admin/overview", headers=ADMIN)).json()
    assert overview["couriers_online"] == 10000 and overview["waiting"] == 1000 and overview["expired_today"] == 1000
