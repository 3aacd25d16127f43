"""The bench's load generator: merchants place orders at a fixed rate, couriers take and
deliver them through the public APIs, a watcher on Kafka times placed -> offered, and a
sample of orders is followed in tracking over SSE (__main__.py runs it and reports)."""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from shared.geo import metres_per_degree
from shared.kafka_clients import connection
from shared.settings import CommonSettings
from tools.client import ApiError, Giao

# The bench works in a corner of its own (Cẩm Phả, east of Hạ Long), away from demo couriers.
ORIGIN = (21.0100, 107.2900)
STEP_M = 100  # a courier's move between two pings, at most, in each axis (see Bench.move)
M_PER_DEG_LAT, M_PER_DEG_LNG = metres_per_degree(ORIGIN[0])


MOBILE_PREFIXES = ("090", "091", "093", "094", "096", "097", "098")  # Vietnamese mobile networks


@dataclass
class Order:
    id: str
    code: str
    delivery_code: str
    cod: int
    placed: float
    sampled: bool
    api_key: str = ""
    accepted: float | None = None
    picked: float | None = None
    delivered: float | None = None
    ping: tuple[float, float] | None = None  # (lat sent, when the 202 came back)
    location_ms: float | None = None  # the ping -> the customer saw it
    seen: dict[str, float] = field(default_factory=dict)


class Bench:
    def __init__(self, client: Giao, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.rng = random.Random(7)
        self.orders: dict[str, Order] = {}
        self.keys: list[str] = []
        self.tokens: list[str] = []
        # Where each courier is (token: lat, lng): a courier's pings move it a plausible step,
        # as a phone's would. Points scattered at random made dispatch flag most couriers for
        # impossible speed within a minute at 150 orders/s (three jumps in a row), and capacity
        # vanished with them.
        self.positions: dict[str, tuple[float, float]] = {}
        self.stop = asyncio.Event()
        self.placing = True
        # Each order's placed and first offered time, from the events (the two topics are read
        # side by side, so an offer may well be read before its order.placed).
        self.placed_at: dict[str, datetime] = {}
        self.offered_at: dict[str, datetime] = {}
        self.errors: list[str] = []
        self.refused: list[float] = []  # when intake answered 503 (admission control), monotonic
        # The tasks placing orders and driving jobs: the event loop holds tasks only weakly, so
        # they are kept here until they end (and what is left is cancelled at the end of the run).
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def setup(self) -> None:
        sem = asyncio.Semaphore(20)

        async def one(coro):
            async with sem:
                return await coro

        self.keys = [
            m["api_key"]
            for m in await asyncio.gather(
                *(one(self.client.create_merchant(f"Shop bench {i}", "0912345678")) for i in range(self.args.merchants))
            )
        ]
        self.tokens = [
            c["token"]
            for c in await asyncio.gather(
                *(
                    one(self.client.create_courier(f"Lê Văn Bench{i}", "0987654321", "motorbike"))
                    for i in range(self.args.couriers)
                )
            )
        ]
        self.positions = {t: self._near(800) for t in self.tokens}
        await asyncio.gather(*(one(self.client.set_status(t, True, *self.positions[t])) for t in self.tokens))

    async def go_offline(self) -> None:
        """Every courier offline where they are (a status is a position too, checked as one)."""
        await asyncio.gather(
            *(self.client.set_status(t, False, *self.positions.get(t, ORIGIN)) for t in self.tokens),
            return_exceptions=True,
        )

    def _near(self, metres: float) -> tuple[float, float]:
        return (
            round(ORIGIN[0] + self.rng.uniform(-1, 1) * metres / M_PER_DEG_LAT, 6),
            round(ORIGIN[1] + self.rng.uniform(-1, 1) * metres / M_PER_DEG_LNG, 6),
        )

    def move(self, token: str) -> tuple[float, float]:
        """The courier's next position: a step of at most STEP_M in each axis (within dispatch's
        GPS slack, so plausible however soon it follows the last), back toward the origin in an
        axis where the courier strayed past 2 km."""
        lat, lng = self.positions[token]
        dlat = self.rng.uniform(-1, 1) * STEP_M / M_PER_DEG_LAT
        dlng = self.rng.uniform(-1, 1) * STEP_M / M_PER_DEG_LNG
        if abs(lat - ORIGIN[0]) * M_PER_DEG_LAT > 2000:
            dlat = math.copysign(dlat, ORIGIN[0] - lat)
        if abs(lng - ORIGIN[1]) * M_PER_DEG_LNG > 2000:
            dlng = math.copysign(dlng, ORIGIN[1] - lng)
        self.positions[token] = (round(lat + dlat, 6), round(lng + dlng, 6))
        return self.positions[token]

    # --- merchants ---------------------------------------------------------------------
    async def place_orders(self, watchers: set, rate: float | None = None, duration: float | None = None) -> None:
        """Orders at `rate` per second for `duration` seconds (by default --rate and --duration)."""
        interval = 1 / (rate or self.args.rate)
        duration = duration or self.args.duration
        start = time.monotonic()
        n = 0
        sem = asyncio.Semaphore(400)
        while time.monotonic() - start < duration:
            target = start + n * interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            n += 1
            self.spawn(self._place(sem, watchers))
        self.placing = False

    async def _place(self, sem: asyncio.Semaphore, watchers: set) -> None:
        async with sem:
            lat, lng = self._near(1500)
            dlat, dlng = self._near(3000)
            cod = self.rng.choice([0, 120_000])
            # A different customer on every order (the services cache parsed phone numbers, and
            # one number throughout would make that cache look better than it is).
            customer = f"{self.rng.choice(MOBILE_PREFIXES)}{self.rng.randrange(10**7):07d}"
            body = {
                "pickup": {"name": "Shop", "phone": "0912345678", "address": "Cẩm Phả", "lat": lat, "lng": lng},
                "dropoff": {"name": "Khách", "phone": customer, "address": "Cẩm Phả", "lat": dlat, "lng": dlng},
                "parcel": {"weight_grams": 900},
                "cod_amount_vnd": cod,
            }
            try:
                key = self.rng.choice(self.keys)
                o = await self.client.place_order(key, body)
            except ApiError as exc:
                if exc.status == 503:  # admission control: dispatch is behind
                    self.refused.append(time.monotonic())
                else:
                    self.errors.append(f"place: {exc}"[:300])
                return
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"place: {exc!r}"[:300])
                return
        order = Order(
            o["id"],
            o["tracking_code"],
            o["delivery_code"],
            cod,
            time.monotonic(),
            sampled=self.rng.random() < self.args.sample,
            api_key=key,
        )
        self.orders[order.id] = order
        if order.sampled:
            task = asyncio.create_task(self._follow(order))
            watchers.add(task)
            task.add_done_callback(watchers.discard)

    # --- couriers ----------------------------------------------------------------------
    async def courier(self, token: str) -> None:
        """Take offers as the app does, pushed on the courier's stream (or, with --poll, by
        polling every that many seconds); each job found is driven to its end by a task of its
        own (accept, pick up, deliver right away), so a courier's capacity is not held by jobs
        waiting for the next list."""
        active: set[str] = set()
        done: set[str] = set()
        await asyncio.sleep(self.rng.uniform(0, self.args.poll or 1.0))
        while not self.stop.is_set():
            try:
                if self.args.poll:
                    self._take(token, await self.client.jobs(token), active, done)
                else:
                    async for jobs in self.client.job_lists(token):
                        self._take(token, jobs, active, done)
            except Exception as exc:  # noqa: BLE001
                if self.stop.is_set():
                    return
                self.errors.append(f"jobs: {exc!r}"[:300])
            await asyncio.sleep(self.args.poll or 1.0)  # the next poll; a stream that ended, opened again

    def _take(self, token: str, jobs: list[dict], active: set[str], done: set[str]) -> None:
        for job in jobs:
            oid = job["order_id"]
            if oid not in active and oid not in done:
                active.add(oid)
                self.spawn(self._drive(token, job, active, done))

    async def _drive(self, token: str, job: dict, active: set[str], done: set[str]) -> None:
        status = job["status"]
        try:
            while status in ("offered", "assigned", "picked_up") and not self.stop.is_set():
                status = await self._advance(token, job["order_id"], status)
        finally:
            active.discard(job["order_id"])
            if status is None or status == "delivered":
                done.add(job["order_id"])

    async def _advance(self, token: str, order_id: str, status: str) -> str | None:
        """One step; returns the job's status after it (None: stop here)."""
        order = self.orders.get(order_id)
        try:
            if status == "offered":
                await self.client.job_action(token, order_id, "accept")
                if order:
                    order.accepted = time.monotonic()
                return "assigned"
            if status == "assigned":
                await self.client.job_action(token, order_id, "pickup")
                if order:
                    order.picked = time.monotonic()
                    if order.sampled:
                        lat, lng = self.move(token)
                        answer = await self.client.send_locations(
                            token, [{"lat": lat, "lng": lng, "at": datetime.now(UTC).isoformat()}]
                        )
                        # (two pings of one courier may arrive out of order: "older" is fine)
                        if answer.get("ignored_reason") == "impossible_speed":  # the bench moved it wrong
                            self.errors.append("location ignored: impossible_speed")
                        order.ping = (lat, time.monotonic())
                return "picked_up"
            if status == "picked_up" and order:
                ride = self.args.ride
                if order.sampled and order.ping:  # let the customer see the ping before the parcel arrives
                    ride = max(ride, 1.0 - (time.monotonic() - order.ping[1]))
                await asyncio.sleep(ride)
                await self.client.job_action(
                    token, order_id, "deliver", {"delivery_code": order.delivery_code, "cod_collected_vnd": order.cod}
                )
                order.delivered = time.monotonic()
                return "delivered"
            if status == "picked_up":
                # Not one of this run's orders (left waiting by an earlier, interrupted run and
                # offered to our couriers): no delivery code, so fail and return it, which frees
                # the courier.
                await self.client.job_action(token, order_id, "fail", {"reason": "other"})
                await self.client.job_action(token, order_id, "return")
                return None
        except ApiError as exc:
            if exc.status != 409:
                self.errors.append(f"{status}: {exc}"[:300])
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{status}: {exc!r}"[:300])
        return None

    async def cancel_undelivered(self) -> None:
        sem = asyncio.Semaphore(50)

        async def one(order: Order) -> None:
            async with sem:
                try:
                    await self.client.cancel_order(order.api_key, order.id, "benchmark over", expect=(202, 409))
                except Exception:  # noqa: BLE001 - best effort
                    pass

        await asyncio.gather(*(one(o) for o in self.orders.values() if o.delivered is None))

    # --- customers ---------------------------------------------------------------------
    async def _follow(self, order: Order) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                async for _, state in self.client.follow(order.code):
                    now = time.monotonic()
                    order.seen.setdefault(state["status"], now)
                    loc = (state.get("courier") or {}).get("location")
                    if order.ping and loc and abs(loc["lat"] - order.ping[0]) < 1e-6 and "location" not in order.seen:
                        order.seen["location"] = now
                        order.location_ms = (now - order.ping[1]) * 1000
                    if state["status"] == "delivered":
                        return
                return
            except ApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    self.errors.append(f"follow: {exc}"[:300])
                    return
                await asyncio.sleep(0.05)  # tracking has not heard of the parcel yet
            except Exception as exc:  # noqa: BLE001
                if not self.stop.is_set():
                    self.errors.append(f"follow: {exc!r}"[:300])
                return

    # --- events: placed -> offered from the services' own timestamps -------------------
    async def watch_events(self) -> None:
        consumer = AIOKafkaConsumer(
            "giao.orders.v1",
            "giao.dispatch.v1",
            # as GIAO_KAFKA_USERNAME: the Makefile gives the admin principal of deploy/local's broker
            **connection(CommonSettings(kafka_bootstrap_servers=self.args.kafka)),
            auto_offset_reset="latest",
            enable_auto_commit=False,
            group_id=f"bench-{uuid.uuid4().hex[:6]}",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            # a fetch per 100 ms, not one per event: both clocks are the events' own
            fetch_min_bytes=1024 * 1024,
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            while not self.stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                for records in batch.values():
                    for r in records:
                        self.note_event(orjson.loads(r.value))
        finally:
            await consumer.stop()

    def note_event(self, e: dict) -> None:
        if e["type"] == "order.placed":
            self.placed_at[e["subject"]] = datetime.fromisoformat(e["occurred_at"])
        elif e["type"] == "delivery.offered" and e["subject"] not in self.offered_at:
            self.offered_at[e["subject"]] = datetime.fromisoformat(e["occurred_at"])

    def placed_to_offered_ms(self, since: float, until: float) -> list[float]:
        """Placed -> first offered of the orders placed between the two epoch times."""
        return [
            (offered - placed).total_seconds() * 1000
            for subject, offered in self.offered_at.items()
            if (placed := self.placed_at.get(subject)) is not None and since <= placed.timestamp() < until
        ]
