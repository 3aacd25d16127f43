"""Runs a Script against the live APIs: merchants place orders, couriers ride and report,
customers watch. Only public HTTP APIs are used (tools.client).

City time runs `speedup` times faster than real time: a courier moves `speedup` city
seconds of road per real second and sends one location point per city second, in batches
small enough that no batch moves the courier further than GPS error (Simulation.ride_batch_s).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.geo import SPEED_MPS, haversine_m
from tools.client import ApiError, Giao
from tools.sim.city import FAIL_REASONS, CourierPlan, OrderPlan, Script

# The furthest a riding courier moves between two location batches. Phones stamp points with
# real time, and dispatch ignores a point further from the last one than the vehicle can go in
# between plus 250 m of GPS error (three in a row flag the courier): at city pace the moves are
# `speedup` times too fast for any vehicle, so each batch stays within that error instead.
BATCH_MOVE_M = 200

FINAL = {"delivered", "returned", "cancelled", "expired"}


@dataclass
class Tracked:
    """What the simulation knows of one order."""

    plan: OrderPlan
    id: str
    tracking_code: str
    delivery_code: str
    api_key: str
    placed_at: float
    expected: str = "placed"  # the status our own actions drove it to
    courier: int | None = None
    actions: dict[str, float] = field(default_factory=dict)  # status -> when our action got its 200
    seen_by_customer: dict[str, float] = field(default_factory=dict)


@dataclass
class Counters:
    placed: int = 0
    offered: int = 0
    declined: int = 0
    delivered: int = 0
    failed: int = 0
    returned: int = 0
    cancelled: int = 0
    cancel_refused: int = 0
    expired: int = 0
    locations_sent: int = 0
    errors: list[str] = field(default_factory=list)


class Simulation:
    def __init__(self, client: Giao, script: Script, *, speedup: float, poll_s: float = 1.0) -> None:
        self.client = client
        self.script = script
        self.speedup = speedup
        self.poll_s = poll_s
        # Real seconds between a riding courier's location batches (see BATCH_MOVE_M).
        self.ride_batch_s = min(poll_s, BATCH_MOVE_M / (speedup * max(SPEED_MPS.values())))
        self.orders: dict[str, Tracked] = {}
        self.counters = Counters()
        self.merchant_keys: list[str] = []
        self.courier_ids: list[str] = []
        self.courier_tokens: list[str] = []
        self.courier_links: list[str] = []  # each courier's one-time sign-in link to the courier app
        self.courier_busy: set[int] = set()
        self.positions: dict[int, list[float]] = {}  # each courier's [lat, lng], moved as they ride
        self.started = 0.0
        self.placing_done = asyncio.Event()
        self.stop = asyncio.Event()

    # --- set-up ------------------------------------------------------------------------
    async def setup(self) -> None:
        merchants = await asyncio.gather(*(self.client.create_merchant(m.name, m.phone) for m in self.script.merchants))
        self.merchant_keys = [m["api_key"] for m in merchants]
        couriers = await asyncio.gather(
            *(self.client.create_courier(c.name, c.phone, c.vehicle) for c in self.script.couriers)
        )
        self.courier_ids = [c["id"] for c in couriers]
        self.courier_tokens = [c["token"] for c in couriers]
        self.courier_links = [c["signin_link"] for c in couriers]

    # --- the run -----------------------------------------------------------------------
    async def run(self, drain_s: float) -> None:
        self.started = time.monotonic()
        couriers = [asyncio.create_task(self._courier(i, plan)) for i, plan in enumerate(self.script.couriers)]
        watchers: set[asyncio.Task] = set()
        try:
            await self._place_orders(watchers)
            self.placing_done.set()
            deadline = time.monotonic() + drain_s
            while time.monotonic() < deadline and any(o.expected not in FINAL for o in self.orders.values()):
                await asyncio.sleep(0.25)
        finally:
            self.stop.set()
            await asyncio.gather(*couriers, return_exceptions=True)
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await asyncio.gather(*(self._offline(i) for i in range(len(self.courier_tokens))), return_exceptions=True)

    async def _place_orders(self, watchers: set[asyncio.Task]) -> None:
        pending: set[asyncio.Task] = set()
        for plan in self.script.orders:
            delay = self.started + plan.at_s / self.speedup - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._place(plan, watchers))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending, return_exceptions=True)

    async def _place(self, plan: OrderPlan, watchers: set[asyncio.Task]) -> None:
        key = self.merchant_keys[plan.merchant]
        shop = self.script.merchants[plan.merchant].shop
        body = {
            "external_id": f"SIM-{uuid.uuid4().hex[:10]}",
            "pickup": shop.as_json(),
            "dropoff": plan.dropoff.as_json(),
            "parcel": {"weight_grams": plan.weight_grams, "description": plan.description},
            "cod_amount_vnd": plan.cod_amount_vnd,
            "note": "Gọi trước khi giao",
        }
        try:
            order = await self.client.place_order(key, body, idempotency_key=str(uuid.uuid4()))
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            self.counters.errors.append(f"place_order: {exc}")
            return
        tracked = Tracked(plan, order["id"], order["tracking_code"], order["delivery_code"], key, time.monotonic())
        self.orders[order["id"]] = tracked
        self.counters.placed += 1
        if plan.followed:
            t = asyncio.create_task(self._customer(tracked))
            watchers.add(t)
            t.add_done_callback(watchers.discard)
        if plan.cancel_after_s is not None:
            await asyncio.sleep(plan.cancel_after_s / self.speedup)
            await self._merchant_cancels(tracked)

    async def _merchant_cancels(self, order: Tracked) -> None:
        if order.expected in ("picked_up", "delivery_failed") or order.expected in FINAL:
            return
        try:
            await self.client.cancel_order(order.api_key, order.id, "Khách đổi ý", expect=(202, 409))
        except Exception as exc:  # noqa: BLE001
            self.counters.errors.append(f"cancel: {exc}")
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = await self.client.get_order(order.api_key, order.id)
            if state["status"] == "cancelled":
                order.expected = "cancelled"
                self.counters.cancelled += 1
                return
            if state["cancellation"] == "refused":
                self.counters.cancel_refused += 1
                return
            await asyncio.sleep(0.2)

    # --- couriers ----------------------------------------------------------------------
    async def _courier(self, index: int, plan: CourierPlan) -> None:
        token = self.courier_tokens[index]
        rng = random.Random(plan.seed)
        pos = self.positions[index] = [plan.lat, plan.lng]
        await self.client.set_status(token, True, *pos)
        decided: set[str] = set()
        while not self.stop.is_set():
            try:
                jobs = await self.client.jobs(token)
            except Exception as exc:  # noqa: BLE001
                self.counters.errors.append(f"jobs: {exc}")
                await asyncio.sleep(self.poll_s)
                continue
            offers = [j for j in jobs if j["status"] == "offered" and j["order_id"] not in decided]
            active = [j for j in jobs if j["status"] in ("assigned", "picked_up", "delivery_failed")]
            for offer in offers:
                decided.add(offer["order_id"])
                await self._answer_offer(token, rng, plan, index, offer)
            if active:
                self.courier_busy.add(index)
                await self._work_job(token, rng, plan, index, active[0], pos)
            else:
                self.courier_busy.discard(index)
                await self._wait(self.poll_s)

    async def _answer_offer(self, token, rng, plan, index, offer) -> None:
        self.counters.offered += 1
        order = self.orders.get(offer["order_id"])
        if rng.random() > plan.accept_probability:
            self.counters.declined += 1
            await self._act(token, offer["order_id"], "decline", expect=(200, 404, 409))
            return
        if await self._act(token, offer["order_id"], "accept", expect=(200, 409)) == 200 and order:
            order.expected, order.courier = "assigned", index
            order.actions["assigned"] = time.monotonic()

    async def _work_job(self, token, rng, plan, index, job, pos) -> None:
        order = self.orders.get(job["order_id"])
        oid = job["order_id"]
        if job["status"] == "assigned":
            await self.ride(token, plan, pos, job["pickup"]["lat"], job["pickup"]["lng"])
            if await self._act(token, oid, "pickup", expect=(200, 404, 409)) == 200 and order:
                order.expected = "picked_up"
                order.actions["picked_up"] = time.monotonic()
        elif job["status"] == "picked_up":
            await self.ride(token, plan, pos, job["dropoff"]["lat"], job["dropoff"]["lng"])
            if rng.random() < plan.fail_probability:
                if (
                    await self._act(token, oid, "fail", {"reason": rng.choice(FAIL_REASONS)}, expect=(200, 409)) == 200
                    and order
                ):
                    order.expected = "delivery_failed"
                    order.actions["delivery_failed"] = time.monotonic()
                    self.counters.failed += 1
                return
            code = order.delivery_code if order else "000000"
            if (
                await self._act(
                    token,
                    oid,
                    "deliver",
                    {"delivery_code": code, "cod_collected_vnd": job["cod_amount_vnd"]},
                    expect=(200, 409),
                )
                == 200
                and order
            ):
                order.expected, order.courier = "delivered", index  # the courier holds its cash now
                order.actions["delivered"] = time.monotonic()
                self.counters.delivered += 1
        elif job["status"] == "delivery_failed":
            await self.ride(token, plan, pos, job["pickup"]["lat"], job["pickup"]["lng"])
            if await self._act(token, oid, "return", expect=(200, 409)) == 200 and order:
                order.expected = "returned"
                order.actions["returned"] = time.monotonic()
                self.counters.returned += 1

    async def _act(self, token, order_id, action, body=None, expect=(200,)) -> int | None:
        try:
            await self.client.job_action(token, order_id, action, body, expect=(200,))
            return 200
        except ApiError as exc:
            if exc.status in expect:
                return exc.status
            self.counters.errors.append(f"{action}: {exc}")
        except Exception as exc:  # noqa: BLE001
            self.counters.errors.append(f"{action}: {exc!r}")
        return None

    async def ride(self, token, plan, pos, lat, lng) -> None:
        """Move at the vehicle's city speed, one location point per city second, a batch every
        `ride_batch_s` real seconds."""
        speed = SPEED_MPS[plan.vehicle]
        while not self.stop.is_set():
            remaining = haversine_m(pos[0], pos[1], lat, lng)
            if remaining < 15:
                return
            points = []
            now = datetime.now(UTC)
            per_batch = min(100, max(1, int(self.speedup * self.ride_batch_s)))
            for k in range(per_batch):
                step = min(1.0, speed / max(remaining, 1e-9))
                pos[0] += (lat - pos[0]) * step
                pos[1] += (lng - pos[1]) * step
                remaining = haversine_m(pos[0], pos[1], lat, lng)
                points.append(
                    {
                        "lat": round(pos[0], 6),
                        "lng": round(pos[1], 6),
                        # spread over the real time the batch stands for, the newest now
                        "at": (
                            now - (per_batch - 1 - k) * timedelta(seconds=self.ride_batch_s) / per_batch
                        ).isoformat(),
                    }
                )
                if remaining < 15:
                    break
            try:
                answer = await self.client.send_locations(token, points)
                self.counters.locations_sent += len(points)
                if answer.get("ignored_reason") == "impossible_speed":  # the simulation moved it too far
                    self.counters.errors.append("locations: ignored, impossible speed")
            except Exception as exc:  # noqa: BLE001
                self.counters.errors.append(f"locations: {exc}")
            await self._wait(self.ride_batch_s)

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _offline(self, index: int) -> None:
        plan = self.script.couriers[index]
        # where they are: a status's position is checked as a point's is
        lat, lng = self.positions.get(index, (plan.lat, plan.lng))
        await self.client.set_status(self.courier_tokens[index], False, lat, lng)

    # --- customers ---------------------------------------------------------------------
    async def _customer(self, order: Tracked) -> None:
        # Tracking hears of a parcel a moment after the merchant does: a 404 at first is normal.
        deadline = time.monotonic() + 10
        while not self.stop.is_set():
            try:
                async for _, state in self.client.follow(order.tracking_code):
                    status = state.get("status")
                    if status and status not in order.seen_by_customer:
                        order.seen_by_customer[status] = time.monotonic()
                    if status in FINAL:
                        return
                return
            except ApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    self.counters.errors.append(f"follow: {exc}")
                    return
                await self._wait(0.2)
            except Exception as exc:  # noqa: BLE001
                if not self.stop.is_set():
                    self.counters.errors.append(f"follow: {exc!r}")
                return

    # --- figures -----------------------------------------------------------------------
    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.orders.values():
            counts[o.expected] = counts.get(o.expected, 0) + 1
        return counts

    def action_to_customer_ms(self) -> list[float]:
        return [
            (o.seen_by_customer[s] - t) * 1000
            for o in self.orders.values()
            for s, t in o.actions.items()
            if s in o.seen_by_customer
        ]


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1], 1)
