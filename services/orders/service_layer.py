"""The merchant's use cases: creating merchants, quoting, placing an order (under an
Idempotency-Key, with its order.placed event), reading and cancelling orders, the statement of
delivered orders (cash on delivery, reconciled), and forgetting old idempotency keys.

Each use case is one transaction (or one statement) through store.py with the rules of
domain.py; an event leaves through the outbox (shared.outbox) in the transaction that writes
its order. HTTP stays in api.py: what goes wrong here is an exception of this module or of
domain.py, which api.py answers.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson
from pydantic import BaseModel

from services.orders import store
from services.orders.domain import (
    VIETNAM,
    Cursor,
    DayRange,
    Quote,
    new_order_id,
    new_tracking_code,
    placed,
    price,
    request_cancel,
    request_code_unlock,
)
from services.orders.schemas import OrderIn, QuoteIn, order_view
from services.orders.settings import OrdersSettings
from shared import audit
from shared.events import (
    ORDERS_TOPIC,
    Envelope,
    OrderCancelRequested,
    OrderCancelRequestedData,
    OrderCodeUnlockRequested,
    OrderCodeUnlockRequestedData,
    OrderPlaced,
    OrderPlacedData,
    OrderTrackable,
    OrderTrackableData,
    Point,
)
from shared.http import Metrics
from shared.outbox import add_event, opening_event_columns
from shared.secrets import (
    KnownSecrets,
    hash_delivery_code,
    new_delivery_code,
    new_secret,
    secret_hash,
    secret_shape,
)
from shared.service import Runtime

API_KEY_PREFIX = "gk"  # every API key is new_secret(API_KEY_PREFIX): "gk_" and 43 characters


class OrderNotFound(Exception):
    """No order of this merchant has that id."""


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before, with another request body."""

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used with a different request body")


class DuplicateExternalId(Exception):
    """Another order of this merchant already has the external_id."""

    def __init__(self, external_id: str, order_id: UUID) -> None:
        super().__init__(f"external_id {external_id!r} already names order {order_id}")
        self.order_id = order_id


class KeyNotFound(Exception):
    """No live API key has that id (of this merchant)."""


class LastKey(Exception):
    """A merchant's last live key cannot be revoked by the merchant (it would lock itself out)."""

    def __init__(self) -> None:
        super().__init__("This is your last API key: create another one before revoking it")


@dataclass(frozen=True)
class Placed:
    """The answer to placing an order: the new order (201), or under an Idempotency-Key the
    answer stored with the key by the first request (`replayed`)."""

    status: int
    body: Any
    replayed: bool = False


def api_key_view(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "prefix": row["prefix"], "created_at": row["created_at"]}


def statement_sums(delivered: int, cod_collected_vnd: int, fees_vnd: int) -> dict[str, int]:
    """A statement's figures; net_vnd is what Giao owes the shop (negative: what the shop owes)."""
    return {
        "delivered": delivered,
        "cod_collected_vnd": cod_collected_vnd,
        "fees_vnd": fees_vnd,
        "net_vnd": cod_collected_vnd - fees_vnd,
    }


def statement_line(row: Any) -> dict[str, Any]:
    return {
        "order_id": str(row["id"]),
        "external_id": row["external_id"],
        "tracking_code": row["tracking_code"],
        "delivered_at": row["delivered_at"].isoformat(),
        "cod_collected_vnd": row["cod_amount_vnd"],
        "fee_vnd": row["fee_vnd"],
    }


def request_hash(body: BaseModel) -> str:
    """The same request, however its JSON was spaced or ordered, hashes the same."""
    return hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


class OrdersService:
    """The use cases over the runtime's pool, with what they take from settings prepared once.
    app.py makes one per app; the routes find it in `app.state.orders` (deps.orders)."""

    MERCHANT_CACHE_SIZE = 10_000  # API keys remembered (shared.secrets.KnownSecrets)
    KEY_PREFIX_LENGTH = 10  # "gk_" and 7 characters: enough to tell a merchant's keys apart
    TRACKING_CODE_TRIES = 5  # a new tracking code is drawn when the last one was taken
    CREATED = 201  # a new order's answer, also stored with its Idempotency-Key
    PRUNE_EVERY_S = 3600.0

    def __init__(self, runtime: Runtime, settings: OrdersSettings, metrics: Metrics) -> None:
        self.runtime = runtime
        self.tariff = settings.tariff()
        self.area = settings.area()
        self.orders_topic = settings.topic(ORDERS_TOPIC)
        self.topic_prefix = settings.topic_prefix
        self.delivery_code_key = settings.delivery_code_key
        self.idempotency_ttl = timedelta(hours=settings.idempotency_ttl_hours)
        self.placed_total = metrics.counter("orders_placed_total", "Orders placed")
        self.replayed_total = metrics.counter(
            "orders_idempotent_replays_total", "Requests answered from an Idempotency-Key"
        )
        self.cancel_total = metrics.counter("orders_cancel_requests_total", "Cancel requests sent to dispatch")
        self.unlock_total = metrics.counter(
            "orders_code_unlock_requests_total", "Merchants' clears of a delivery-code lock sent to dispatch"
        )
        self.known_keys = KnownSecrets(
            self._merchant_by_key_hash,
            ttl_s=settings.api_key_cache_s,
            max_size=self.MERCHANT_CACHE_SIZE,
            shape=secret_shape(API_KEY_PREFIX),
        )

    # --- merchants ------------------------------------------------------------------

    async def _merchant_by_key_hash(self, key_hash: str) -> store.Merchant | None:
        return await store.merchant_by_key_hash(self.runtime.pool, key_hash)

    async def create_merchant(self, *, name: str, phone: str) -> dict[str, Any]:
        """A new merchant and its API key, shown this once (only the key's hash is kept)."""
        api_key = new_secret(API_KEY_PREFIX)
        merchant_id = uuid4()
        await store.insert_merchant(
            self.runtime.pool,
            id=merchant_id,
            name=name,
            phone=phone,
            api_key_hash=secret_hash(api_key),
            key_id=uuid4(),
            key_prefix=api_key[: self.KEY_PREFIX_LENGTH],
        )
        await audit.record(
            self.runtime.pool,
            action="merchant.created",
            target=str(merchant_id),
            detail={"name": name},
        )
        return {"id": str(merchant_id), "name": name, "phone": phone, "api_key": api_key}

    # --- API keys -------------------------------------------------------------------

    async def create_api_key(self, me: store.Merchant) -> dict[str, Any]:
        """Another key of this merchant (to rotate to), shown this once."""
        api_key = new_secret(API_KEY_PREFIX)
        row = await store.insert_api_key(
            self.runtime.pool,
            id=uuid4(),
            merchant_id=me.id,
            key_hash=secret_hash(api_key),
            prefix=api_key[: self.KEY_PREFIX_LENGTH],
        )
        return {**api_key_view(row), "api_key": api_key}

    async def api_keys(self, me: store.Merchant) -> list[dict[str, Any]]:
        return [api_key_view(r) for r in await store.list_api_keys(self.runtime.pool, me.id)]

    async def revoke_api_key(self, me: store.Merchant, key_id: UUID) -> None:
        """Revoke one of the merchant's keys (not its last one: LastKey); KeyNotFound otherwise."""
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            # Revocations of one merchant's keys one after the other: two at once would each
            # count the other's key as live (not committed yet) and together revoke the last.
            await store.lock_live_api_keys(conn, me.id)
            if await store.revoke_api_key(conn, key_id, me.id) is None:
                raise KeyNotFound()
            if await store.live_api_keys(conn, me.id) == 0:
                raise LastKey()  # rolls the revocation back

    async def admin_revoke_api_key(self, key_id: UUID) -> None:
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            merchant_id = await store.revoke_api_key(conn, key_id, None)
            if merchant_id is None:
                raise KeyNotFound()
            await audit.record(
                conn,
                action="api_key.revoked",
                target=str(key_id),
                detail={"merchant_id": str(merchant_id)},
            )

    # --- quotes and new orders --------------------------------------------------------

    def quote(self, body: QuoteIn | OrderIn) -> Quote:
        """Quotes and orders are checked and priced here alike, so a quote is what the order will
        cost. OutsideServiceArea when the pickup or the drop-off is outside the service area."""
        self.area.check((body.pickup.lat, body.pickup.lng), (body.dropoff.lat, body.dropoff.lng))
        return price(
            self.tariff,
            pickup=(body.pickup.lat, body.pickup.lng),
            dropoff=(body.dropoff.lat, body.dropoff.lng),
            weight_grams=body.parcel.weight_grams,
        )

    async def place_order(self, me: store.Merchant, body: OrderIn, idempotency_key: str | None) -> Placed:
        """The order and its event in one statement; under an Idempotency-Key, in one
        transaction with the key and the answer a retry will get again."""
        q = self.quote(body)  # before anything is stored
        async with self.runtime.pool.acquire() as conn:
            if not idempotency_key:
                view = order_view(await self._insert_order(conn, me, body, q))  # one statement, its own transaction
            else:
                fingerprint = request_hash(body)
                async with conn.transaction():
                    stored = await store.claim_idempotency_key(conn, me.id, idempotency_key, fingerprint)
                    if stored is not None:
                        if stored.request_hash != fingerprint:
                            raise IdempotencyConflict()
                        self.replayed_total.inc()
                        return Placed(stored.status, stored.body, replayed=True)
                    view = order_view(await self._insert_order(conn, me, body, q))
                    await store.save_idempotent_response(conn, me.id, idempotency_key, self.CREATED, view)
        self.placed_total.inc()
        return Placed(self.CREATED, view)

    async def _insert_order(
        self, conn: asyncpg.Connection, me: store.Merchant, body: OrderIn, q: Quote
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        progress = placed(now)
        order = {
            "id": new_order_id(),
            "merchant_id": me.id,
            "external_id": body.external_id,
            "tracking_code": new_tracking_code(),
            "delivery_code": new_delivery_code(),
            "status": progress.status,
            "fee_vnd": q.fee_vnd,
            "distance_m": q.distance_m,
            "cod_amount_vnd": body.cod_amount_vnd,
            "pickup": body.pickup.model_dump(),
            "dropoff": body.dropoff.model_dump(),
            "parcel": body.parcel.model_dump(),
            "note": body.note,
            "courier": None,
            "history": list(progress.history),
            "cancellation": None,
            "cancel_reason": None,
            "created_at": now,
            "updated_at": now,
        }
        for _ in range(self.TRACKING_CODE_TRIES):
            if await store.insert_order(conn, order, self._new_order_events(me, order)):
                return order
            if body.external_id is not None:
                existing = await store.order_id_by_external_id(conn, me.id, body.external_id)
                if existing is not None:
                    raise DuplicateExternalId(body.external_id, existing)
            order["tracking_code"] = new_tracking_code()  # ~2**-59 odds of landing here
        raise RuntimeError("could not find a free tracking code")

    def _new_order_events(self, me: store.Merchant, order: dict[str, Any]) -> list[list[Any]]:
        """order.placed, for dispatch: the delivery code travels only as a keyed hash dispatch
        can check. order.trackable, for tracking, on a topic of its own that holds nothing
        personal (tracking is refused giao.orders.v1)."""
        subject = str(order["id"])
        events: list[tuple[type[Envelope], str, Any]] = [
            (
                OrderPlaced,
                subject,
                OrderPlacedData(
                    order_id=order["id"],
                    merchant_id=me.id,
                    tracking_code=order["tracking_code"],
                    pickup=order["pickup"],
                    dropoff=order["dropoff"],
                    parcel=order["parcel"],
                    cod_amount_vnd=order["cod_amount_vnd"],
                    fee_vnd=order["fee_vnd"],
                    distance_m=order["distance_m"],
                    note=order["note"],
                    delivery_code=hash_delivery_code(order["delivery_code"], self.delivery_code_key),
                ),
            ),
            (
                OrderTrackable,
                subject,
                OrderTrackableData(
                    order_id=order["id"],
                    tracking_code=order["tracking_code"],
                    dropoff=Point(lat=order["dropoff"]["lat"], lng=order["dropoff"]["lng"]),
                    distance_m=order["distance_m"],
                ),
            ),
        ]
        return opening_event_columns(events, source="orders", topic=self._topic)

    def _topic(self, event_cls: type[Envelope]) -> str:
        return f"{self.topic_prefix}{event_cls.topic}"

    # --- reading and cancelling -------------------------------------------------------

    async def order(self, me: store.Merchant, order_id: UUID) -> dict[str, Any]:
        row = await store.get_order(self.runtime.pool, me.id, order_id)
        if row is None:
            raise OrderNotFound()
        return order_view(row)

    async def orders(
        self, me: store.Merchant, *, status: str | None, limit: int, after: Cursor | None
    ) -> dict[str, Any]:
        """A page of the merchant's orders, newest first, with the cursor of the next one."""
        rows = await store.list_orders(self.runtime.pool, me.id, status=status, limit=limit + 1, after=after)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = Cursor(page[-1]["created_at"], page[-1]["id"]).encode() if more else None
        return {"items": [order_view(r) for r in page], "next_cursor": next_cursor}

    # --- the statement ----------------------------------------------------------------

    async def statement(self, me: store.Merchant, days: DayRange) -> dict[str, Any]:
        """What the merchant's orders delivered in these days (Vietnam's) collected and cost, day by
        day (only days with a delivery) and in all. A delivered order's COD was collected in full:
        dispatch refuses a delivery whose amount differs."""
        rows = await store.statement_days(
            self.runtime.pool, me.id, start=days.start, end=days.end, utc_offset=VIETNAM.utcoffset(None)
        )
        lines = [
            {"date": r["day"].isoformat(), **statement_sums(r["delivered"], r["cod_collected_vnd"], r["fees_vnd"])}
            for r in rows
        ]
        total = statement_sums(
            sum(d["delivered"] for d in lines),
            sum(d["cod_collected_vnd"] for d in lines),
            sum(d["fees_vnd"] for d in lines),
        )
        return {"from": days.first.isoformat(), "to": days.last.isoformat(), **total, "days": lines}

    async def statement_orders(
        self, me: store.Merchant, days: DayRange, *, limit: int, after: Cursor | None
    ) -> dict[str, Any]:
        """A page of the statement's orders, the oldest delivery first, with the cursor of the next one."""
        rows = await store.statement_orders(
            self.runtime.pool, me.id, start=days.start, end=days.end, limit=limit + 1, after=after
        )
        page, more = rows[:limit], len(rows) > limit
        next_cursor = Cursor(page[-1]["delivered_at"], page[-1]["id"]).encode() if more else None
        return {"items": [statement_line(r) for r in page], "next_cursor": next_cursor}

    async def cancel_order(self, me: store.Merchant, order_id: UUID, reason: str | None) -> dict[str, Any]:
        """Ask dispatch to cancel (domain.request_cancel decides whether to ask); raises
        OrderNotFound, or domain.CancelNotAllowed once the parcel is picked up or the order over."""
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            row = await store.get_order(conn, me.id, order_id, for_update=True)
            if row is None:
                raise OrderNotFound()
            decision = request_cancel(store.progress_of(row))
            if decision.ask_dispatch:
                row = await store.save_cancel_request(conn, order_id, decision.progress, reason)
                await add_event(
                    conn,
                    OrderCancelRequested,
                    subject=str(order_id),
                    source="orders",
                    topic=self.orders_topic,
                    data=OrderCancelRequestedData(order_id=order_id, reason=reason),
                )
        if decision.ask_dispatch:
            self.cancel_total.inc()
        return order_view(row)

    async def unlock_delivery_code(self, me: store.Merchant, order_id: UUID) -> None:
        """Ask dispatch to clear the delivery-code lock of the order's job (order.code_unlock_requested;
        dispatch audits it); raises OrderNotFound, or domain.UnlockNotAllowed unless the parcel
        is picked up. Asking when nothing is locked changes nothing."""
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            row = await store.get_order(conn, me.id, order_id, for_update=True)
            if row is None:
                raise OrderNotFound()
            request_code_unlock(store.progress_of(row))
            await add_event(
                conn,
                OrderCodeUnlockRequested,
                subject=str(order_id),
                source="orders",
                topic=self.orders_topic,
                data=OrderCodeUnlockRequestedData(order_id=order_id, merchant_id=me.id),
            )
        self.unlock_total.inc()

    # --- housekeeping -----------------------------------------------------------------

    async def prune_idempotency_keys(self) -> None:
        """Hourly, forget the Idempotency-Keys older than their time to live (a background
        loop: app.py registers it with the runtime)."""
        while True:
            await store.prune_idempotency_keys(self.runtime.pool, datetime.now(UTC) - self.idempotency_ttl)
            await asyncio.sleep(self.PRUNE_EVERY_S)
