"""A steady load of full order lifecycles for the fault tests, and what must hold afterwards.

Merchants place orders at a steady rate and couriers work them, everyone retrying through
outages as real clients would; afterwards no event was lost or applied twice and no courier
is over capacity (tests/e2e/test_faults.py, tests/e2e/test_wire_faults.py).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable

import asyncpg
import orjson

from services.orders import domain as orders_domain
from services.tracking import domain as tracking_domain
from shared.events import DISPATCH_TOPIC, EVENT_TYPES, ORDER_TRACKING_TOPIC, ORDERS_TOPIC, type_name
from tests.support import kafka_settings, read_topic
from tools import dlq
from tools.client import ApiError, Giao

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
        """A client on a flaky network: retry through connection errors, 5xx/503 and 429 with a
        deadline."""
        deadline = time.monotonic() + 90
        while True:
            pause = 0.2
            try:
                return await fn(*args, **kw)
            except ApiError as exc:
                if (exc.status < 500 and exc.status != 429) or time.monotonic() > deadline:
                    raise
                if exc.status == 429:
                    pause = 1.0  # the least Retry-After the rate limits give (whole seconds)
            except Exception:  # connection refused while a service restarts
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(pause)

    async def merchant_orders(self) -> dict[str, dict]:
        """Every order of the merchant as the orders service shows it now, by id, as a merchant's
        dashboard would ask: a page at a time."""
        return {o["id"]: o for o in await self.retry(self.client.all_orders, self.key, what="list")}

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
                    if exc.status != 409:
                        raise
                    # 409: the step already happened (a retried call whose first answer was
                    # lost), or the job moved on without us (an offer that expired).
                    job = await self.retry(self.client.admin_job, oid, what="job")
                    if job["status"] == result:
                        self.expected[oid] = result
            await asyncio.sleep(0.2)


async def no_event_lost(system) -> None:
    """Each distinct event on a topic was applied exactly once by each service that consumes it,
    except the types a service commits unread (never applied); none was dead-lettered (every
    event here is valid: an outage is waited out, never blamed on the message)."""
    letters = await dead_letters(system)
    assert not letters, f"events dead-lettered: {letters[:5]}"
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


async def invariants_hold(system) -> None:
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


async def why_not_final(system, client: Giao, load: Load, orders: Iterable[str], couriers: list[asyncio.Task]) -> str:
    """What an engineer needs when orders did not end, from a run whose logs may be gone with
    its machine (CI's): the first five such orders as each service sees them, the couriers that
    gave up with an error, every dead letter, and the errors the services logged."""
    orders = set(orders)
    open_ = sorted(o for o in orders if load.expected.get(o) not in FINAL)
    lines = [f"{len(open_)} of {len(orders)} orders not final"]
    lines += [f"courier {i} ended: {t.exception()!r}" for i, t in enumerate(couriers) if t.done() and t.exception()]
    for oid in open_[:5]:
        views = {
            "orders": client.get_order(load.key, oid),
            "dispatch": client.admin_job(oid),
            "tracking": client.track(load.orders[oid]["tracking_code"]),
        }
        seen = []
        for service, view in views.items():
            try:
                answer = await view
            except ApiError as exc:  # 404: the service never heard of the order
                seen.append(f"{service} {exc.status}")
                continue
            except Exception as exc:  # noqa: BLE001 - a diagnosis, best effort
                seen.append(f"{service} {exc!r}")
                continue
            offers = [off.get("state") for off in answer.get("offers", [])]
            seen.append(f"{service} {answer['status']}" + (f" (offers {offers})" if service == "dispatch" else ""))
        lines.append(f"{oid}: courier drove it to {load.expected.get(oid)}; " + ", ".join(seen))
    try:
        lines += [f"dead letter on {topic}: {reason}" for topic, reason in await dead_letters(system)]
    except Exception as exc:  # noqa: BLE001
        lines.append(f"dead letters: {exc!r}")
    lines += logged_errors(system)
    return "\n".join(lines)


async def dead_letters(system) -> list[tuple[str, str]]:
    """Every dead letter of the system's topics: (the topic it came from, its reason)."""
    settings = kafka_settings(system.infra.kafka_bootstrap).model_copy(update={"topic_prefix": system.prefix})
    letters = []
    for topic in (ORDERS_TOPIC, ORDER_TRACKING_TOPIC, DISPATCH_TOPIC):
        letters += [(topic, d.reason) for d in await dlq.list_dead_letters(settings, topic)]
    return letters


def logged_errors(system, last: int = 10) -> list[str]:
    """The last `last` lines each process logged at ERROR or above."""
    lines = []
    for procs in system.procs.values():
        for proc in procs:
            try:
                logged = proc.log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            errors = [line for line in logged if " ERROR " in line or " CRITICAL " in line]
            lines += [f"{proc.log.name}: {line[:300]}" for line in errors[-last:]]
    return lines
