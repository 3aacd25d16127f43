"""HTTP routes of the orders service: merchants (admin), quotes, orders, cancelling.

Each route is thin: parse, authenticate, run one transaction through store.py with the
rules of domain.py, answer. Orders are written together with their event (shared.outbox)
and, under an Idempotency-Key, together with the response a retry will get again.
"""

import hashlib
from datetime import datetime, timezone
from typing import Annotated, Any
from uuid import UUID, uuid4

import orjson
from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from services.orders import store
from services.orders.domain import (
    BadCursor, CancelNotAllowed, Cursor, Tariff, new_tracking_code, placed, price, request_cancel,
)
from services.orders.schemas import (
    CancelIn, MerchantCreated, MerchantIn, OrderIn, OrderOut, OrderPage, QuoteIn, QuoteOut, order_view,
)
from shared.contract import OrderStatus
from shared.events import (
    ORDERS_TOPIC, OrderCancelRequested, OrderCancelRequestedData, OrderPlaced,
    OrderPlacedData,
)
from shared.http import Metrics, Problem, problem_responses, require_admin, unauthorized
from shared.outbox import add_event, event_args
from shared.secrets import KnownSecrets, hash_delivery_code, new_delivery_code, new_secret, secret_hash
from shared.service import Runtime
from shared.settings import CommonSettings

def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def parse_order_id(text: str) -> UUID:
    """A path id that is not a UUID names no order: 404, like any other unknown id."""
    try:
        return UUID(text)
    except ValueError:
        raise Problem(404, "Order not found") from None


def request_hash(body: BaseModel) -> str:
    """The same request, however its JSON was spaced or ordered, hashes the same."""
    return hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


# --- routes -----------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, scheme_name="merchant", description="A merchant's API key (from POST /v1/admin/merchants)")
_admin_bearer = HTTPBearer(auto_error=False, scheme_name="admin", description="The admin token (GIAO_ADMIN_TOKEN)")
_MERCHANT_CACHE_SIZE = 10_000


def add_routes(router: APIRouter, settings: CommonSettings, runtime: Runtime, metrics: Metrics, tariff: Tariff) -> None:
    """The merchant API, added to `router` (the app's own: see shared.http.StrictQueryRoute)."""
    placed_total = metrics.counter("orders_placed_total", "Orders placed")
    replayed_total = metrics.counter("orders_idempotent_replays_total", "Requests answered from an Idempotency-Key")
    cancel_total = metrics.counter("orders_cancel_requests_total", "Cancel requests sent to dispatch")
    orders_topic = settings.topic(ORDERS_TOPIC)
    known_keys = KnownSecrets(lambda key_hash: store.merchant_by_key_hash(runtime.pool, key_hash),
                              max_size=_MERCHANT_CACHE_SIZE)

    async def merchant(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> store.Merchant:
        if credentials is None or not credentials.credentials:
            raise unauthorized()
        found = await known_keys.owner(credentials.credentials)
        if found is None:
            raise unauthorized("Unknown API key")
        return found

    Merchant = Annotated[store.Merchant, Depends(merchant)]
    admin = [Depends(_admin_bearer), Depends(require_admin(settings.admin_token))]

    @router.post("/v1/admin/merchants", status_code=201, response_model=MerchantCreated, tags=["admin"],
                 summary="Create a merchant and its API key", dependencies=admin,
                 responses=problem_responses(400, 401, 413, 415, 422))
    async def create_merchant(body: MerchantIn) -> Response:
        api_key = new_secret("gk")
        merchant_id = uuid4()
        await store.insert_merchant(runtime.pool, id=merchant_id, name=body.name, phone=body.phone,
                                    api_key_hash=secret_hash(api_key))
        return json_response({"id": str(merchant_id), "name": body.name, "phone": body.phone, "api_key": api_key}, 201)

    @router.post("/v1/quotes", response_model=QuoteOut, tags=["orders"], summary="What a delivery would cost",
                 responses=problem_responses(400, 401, 413, 415, 422))
    async def quote(body: QuoteIn, _: Merchant) -> Response:
        q = price(tariff, pickup=(body.pickup.lat, body.pickup.lng), dropoff=(body.dropoff.lat, body.dropoff.lng),
                  weight_grams=body.parcel.weight_grams)
        return json_response({"fee_vnd": q.fee_vnd, "distance_m": q.distance_m, "eta_minutes": q.eta_minutes})

    @router.post("/v1/orders", status_code=201, response_model=OrderOut, tags=["orders"], summary="Place an order",
                 description="Under an `Idempotency-Key`, a retry with the same body gets the first 201 again "
                             "(header `Idempotent-Replayed: true`) and creates nothing; another body is 409.",
                 responses=problem_responses(400, 401, 409, 413, 415, 422))
    async def create_order(body: OrderIn, me: Merchant, idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
            description="Printable ASCII, such as a UUID. Retrying with the same key and body returns the first "
                        "response and creates nothing")] = None,
    ) -> Response:
        fingerprint = request_hash(body) if idempotency_key else ""
        async with runtime.pool.acquire() as conn:
            if not idempotency_key:
                view = order_view(await _insert_order(conn, me, body))  # one statement, its own transaction
            else:
                async with conn.transaction():
                    stored = await store.claim_idempotency_key(conn, me.id, idempotency_key, fingerprint)
                    if stored is not None:
                        if stored.request_hash != fingerprint:
                            raise Problem(409, "This Idempotency-Key was used with a different request body",
                                          title="Idempotency conflict")
                        replayed_total.inc()
                        return json_response(stored.body, stored.status, headers={"Idempotent-Replayed": "true"})
                    view = order_view(await _insert_order(conn, me, body))
                    await store.save_idempotent_response(conn, me.id, idempotency_key, 201, view)
        placed_total.inc()
        return json_response(view, 201)

    def _placed_event(me: store.Merchant, order: dict[str, Any]) -> list[Any]:
        return event_args(OrderPlaced, subject=str(order["id"]), source="orders", topic=orders_topic, data=OrderPlacedData(
            order_id=order["id"], merchant_id=me.id, tracking_code=order["tracking_code"],
            pickup=order["pickup"], dropoff=order["dropoff"], parcel=order["parcel"],
            cod_amount_vnd=order["cod_amount_vnd"], fee_vnd=order["fee_vnd"], distance_m=order["distance_m"],
            note=order["note"], delivery_code=hash_delivery_code(order["delivery_code"], settings.delivery_code_key)))

    async def _insert_order(conn: Any, me: store.Merchant, body: OrderIn) -> dict[str, Any]:
        q = price(tariff, pickup=(body.pickup.lat, body.pickup.lng), dropoff=(body.dropoff.lat, body.dropoff.lng),
                  weight_grams=body.parcel.weight_grams)
        now = datetime.now(timezone.utc)
        progress = placed(now)
        order = {
            "id": uuid4(), "merchant_id": me.id, "external_id": body.external_id,
            "tracking_code": new_tracking_code(), "delivery_code": new_delivery_code(),
            "status": progress.status, "fee_vnd": q.fee_vnd, "distance_m": q.distance_m,
            "cod_amount_vnd": body.cod_amount_vnd, "pickup": body.pickup.model_dump(),
            "dropoff": body.dropoff.model_dump(), "parcel": body.parcel.model_dump(), "note": body.note,
            "courier": None, "history": list(progress.history), "cancellation": None, "cancel_reason": None,
            "created_at": now, "updated_at": now,
        }
        for _ in range(5):
            if await store.insert_order(conn, order, _placed_event(me, order)):
                return order
            if body.external_id is not None:
                existing = await store.order_id_by_external_id(conn, me.id, body.external_id)
                if existing is not None:
                    raise Problem(409, f"external_id {body.external_id!r} already names order {existing}",
                                  title="Duplicate external_id", order_id=str(existing))
            order["tracking_code"] = new_tracking_code()  # ~2**-59 odds of landing here
        raise RuntimeError("could not find a free tracking code")

    @router.get("/v1/orders/{order_id}", response_model=OrderOut, tags=["orders"], summary="One of your orders",
                responses=problem_responses(401, 404))
    async def get_order(order_id: str, me: Merchant) -> Response:
        row = await store.get_order(runtime.pool, me.id, parse_order_id(order_id))
        if row is None:
            raise Problem(404, "Order not found")
        return json_response(order_view(row))

    @router.get("/v1/orders", response_model=OrderPage, tags=["orders"], summary="Your orders, newest first",
                responses=problem_responses(401, 422))
    async def list_orders(
        me: Merchant,
        status: Annotated[OrderStatus | None, Query(description="Only orders in this status")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    ) -> Response:
        try:
            after = Cursor.decode(cursor) if cursor else None
        except BadCursor as exc:
            raise Problem(422, "Invalid fields: cursor", title="Invalid input",
                          errors=[{"loc": ["query", "cursor"], "msg": str(exc)}]) from None
        rows = await store.list_orders(runtime.pool, me.id, status=status, limit=limit + 1, after=after)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = Cursor(page[-1]["created_at"], page[-1]["id"]).encode() if more else None
        return json_response({"items": [order_view(r) for r in page], "next_cursor": next_cursor})

    @router.post("/v1/orders/{order_id}/cancel", status_code=202, response_model=OrderOut, tags=["orders"],
                 summary="Ask to cancel an order",
                 description="Dispatch decides: the order becomes `cancelled` (`cancellation: \"done\"`), or shows "
                             "`cancellation: \"refused\"` if the parcel was already picked up. 409 once the parcel "
                             "is picked up or the order is over.",
                 responses=problem_responses(400, 401, 404, 409, 413, 415, 422))
    async def cancel_order(order_id: str, me: Merchant, body: CancelIn | None = None) -> Response:
        oid = parse_order_id(order_id)
        reason = body.reason if body else None
        async with runtime.pool.acquire() as conn, conn.transaction():
            row = await store.get_order(conn, me.id, oid, for_update=True)
            if row is None:
                raise Problem(404, "Order not found")
            try:
                decision = request_cancel(store.progress_of(row))
            except CancelNotAllowed as exc:
                raise Problem(409, str(exc), title="Not cancellable", order_status=exc.status) from None
            if decision.ask_dispatch:
                row = await store.save_cancel_request(conn, oid, decision.progress, reason)
                await add_event(conn, OrderCancelRequested, subject=str(oid), source="orders", topic=orders_topic,
                                data=OrderCancelRequestedData(order_id=oid, reason=reason))
        if decision.ask_dispatch:
            cancel_total.inc()
        return json_response(order_view(row), 202)
