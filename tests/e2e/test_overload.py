"""End to end: at twice the system's capacity for a minute, intake refuses what dispatch cannot
take (503 with Retry-After), the orders it accepts are offered to a courier within 2 s, none is
lost, each of two merchants gets its share, couriers' calls and the tracking page keep their
latency meanwhile, and placed -> offered is back to normal soon after.

The knee is made small and known by construction: four bicycle couriers (capacity one job each)
who hold every job HOLD_S before delivering it. The system cannot deliver more than
COURIERS / HOLD_S = 4 orders/s whatever the machine's speed (polls and calls make it about 2.7 on
an idle machine, less on a busy one), and an order is offered only when a courier is free, so
past that rate placed -> offered grows without bound. The overload is OVERLOAD_RATE = 6 orders/s:
about twice the knee, and more than the most the couriers could ever take.

The hold also sets the tail the 2 s bound is held against: an order accepted while every courier
is busy waits for the first of them to deliver, up to a whole hold plus the courier's calls and
the matcher's look. With a hold of 1.5 s that tail came within 50 ms of the bound in every run,
admission or not, and passed it once in a clean-clone run; with 1 s the accepted orders' p99 was
1.13-1.14 s and their worst 1.23-1.26 s (two runs), while without admission control the orders
still pile up past any bound.

Without admission control (GIAO_ORDERS_ADMISSION_ENABLED=false) the queue grows by about
3 orders/s and the test fails: the accepted orders' p99 placed -> offered passes 2 s within
seconds (and the orders placed after the overload wait a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from shared.events import DISPATCH_TOPIC, ORDERS_TOPIC
from shared.kafka_clients import connection
from tests.e2e.system import System, start_system, stop_cleanly
from tests.infra import Infra
from tests.support import eventually, kafka_settings
from tools.client import Giao

pytestmark = pytest.mark.e2e

T = TypeVar("T")

COURIERS = 4
HOLD_S = 1.0  # a courier's time with a parcel: the knee is at most COURIERS / HOLD_S
POLL_S = 0.3
TRACKING_EVERY_S = 0.25
LATENCY_KEPT_S = 0.5
CALM_RATE = 1.0  # orders/s well under the knee, before and after the overload
CALM_S = 6.0
OVERLOAD_RATE = 6.0  # orders/s, from two merchants: BIG_SHARE of them from one
BIG_SHARE = 0.8
OVERLOAD_S = 60.0
RECOVERY_S = 15.0
RECOVERED_AFTER_S = 8.0  # orders placed this long after the overload ended see normal latency again

OVERLOAD = {
    # Late: not assigned 0.6 s after being placed (these couriers accept within a poll); one late
    # order is enough: the 2 s budget leaves no time to wait for a second one.
    "GIAO_ORDERS_ADMISSION_BOUND_S": "0.6",
    "GIAO_ORDERS_ADMISSION_MIN_LATE": "1",
    "GIAO_ORDERS_ADMISSION_HORIZON_S": "60",
    "GIAO_ORDERS_ADMISSION_REFRESH_S": "0.25",
    "GIAO_ORDERS_ADMISSION_MIN_RATE": "0.2",
    # Waiting orders must not expire during the test (system.FAST makes the window 12 s), nor
    # offers on a busy machine before a courier's accept gets through (FAST: 2 s).
    "GIAO_DISPATCH_WINDOW_S": "600",
    "GIAO_DISPATCH_OFFER_TIMEOUT_S": "10",
}


@pytest.fixture(scope="module")
def system(infra: Infra) -> Iterator[System]:
    system = start_system(infra, dispatch_instances=1, extra_env=OVERLOAD)
    yield system
    stop_cleanly(system)


@dataclass
class Load:
    """What the merchants asked for and got, and each order's placed and first offered time (the events' own)."""

    system: System
    client: Giao
    spot: tuple[float, float]
    accepted: dict[str, tuple[str, float]] = field(
        default_factory=dict
    )  # order id -> (merchant, when asked: monotonic)
    refused: list[tuple[str, float]] = field(default_factory=list)  # (merchant, monotonic)
    delivery_codes: dict[str, str] = field(default_factory=dict)
    placed_at: dict[str, datetime] = field(default_factory=dict)
    offered_at: dict[str, datetime] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    tracking_codes: list[str] = field(default_factory=list)
    # The paths that must keep their latency through the overload: (when started: monotonic, seconds)
    courier_calls: list[tuple[float, float]] = field(default_factory=list)
    tracking_reads: list[tuple[float, float]] = field(default_factory=list)

    async def timed(self, calls: list[tuple[float, float]], call: Awaitable[T]) -> T:
        started = time.monotonic()
        result = await call
        calls.append((started, time.monotonic() - started))
        return result

    def body(self) -> dict:
        lat, lng = self.spot
        return {
            "pickup": {"name": "Shop", "phone": "0912345678", "address": "Hồng Gai", "lat": lat, "lng": lng},
            "dropoff": {"name": "Khách", "phone": "0903123456", "address": "Bãi Cháy", "lat": lat + 0.01, "lng": lng},
            "parcel": {"weight_grams": 900},
            "cod_amount_vnd": 0,
        }

    async def place(self, merchant: str, key: str) -> None:
        asked_at = time.monotonic()
        body, idempotency_key = self.body(), str(uuid.uuid4())
        for attempt in range(3):
            try:
                answer = await self.client.call(
                    "place_order",
                    "POST",
                    f"{self.system.url_of('orders')}/v1/orders",
                    token=key,
                    json=body,
                    headers={"Idempotency-Key": idempotency_key},
                    expect=(201, 503),
                )
                break
            except httpx.TransportError as exc:  # a kept-alive connection closed under us: as a merchant would, retry
                if attempt == 2:
                    self.errors.append(repr(exc)[:300])
                    return
            except Exception as exc:  # noqa: BLE001 - counted, and the test fails on it
                self.errors.append(repr(exc)[:300])
                return
        if "id" in answer:
            self.accepted[answer["id"]] = (merchant, asked_at)
            self.delivery_codes[answer["id"]] = answer["delivery_code"]
            self.tracking_codes.append(answer["tracking_code"])
        else:
            assert answer["status"] == 503 and answer["title"] == "Overloaded", answer
            self.refused.append((merchant, asked_at))

    async def offer(self, seconds: float, rates: dict[str, tuple[str, float]]) -> None:
        """Each merchant (name -> (API key, orders/s)) places orders at its rate for `seconds`."""
        start = time.monotonic()
        schedule = sorted(
            (start + i / rate, name, key) for name, (key, rate) in rates.items() for i in range(round(seconds * rate))
        )
        for at, name, key in schedule:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            task = asyncio.create_task(self.place(name, key))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))

    async def watch_events(self, ready: asyncio.Event) -> None:
        prefix = self.system.prefix
        consumer = AIOKafkaConsumer(
            f"{prefix}{ORDERS_TOPIC}",
            f"{prefix}{DISPATCH_TOPIC}",
            **connection(kafka_settings(self.system.infra.kafka_bootstrap)),
            auto_offset_reset="earliest",
            group_id=f"{prefix}overload-watch-{uuid.uuid4().hex[:6]}",
            metadata_max_age_ms=1000,
        )
        await consumer.start()
        ready.set()
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        e = orjson.loads(r.value)
                        at = datetime.fromisoformat(e["occurred_at"])
                        if e["type"] == "order.placed":
                            self.placed_at[e["subject"]] = at
                        elif e["type"] == "delivery.offered":
                            self.offered_at.setdefault(e["subject"], at)
        finally:
            await consumer.stop()

    def placed_to_offered_s(self, order_ids: list[str]) -> list[float]:
        """Seconds from placed to first offered; an order not offered yet counts as infinitely late."""
        return [
            (self.offered_at[o] - self.placed_at[o]).total_seconds()
            if o in self.offered_at and o in self.placed_at
            else float("inf")
            for o in order_ids
        ]


async def courier(load: Load, token: str, stop: asyncio.Event) -> None:
    """Takes every offer, holds the parcel HOLD_S, delivers it: one job at a time (a bicycle)."""
    client = load.client
    while not stop.is_set():
        try:
            for job in await load.timed(load.courier_calls, client.jobs(token)):
                order_id = job["order_id"]
                if job["status"] == "offered":
                    await load.timed(load.courier_calls, client.job_action(token, order_id, "accept"))
                    await asyncio.sleep(HOLD_S)
                    await load.timed(load.courier_calls, client.job_action(token, order_id, "pickup"))
                    code = {"delivery_code": load.delivery_codes[order_id], "cod_collected_vnd": 0}
                    await load.timed(load.courier_calls, client.job_action(token, order_id, "deliver", code))
        except Exception as exc:  # noqa: BLE001 - counted, and the test fails on it
            load.errors.append(f"courier: {exc!r}"[:300])
        await asyncio.sleep(POLL_S)


async def customer(load: Load, stop: asyncio.Event) -> None:
    """Follows the newest parcel on its tracking page, as a customer refreshing it would."""
    while not stop.is_set():
        if load.tracking_codes:
            try:
                await load.timed(load.tracking_reads, load.client.parcel(load.tracking_codes[-1]))
            except Exception as exc:  # noqa: BLE001 - counted, and the test fails on it
                load.errors.append(f"customer: {exc!r}"[:300])
        await asyncio.sleep(TRACKING_EVERY_S)


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99 + 0.5) - 1)]


async def test_twice_the_knee_for_a_minute(system):
    async with Giao(system.endpoints()) as client:
        load = Load(system, client, system.spot())
        big = (await client.create_merchant("Shop lớn", "0912345678"))["api_key"]
        small = (await client.create_merchant("Shop nhỏ", "0912345678"))["api_key"]
        tokens = [
            (await client.create_courier(f"Xe đạp {i}", "0987654321", "bicycle"))["token"] for i in range(COURIERS)
        ]
        for t in tokens:
            await client.set_status(t, True, load.spot[0] + 0.001, load.spot[1])
        ready, stop = asyncio.Event(), asyncio.Event()
        watcher = asyncio.create_task(load.watch_events(ready))
        await ready.wait()
        couriers = [asyncio.create_task(courier(load, t, stop)) for t in tokens]
        couriers.append(asyncio.create_task(customer(load, stop)))
        phases: dict[str, list[str]] = {}
        try:
            # Calm (what normal latency is on this machine now), twice the knee for a minute, calm again.
            await load.offer(CALM_S, {"small": (small, CALM_RATE)})
            started = time.monotonic()
            await load.offer(
                OVERLOAD_S,
                {"big": (big, OVERLOAD_RATE * BIG_SHARE), "small": (small, OVERLOAD_RATE * (1 - BIG_SHARE))},
            )
            ended = time.monotonic()
            await load.offer(RECOVERY_S, {"small": (small, CALM_RATE)})
            await asyncio.gather(*load.tasks)
            phases["calm"] = [o for o, (_, at) in load.accepted.items() if at < started]
            phases["overload"] = [o for o, (_, at) in load.accepted.items() if started <= at < ended]
            phases["recovered"] = [o for o, (_, at) in load.accepted.items() if at >= ended + RECOVERED_AFTER_S]

            async def offered_yet() -> bool:  # the events of the last orders on their way
                return all(o in load.offered_at and o in load.placed_at for o in load.accepted)

            with contextlib.suppress(AssertionError):  # judged below: one never offered is infinitely late
                await eventually(offered_yet, timeout=10, what="every accepted order offered")
        except BaseException:
            stop.set()
            watcher.cancel()
            await asyncio.gather(*couriers, watcher, return_exceptions=True)
            raise
        finally:
            for phase, orders in phases.items():
                seconds = load.placed_to_offered_s(orders)
                worst = (p99(seconds), max(seconds)) if seconds else None
                print(f"{phase}: {len(orders)} accepted; p99, max placed -> offered s: {worst}")
        calm, over, recovered = phases["calm"], phases["overload"], phases["recovered"]
        assert not load.errors, load.errors[:5]
        asked = {"big": OVERLOAD_S * OVERLOAD_RATE * BIG_SHARE, "small": OVERLOAD_S * OVERLOAD_RATE * (1 - BIG_SHARE)}
        got = {m: sum(1 for o in over if load.accepted[o][0] == m) for m in asked}
        print(f"overload: accepted {got} of {asked}; refused {len(load.refused)}")
        if load.refused:
            print(f"the last refusal {max(at for _, at in load.refused) - ended:.1f} s after the overload ended")

        # The couriers' calls and a customer's tracking page kept their latency through the
        # overload: p99 within LATENCY_KEPT_S (or twice the calm phase's, on a machine too busy for
        # that). Measured: 8-16 ms and 21-22 ms, with admission control or without (the overload
        # here is of couriers, not of the machine): this holds the growing queue of waiting jobs
        # (about 200 without admission) from slowing the paths a courier and a customer wait on.
        for path, calls in (("courier calls", load.courier_calls), ("tracking reads", load.tracking_reads)):
            before = [s for at, s in calls if at < started]
            during = [s for at, s in calls if started <= at < ended]
            print(f"{path}: p99 {p99(before):.3f} s calm ({len(before)}), {p99(during):.3f} s overload ({len(during)})")
            assert len(during) >= OVERLOAD_S, (path, len(during))
            assert p99(during) <= max(LATENCY_KEPT_S, 2 * p99(before)), (path, p99(before), p99(during))

        # Intake refused what dispatch could not take, and what it accepted was offered within 2 s.
        assert load.refused and len(over) >= OVERLOAD_S * 0.25, (len(over), len(load.refused))
        assert p99(load.placed_to_offered_s(over)) < 2.0
        # One shop asking four times as much as the other did not take its share: the small one got
        # most of what it asked for, the big one about the same number of orders.
        assert got["small"] / asked["small"] >= 2 * got["big"] / asked["big"], got
        # Back to normal RECOVERED_AFTER_S after the end: nothing refused, offers as fast as before
        # the overload (within 0.5 s, or the calm phase's p99 on a machine too busy for that).
        assert not [r for r in load.refused if r[1] >= ended + RECOVERED_AFTER_S]
        assert len(recovered) >= (RECOVERY_S - RECOVERED_AFTER_S) * CALM_RATE - 1
        normal = max(0.5, p99(load.placed_to_offered_s(calm)))
        assert p99(load.placed_to_offered_s(recovered)) <= normal

        # No accepted order is lost: each one is delivered.
        keys = {"big": big, "small": small}

        async def all_delivered() -> bool:
            status = {o["id"]: o["status"] for key in keys.values() for o in await client.all_orders(key)}
            return all(status[o] == "delivered" for o in load.accepted)

        try:
            await eventually(all_delivered, timeout=30, interval=1.0, what="every accepted order delivered")
        finally:
            stop.set()
            watcher.cancel()
            await asyncio.gather(*couriers, watcher, return_exceptions=True)
