"""What dispatch's tests share: a started app on the test's own database and topics, and
helpers that speak the contract (couriers through the API, orders as orders' events)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.dispatch.app import create_app
from services.dispatch.settings import DispatchSettings
from shared.events import OrderCancelRequested, OrderPlaced, new_event
from shared.secrets import hash_delivery_code
from tests.support import eventually, ops_client

ADMIN = {"Authorization": "Bearer dev-admin-token"}
HA_LONG = (20.9516, 107.0801)  # Hồng Gai, Hạ Long


def east(metres: float, of: tuple[float, float] = HA_LONG) -> tuple[float, float]:
    """The point `metres` east of `of`."""
    return of[0], of[1] + metres / (111_320 * math.cos(math.radians(of[0])))


async def events_written(pool) -> dict[str, int]:
    """Events dispatch wrote, by type: still in the outbox or already published (one statement,
    so one snapshot whatever the relay does meanwhile)."""
    rows = await pool.fetch(
        "SELECT event_type, count(*) AS n FROM (SELECT event_type FROM outbox UNION ALL "
        "SELECT event_type FROM outbox_published, generate_series(1, published)) e GROUP BY 1"
    )
    return {r["event_type"]: r["n"] for r in rows}


def metric(text: str, name: str) -> float:
    """The value of a metric in /metrics' text, summed over the lines that start with `name`."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def fast_settings(infra, database: str, topic_prefix: str, **overrides: Any) -> DispatchSettings:
    knobs: dict[str, Any] = dict(
        offer_timeout_s=5, window_s=60, poll_s=0.1, match_retry_base_s=0.05, match_retry_max_s=0.2, pool_size=10
    )
    knobs.update(overrides)
    return DispatchSettings(
        database_url=database, kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix, **knobs
    )


@dataclass
class Dispatch:
    """One running dispatch instance and a client for it."""

    app: Any
    client: httpx.AsyncClient
    settings: DispatchSettings

    @property
    def pool(self):
        return self.app.state.runtime.pool

    async def metrics(self) -> str:
        """/metrics, from the ops port where it is served."""
        async with ops_client(self.app) as ops:
            r = await ops.get("/metrics")
        assert r.status_code == 200
        return r.text

    async def new_courier(
        self, *, name: str = "Trần Văn Minh", vehicle: str = "motorbike", at: tuple[float, float] | None = HA_LONG
    ) -> Courier:
        r = await self.client.post(
            "/v1/admin/couriers", headers=ADMIN, json={"name": name, "phone": "0912 345 678", "vehicle": vehicle}
        )
        assert r.status_code == 201, r.text
        courier = Courier(r.json()["id"], r.json()["token"], name, vehicle)
        if at is not None:
            r = await self.client.put(
                "/v1/courier/status", headers=courier.auth, json={"online": True, "lat": at[0], "lng": at[1]}
            )
            assert r.status_code == 200, r.text
        return courier

    async def feed(self, *events) -> None:
        """Hand orders' events to dispatch's consumer handler, as the consumer would (no broker)."""
        handler = self.app.state.runtime.consumers[0].handler
        await handler([(e.topic, e) for e in events])

    async def place(self, order: Order) -> Order:
        await self.feed(order.placed_event())
        return order

    async def jobs(self, courier: Courier) -> list[dict]:
        r = await self.client.get("/v1/courier/jobs", headers=courier.auth)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def offer_for(self, courier: Courier, order: Order) -> dict:
        async def offered():
            return next(
                (j for j in await self.jobs(courier) if j["order_id"] == order.id and j["status"] == "offered"), None
            )

        return await eventually(offered, timeout=10, what=f"offer of {order.id}")

    async def act(self, courier: Courier, order_id: str, action: str, body: dict | None = None) -> httpx.Response:
        return await self.client.post(f"/v1/courier/jobs/{order_id}/{action}", headers=courier.auth, json=body)

    async def job_status(self, order_id: str) -> str:
        return await self.pool.fetchval("SELECT status FROM jobs WHERE order_id = $1", uuid.UUID(order_id))


@dataclass
class Courier:
    id: str
    token: str
    name: str
    vehicle: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Order:
    pickup: tuple[float, float] = HA_LONG
    cod_amount_vnd: int = 250_000
    code: str = "482913"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sequence: int = 0
    key: str = "dev-delivery-code-key"

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def placed_event(self) -> OrderPlaced:
        return new_event(
            OrderPlaced,
            subject=self.id,
            sequence=self._next(),
            source="orders",
            data={
                "order_id": self.id,
                "merchant_id": str(uuid.uuid4()),
                "tracking_code": uuid.uuid4().hex[:12].upper(),
                "pickup": {
                    "name": "Shop Hoa Mai",
                    "phone": "+84912345678",
                    "address": "12 Lê Thánh Tông, Hạ Long",
                    "lat": self.pickup[0],
                    "lng": self.pickup[1],
                },
                "dropoff": {
                    "name": "Nguyễn Văn An",
                    "phone": "+84987654321",
                    "address": "45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh",
                    "lat": 20.9555,
                    "lng": 107.0452,
                },
                "parcel": {"weight_grams": 1200, "description": "Áo dài"},
                "note": "Gọi trước khi giao, cổng số 3",
                "cod_amount_vnd": self.cod_amount_vnd,
                "fee_vnd": 25_000,
                "distance_m": 4200,
                "delivery_code": hash_delivery_code(self.code, self.key).model_dump(),
            },
        )

    def cancel_event(self, reason: str = "Khách đổi ý") -> OrderCancelRequested:
        return new_event(
            OrderCancelRequested,
            subject=self.id,
            sequence=self._next(),
            source="orders",
            data={"order_id": self.id, "reason": reason},
        )


async def start_dispatch(settings: DispatchSettings) -> Dispatch:
    app = create_app(settings)
    await app.state.runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://dispatch")
    return Dispatch(app, client, settings)


async def stop_dispatch(d: Dispatch) -> None:
    await d.client.aclose()
    await d.app.state.runtime.stop()


# The couriers table's columns, in the order the tests' bulk rows give them.
COURIER_COLUMNS = [
    "id",
    "name",
    "phone",
    "vehicle",
    "secret_hash",
    "capacity",
    "online",
    "lat",
    "lng",
    "cell",
    "coarse_cell",
]


async def copy_couriers(pool: Any, rows: list[tuple[Any, ...]]) -> None:
    """Many couriers at once (COPY), for tests of the search over thousands of them."""
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("couriers", records=rows, columns=COURIER_COLUMNS)
