"""The webhook worker alone: CPU per delivery in Python and in PostgreSQL, and deliveries/s.

    .venv/bin/python -m tools.bench.webhook_worker [--endpoints 200] [--deliveries 5000]

It makes a database of its own from the orders migrations, N merchants with one endpoint each on
a receiver in another process (tools/bench/webhook_receiver.py: it answers 200 at once and
verifies a sample of the signatures), places M orders and moves each to `assigned` through
store.save_progress (the consumer's statement, which writes the outbox rows: one delivery per
order), then runs WebhookService.deliver_forever until every delivery is recorded delivered.

Printed: deliveries/s; this process's CPU per delivery (time.process_time: every thread of the
worker, not the receiver's); the CPU of the PostgreSQL backends of the database over the same
time (/proc/<pid>/stat, PostgreSQL on this machine) and what they wrote per delivery
(pg_stat_database and pg_stat_user_tables, read after the worker's connections closed, which
flushes their counters); and the machine probe of tools/bench/measure.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpcore  # noqa: F401 - imported here, not on the first request (httpx imports it lazily)

from services.orders import store, webhook_store
from services.orders.domain import Progress, placed
from services.orders.settings import OrdersSettings
from services.orders.webhook_service import WebhookService
from services.orders.webhooks import EVENT_TYPES, new_signing_secret, webhook_events
from shared.db import create_pool, migrate_as
from shared.http import Metrics
from shared.service import Runtime
from tests.support import create_databases, drop_databases
from tools.bench.measure import machine_probe

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "orders" / "migrations"
TICKS = os.sysconf("SC_CLK_TCK")
BATCH = 100  # orders per save_progress, as a consumer batch writes them


class PoolOnly:
    """The part of a Runtime the webhook service uses."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool


def cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far of each of these processes (those still there)."""
    cpu = {}
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[pid] = (int(f[11]) + int(f[12])) / TICKS
    return cpu


async def backends_cpu_s(conn: asyncpg.Connection, database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL process of `database` (autovacuum included)."""
    return cpu_s([r["pid"] for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)])


async def written(conn: asyncpg.Connection, database: str, dsn: str) -> dict[str, int]:
    """Transactions and rows written so far in `database`, and per webhook table (its own statistics)."""
    row = await conn.fetchrow(
        "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = $1", database
    )
    own = await asyncpg.connect(dsn)
    try:
        tables = await own.fetch("SELECT relname, n_tup_upd, n_tup_hot_upd, n_tup_ins FROM pg_stat_user_tables")
    finally:
        await own.close()
    out = dict(row)
    for t in tables:
        if t["relname"].startswith("webhook_"):
            for k in ("n_tup_upd", "n_tup_hot_upd", "n_tup_ins"):
                out[f"{t['relname']}.{k}"] = t[k]
    return out


async def setup(dsn: str, endpoints: int, deliveries: int, receiver_port: int, slow: int) -> dict[str, str]:
    """Merchants, their endpoints (the first `slow` ones blackholed) and the outbox rows; the
    receiver's path -> secret."""
    pool = await create_pool(dsn, max_size=2)
    secrets: dict[str, str] = {}
    try:
        merchants = [uuid.uuid4() for _ in range(endpoints)]
        await pool.executemany(
            "INSERT INTO merchants (id, name, phone, api_key_hash) VALUES ($1, 'shop', '0900000000', $2)",
            [(m, uuid.uuid4().hex) for m in merchants],
        )
        for i, merchant in enumerate(merchants):
            path = f"/slow/{i}" if i < slow else f"/e/{i}"
            secret = new_signing_secret()
            await webhook_store.insert_endpoint(
                pool,
                id=uuid.uuid4(),
                merchant_id=merchant,
                url=f"http://127.0.0.1:{receiver_port}{path}",
                event_types=EVENT_TYPES,
                enabled=True,
                secret=secret,
            )
            secrets[path] = secret
        now = datetime.now(UTC)
        for start in range(0, deliveries, BATCH):
            ids = [uuid.uuid4() for _ in range(min(BATCH, deliveries - start))]
            await pool.executemany(
                """INSERT INTO orders (id, merchant_id, external_id, tracking_code, delivery_code, status, fee_vnd,
                       distance_m, cod_amount_vnd, pickup, dropoff, parcel, history, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, '1234', 'placed', 20000, 1000, 0, '{}', '{}', '{}', '[]', now(), now())""",
                [(o, merchants[(start + i) % endpoints], f"B-{start + i}", o.hex[:12]) for i, o in enumerate(ids)],
            )
            before = placed(now)
            after = Progress("assigned", (*before.history, {"status": "assigned", "at": now}), {"id": "c", "name": "C"})
            hooks = []
            for o in ids:
                hooks += webhook_events(before, after, order_id=o, event_id=uuid.uuid4(), sequence=1, at=now)
            async with pool.acquire() as conn, conn.transaction():
                await store.save_progress(conn, [(o, after) for o in ids], hooks)
    finally:
        await pool.close()
    return secrets


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admin = os.environ.get("GIAO_TEST_PG_DSN", "postgresql://giao:giao@127.0.0.1:5432/postgres")
    database = f"whbench_{uuid.uuid4().hex[:8]}"
    dsn = f"{admin.rpartition('/')[0]}/{database}"
    await create_databases(admin, [database])
    receiver = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.bench.webhook_receiver",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert receiver.stdin is not None and receiver.stdout is not None
    slow_deliveries = sum(1 for i in range(args.deliveries) if i % args.endpoints < args.slow)
    n = args.deliveries - slow_deliveries
    try:
        await migrate_as(dsn, MIGRATIONS)
        port = int((await receiver.stdout.readline()).split()[1])
        secrets = await setup(dsn, args.endpoints, args.deliveries, port, args.slow)
        config = {"secrets": secrets, "expect": n, "verify_every": args.verify_every}
        receiver.stdin.write(json.dumps(config).encode() + b"\n")
        await receiver.stdin.drain()
        probe_before = machine_probe()
        admin_conn = await asyncpg.connect(admin)
        try:
            settings = OrdersSettings(database_url=dsn, webhook_allow_private=True, webhook_poll_s=args.poll_s)
            pool = await create_pool(dsn, max_size=args.pool_size)
            service = WebhookService(cast(Runtime, PoolOnly(pool)), settings, Metrics("orders"))
            stats_before = await written(admin_conn, database, dsn)
            pg_before = await backends_cpu_s(admin_conn, database)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            worker = asyncio.create_task(service.deliver_forever())
            done_line = await receiver.stdout.readline()
            received_s = time.perf_counter() - wall0
            while await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'") < n:
                await asyncio.sleep(0.01)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            pg_after = await backends_cpu_s(admin_conn, database)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await pool.close()
            await asyncio.sleep(1.0)  # the closed backends' counters reach the statistics
            stats_after = await written(admin_conn, database, dsn)
        finally:
            await admin_conn.close()
        probe_after = machine_probe()
    finally:
        if receiver.returncode is None:
            receiver.stdin.close()
            await receiver.wait()
        await drop_databases(admin, [database])
    pg_cpu = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items())
    rows = {k: round((stats_after.get(k, 0) - stats_before.get(k, 0)) / n, 2) for k in stats_after}
    return {
        "deliveries": n,
        "endpoints": args.endpoints,
        "blackholed_endpoints": args.slow,
        "deliveries_per_s": round(n / wall, 1),
        "all_received_after_s": round(received_s, 2),
        "python_cpu_us_per_delivery": round(cpu / n * 1e6),
        "postgres_cpu_us_per_delivery": round(pg_cpu / n * 1e6),
        "receiver": json.loads(done_line.decode().split(" ", 1)[1]),
        "per_delivery": rows,
        "probe_before_after_s": [round(probe_before, 2), round(probe_after, 2)],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.webhook_worker", description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=200, help="merchants, one endpoint each")
    parser.add_argument("--deliveries", type=int, default=5000, help="outbox rows (one per order)")
    parser.add_argument("--slow", type=int, default=0, help="endpoints (of --endpoints) that never answer")
    parser.add_argument("--verify-every", type=int, default=25, help="the receiver verifies one delivery in k")
    parser.add_argument("--poll-s", type=float, default=1.0, help="webhook_poll_s (the default setting)")
    parser.add_argument("--pool-size", type=int, default=10, help="the worker's PostgreSQL pool")
    parser.add_argument("--repeat", type=int, default=1, help="runs, each on a database of its own")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    for _ in range(args.repeat):
        print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
