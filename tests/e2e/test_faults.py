"""Crashes under steady load: nothing accepted is lost, nothing is applied twice.

Real processes, a steady load of orders and couriers, and in turn: SIGTERM (graceful) and
`kill -9` of each service followed by a restart, a restart of Kafka and one of PostgreSQL.
Afterwards every order that got a 201 reaches the status its courier drove it to in all
three services, no history shows a status twice, no courier is over capacity, no order has
two couriers, and every event on the topics was applied exactly once by each consumer.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
import uuid
from collections import Counter

import asyncpg
import orjson
import pytest

from services.orders import domain as orders_domain
from services.tracking import domain as tracking_domain
from shared.events import DISPATCH_TOPIC, EVENT_TYPES, ORDER_TRACKING_TOPIC, ORDERS_TOPIC, type_name
from tests.conftest import ROOT
from tests.e2e.conftest import start_system, stop_system
from tests.support import eventually, read_topic
from tools.client import ApiError, Giao

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FINAL = {"delivered", "returned", "cancelled", "expired"}


class Load:
    """Merchants place orders at a steady rate; couriers work them; everyone retries through outages."""

    def __init__(self, system, client: Giao, couriers: int = 8, rate: float = 4.0) -> None:
        self.system, self.client, self.rate = system, client, rate
        self.n_couriers = couriers
        self.lat, self.lng = system.spot()
        self.key = ""
        self.tokens: list[str] = []
        self.orders: dict[str, dict] = {}  # id -> order as created (201)
        self.expected: dict[str, str] = {}  # id -> the status our courier drove it to
        self.placing = True
        self.stop = asyncio.Event()
        self.rng = random.Random(3)

    async def retry(self, fn, *args, what: str, **kw):
        """A client on a flaky network: retry through connection errors and 5xx/503 with a deadline."""
        deadline = time.monotonic() + 90
        while True:
            try:
                return await fn(*args, **kw)
            except ApiError as exc:
                if exc.status < 500 or time.monotonic() > deadline:
                    raise
            except Exception:  # connection refused while a service restarts
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def setup(self) -> None:
        self.key = (await self.client.create_merchant("Shop chịu lỗi", "0912345678"))["api_key"]
        for i in range(self.n_couriers):
            token = (await self.client.create_courier(f"Phạm Văn {i}", "0987654321", "motorbike"))["token"]
            await self.client.set_status(token, True, self.lat + 0.001 * i, self.lng)
            self.tokens.append(token)

    async def place(self) -> None:
        while self.placing:
            body = {
                "pickup": {
                    "name": "Shop",
                    "phone": "0912345678",
                    "address": "Hạ Long",
                    "lat": self.lat,
                    "lng": self.lng,
                },
                "dropoff": {
                    "name": "Khách",
                    "phone": "0903123456",
                    "address": "Hạ Long",
                    "lat": self.lat + 0.01,
                    "lng": self.lng,
                },
                "parcel": {"weight_grams": 500},
                "cod_amount_vnd": 50_000,
            }
            key = str(uuid.uuid4())
            # The same Idempotency-Key on every retry: an order is created once even if a 201 was lost.
            order = await self.retry(self.client.place_order, self.key, body, idempotency_key=key, what="place")
            self.orders[order["id"]] = order
            await asyncio.sleep(1 / self.rate)

    async def courier(self, token: str) -> None:
        while not self.stop.is_set():
            try:
                jobs = await self.retry(self.client.jobs, token, what="jobs")
            except Exception:  # noqa: BLE001
                continue
            for job in jobs:
                oid, status = job["order_id"], job["status"]
                action, body, result = {
                    "offered": ("accept", None, "assigned"),
                    "assigned": ("pickup", None, "picked_up"),
                    "delivery_failed": ("return", None, "returned"),
                }.get(status, (None, None, None))
                if status == "picked_up":
                    if self.rng.random() < 0.1:
                        action, body, result = "fail", {"reason": "refused"}, "delivery_failed"
                    else:
                        action, body, result = (
                            "deliver",
                            {"delivery_code": self.orders[oid]["delivery_code"], "cod_collected_vnd": 50_000},
                            "delivered",
                        )
                if action is None or oid not in self.orders:
                    continue
                try:
                    await self.retry(self.client.job_action, token, oid, action, body, what=action)
                    self.expected[oid] = result
                except ApiError as exc:
                    # 409: the step already happened (a retried call whose first answer was lost).
                    if exc.status != 409:
                        raise
            await asyncio.sleep(0.2)


def restart_local(script: str) -> None:
    for verb in ("stop", "start"):
        subprocess.run([str(ROOT / "deploy/local" / script), verb], check=True, timeout=180)


async def test_crashes_and_restarts_lose_nothing(infra):
    if not infra.local:
        pytest.skip("restarting Kafka and PostgreSQL needs the local servers of deploy/local")
    # A dispatch window longer than any outage here: every order is driven by its courier.
    system = await asyncio.to_thread(start_system, infra, 2, {"GIAO_DISPATCH_WINDOW_S": "300"})
    try:
        async with Giao(system.endpoints()) as client:
            load = Load(system, client)
            await load.setup()
            placer = asyncio.create_task(load.place())
            couriers = [asyncio.create_task(load.courier(t)) for t in load.tokens]

            async def steady(n: int = 6) -> None:
                before = len(load.orders)
                await eventually(lambda: _true(len(load.orders) >= before + n), timeout=90, what="load going on")

            await steady()
            for service in ("orders", "dispatch", "tracking"):
                proc = system.procs[service][0]
                assert await asyncio.to_thread(proc.terminate) == 0, f"{service}: SIGTERM under load not clean"
                await asyncio.to_thread(_restart, proc)
                await steady()
                await asyncio.to_thread(proc.kill)  # kill -9
                await asyncio.to_thread(_restart, proc)
                await steady()
            await asyncio.to_thread(restart_local, "kafka.sh")
            await steady()
            await asyncio.to_thread(restart_local, "postgres.sh")
            await steady()

            load.placing = False
            await placer

            async def all_final() -> bool:
                for o in load.orders:
                    if load.expected.get(o) not in FINAL and o not in load.expected:
                        # No courier ever took it: the system may rightly have expired it.
                        if (await client.get_order(load.key, o))["status"] == "expired":
                            load.expected[o] = "expired"
                return all(load.expected.get(o) in FINAL for o in load.orders)

            try:
                await eventually(all_final, timeout=120, interval=0.5, what="every order to reach a final status")
            except AssertionError:
                stuck = [o for o in load.orders if load.expected.get(o) not in FINAL]
                views = [
                    (
                        o,
                        load.expected.get(o),
                        (await client.get_order(load.key, o))["status"],
                        (await client.admin_job(o)),
                    )
                    for o in stuck[:5]
                ]
                raise AssertionError(f"{len(stuck)} orders not final; first: {views}") from None
            load.stop.set()
            await asyncio.gather(*couriers)

            async def everyone_agrees() -> bool:
                for oid, order in load.orders.items():
                    o = await client.get_order(load.key, oid)
                    t = await client.track(order["tracking_code"])
                    j = await client.admin_job(oid)
                    assert o["status"] == t["status"] == j["status"] == load.expected[oid], (
                        oid,
                        load.expected[oid],
                        o["status"],
                        t["status"],
                        j["status"],
                    )
                    history = [h["status"] for h in o["history"]]
                    timeline = [h["status"] for h in t["timeline"]]
                    assert len(history) == len(set(history)) and len(timeline) == len(set(timeline)), (
                        history,
                        timeline,
                    )
                    assert sum(1 for off in j["offers"] if off.get("state") == "accepted") <= 1
                return True

            await eventually(everyone_agrees, timeout=30, interval=0.5, what="the three services to agree")
            assert len(load.orders) >= 40
        await _no_event_lost(system)
        await _invariants_hold(system)
    finally:
        await asyncio.to_thread(stop_system, system)


async def _true(value: bool) -> bool:
    return value


def _restart(proc) -> None:
    proc.start()
    proc.wait_ready()


async def _no_event_lost(system) -> None:
    """Each distinct event on a topic was applied exactly once by each service that consumes it,
    except the types a service commits unread (never applied)."""
    on_topic: Counter = Counter()
    for topic in (ORDERS_TOPIC, ORDER_TRACKING_TOPIC, DISPATCH_TOPIC):
        records = await read_topic(system.infra.kafka_bootstrap, system.prefix + topic, at_least=1)
        distinct = {e["id"]: e["type"] for e in (orjson.loads(r.value) for r in records)}
        on_topic.update(distinct.values())
    consumers = {
        "orders": {DISPATCH_TOPIC},
        "dispatch": {ORDERS_TOPIC},
        "tracking": {ORDER_TRACKING_TOPIC, DISPATCH_TOPIC},  # never giao.orders.v1 (personal data)
    }
    topic_of = {type_name(cls): cls.topic for cls in EVENT_TYPES}
    unread = {
        "orders": orders_domain.IGNORED_EVENTS,
        "dispatch": frozenset(),
        "tracking": tracking_domain.IRRELEVANT_TYPES,
    }
    for service, reads in consumers.items():
        conn = await asyncpg.connect(system.databases[service])
        try:
            rows = await conn.fetch("SELECT event_type, sum(applied)::int AS n FROM inbox_applied GROUP BY event_type")
            applied = {r["event_type"]: r["n"] for r in rows}
            published = {
                r["event_type"]: r["published"]
                for r in await conn.fetch("SELECT event_type, published FROM outbox_published")
            }
        finally:
            await conn.close()
        for event_type, count in on_topic.items():
            if topic_of[event_type] in reads:
                expected = 0 if event_type in unread[service] else count
                assert applied.get(event_type, 0) == expected, (service, event_type, applied.get(event_type), expected)
        for event_type, count in published.items():
            # At-least-once: the relay may publish a row again after a crash, never less than once.
            assert count >= on_topic[event_type], (service, event_type, count, on_topic[event_type])


async def _invariants_hold(system) -> None:
    """Each courier's load is exactly the offers and jobs it holds, within capacity; each
    order has at most one accepted offer."""
    conn = await asyncpg.connect(system.databases["dispatch"])
    try:
        wrong_load = await conn.fetch(
            """SELECT c.id, c.load, c.capacity, count(j.order_id) AS holding
               FROM couriers c LEFT JOIN jobs j ON j.courier_id = c.id
                    AND j.status IN ('offered', 'assigned', 'picked_up', 'delivery_failed')
               GROUP BY c.id HAVING c.load <> count(j.order_id) OR c.load > c.capacity"""
        )
        assert not wrong_load, f"couriers whose load is off: {[dict(r) for r in wrong_load]}"
        doubled = await conn.fetch(
            "SELECT order_id FROM offers WHERE state = 'accepted' GROUP BY order_id HAVING count(*) > 1"
        )
        assert not doubled, f"orders with two couriers: {doubled}"
    finally:
        await conn.close()
