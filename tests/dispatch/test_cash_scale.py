"""The cash views stay cheap with 2,000 couriers holding the cash of 50,000 deliveries and
200,000 more delivered jobs settled or without cash: the statements store_cash.py runs are
EXPLAINed (ANALYZE, BUFFERS) and must read through the partial index of held cash, never the
history of delivered jobs.

Run with `-s` to see the numbers."""

from __future__ import annotations

import time
import uuid

from services.dispatch import store_cash
from tests.dispatch.support import ADMIN
from tests.dispatch.test_admin_scale import Explaining, summary


class ExplainingCash(Explaining):
    async def fetchrow(self, query: str, *args: object) -> dict:
        await self._explain(query, *args)
        return {"vnd": 0, "n": 0}

    async def fetchval(self, query: str, *args: object) -> int:
        await self._explain(query, *args)
        return 0


COURIERS, HELD_EACH, SETTLED = 2000, 25, 200_000


async def fill(pool) -> None:
    await pool.execute(f"""
        INSERT INTO couriers (id, name, phone, vehicle, secret_hash, capacity, online, lat, lng, cell, coarse_cell)
        SELECT gen_random_uuid(), 'Courier ' || i, '+84912345678', 'motorbike', md5(i::text), 3, true,
               20.95, 107.05, 0, 0
        FROM generate_series(1, {COURIERS}) AS i""")
    await pool.execute(
        "INSERT INTO cash_handins (courier_id, amount_vnd, deliveries, actor) VALUES ($1, 1, 1, 'a')", uuid.uuid4()
    )
    # held: each courier's 25 deliveries; then settled ones and ones without cash
    await pool.execute(f"""
        INSERT INTO jobs (order_id, tracking_code, merchant_id, pickup, dropoff, parcel, cod_amount_vnd, fee_vnd,
                          distance_m, pickup_lat, pickup_lng, pickup_cell, pickup_coarse_cell, code_salt, code_hash,
                          status, placed_at, dispatch_deadline, next_match_at, updated_at, courier_id,
                          cod_collected_vnd, cash_handin_id)
        SELECT gen_random_uuid(), 'T' || i, gen_random_uuid(), '{{}}', '{{}}', '{{}}', 100000, 0, 0, 20.95, 107.05,
               0, 0, 's', 'h', 'delivered', now() - i * interval '1 second', now(), now(),
               now() - i * interval '1 second', c.id,
               CASE WHEN i % 4 = 0 AND i > {COURIERS * HELD_EACH} THEN 0 ELSE 100000 END,
               CASE WHEN i > {COURIERS * HELD_EACH} AND i % 4 <> 0 THEN 1 END
        FROM generate_series(1, {COURIERS * HELD_EACH + SETTLED}) AS i
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM couriers) c ON c.n = i % {COURIERS}""")
    # as autovacuum keeps them: statistics, and the visibility map that lets a sum read the index alone
    await pool.execute("VACUUM ANALYZE couriers, jobs, cash_handins")


async def test_the_cash_views_read_the_index_of_held_cash(dispatch):
    pool = dispatch.pool
    await fill(pool)
    one = await pool.fetchval("SELECT min(id::text)::uuid FROM couriers")
    results = {}
    async with pool.acquire() as conn:
        ex = ExplainingCash(conn)
        for name, call in (
            ("a courier's held cash", store_cash.held(ex, one)),
            ("a courier's held deliveries", store_cash.held_deliveries(ex, one, limit=500)),
            ("couriers holding cash, first page of 100", store_cash.couriers_holding(ex, after=None, limit=101)),
            ("all the cash held", store_cash.total_held(ex)),
        ):
            await call
            results[name] = summary(name, ex.plan)
    for name, (ms, pages) in results.items():
        # 50,000 held deliveries fill ~400 index pages: the list and the total read them once
        assert ms < 100 and pages < 1000, (name, ms, pages)
    for path in (f"/v1/admin/couriers/{one}/cash", "/v1/admin/cash"):
        started = time.perf_counter()
        r = await dispatch.client.get(path, headers=ADMIN)
        print(f"GET {path}: {(time.perf_counter() - started) * 1000:.1f} ms")
        assert r.status_code == 200 and r.json()
    body = (await dispatch.client.get("/v1/admin/cash", headers=ADMIN)).json()
    assert body["total_held_vnd"] == COURIERS * HELD_EACH * 100000
