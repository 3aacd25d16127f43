"""HTTP routes of the orders service: merchants (admin), quotes, orders, cancelling.

Each route is thin: parse, authenticate, call the service layer (service_layer.py), answer.
"""

from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.orders import store
from services.orders.domain import BadCursor, CancelNotAllowed, Cursor
from services.orders.schemas import CancelIn, MerchantCreated, MerchantIn, OrderIn, OrderOut, OrderPage, QuoteIn, QuoteOut
from services.orders.service_layer import DuplicateExternalId, IdempotencyConflict, OrderNotFound, OrdersService
from shared.contract import OrderStatus
from shared.http import Problem, problem_responses, require_admin, unauthorized
from shared.settings import CommonSettings


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def parse_order_id(text: str) -> UUID:
    """A path id that is not a UUID names no order: 404, like any other unknown id."""
    try:
        return UUID(text)
    except ValueError:
        raise Problem(404, "Order not found") from None


# --- routes -----------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, scheme_name="merchant", description="A merchant's API key (from POST /v1/admin/merchants)")
_admin_bearer = HTTPBearer(auto_error=False, scheme_name="admin", description="The admin token (GIAO_ADMIN_TOKEN)")


def add_routes(router: APIRouter, settings: CommonSettings, service: OrdersService) -> None:
    """The merchant API, added to `router` (the app's own: see shared.http.StrictQueryRoute)."""

    async def merchant(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> store.Merchant:
        if credentials is None or not credentials.credentials:
            raise unauthorized()
        found = await service.merchant_by_api_key(credentials.credentials)
        if found is None:
            raise unauthorized("Unknown API key")
        return found

    Merchant = Annotated[store.Merchant, Depends(merchant)]
    admin = [Depends(_admin_bearer), Depends(require_admin(settings.admin_token))]

    @router.post("/v1/admin/merchants", status_code=201, response_model=MerchantCreated, tags=["admin"],
                 summary="Create a merchant and its API key", dependencies=admin,
                 responses=problem_responses(400, 401, 413, 415, 422))
    async def create_merchant(body: MerchantIn) -> Response:
        return json_response(await service.create_merchant(name=body.name, phone=body.phone), 201)

    @router.post("/v1/quotes", response_model=QuoteOut, tags=["orders"], summary="What a delivery would cost",
                 responses=problem_responses(400, 401, 413, 415, 422))
    async def quote(body: QuoteIn, _: Merchant) -> Response:
        q = service.quote(body)
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
        try:
            placed = await service.place_order(me, body, idempotency_key)
        except IdempotencyConflict as exc:
            raise Problem(409, str(exc), title="Idempotency conflict") from None
        except DuplicateExternalId as exc:
            raise Problem(409, str(exc), title="Duplicate external_id", order_id=str(exc.order_id)) from None
        return json_response(placed.body, placed.status,
                             headers={"Idempotent-Replayed": "true"} if placed.replayed else None)

    @router.get("/v1/orders/{order_id}", response_model=OrderOut, tags=["orders"], summary="One of your orders",
                responses=problem_responses(401, 404))
    async def get_order(order_id: str, me: Merchant) -> Response:
        try:
            return json_response(await service.order(me, parse_order_id(order_id)))
        except OrderNotFound:
            raise Problem(404, "Order not found") from None

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
        return json_response(await service.orders(me, status=status, limit=limit, after=after))

    @router.post("/v1/orders/{order_id}/cancel", status_code=202, response_model=OrderOut, tags=["orders"],
                 summary="Ask to cancel an order",
                 description="Dispatch decides: the order becomes `cancelled` (`cancellation: \"done\"`), or shows "
                             "`cancellation: \"refused\"` if the parcel was already picked up. 409 once the parcel "
                             "is picked up or the order is over.",
                 responses=problem_responses(400, 401, 404, 409, 413, 415, 422))
    async def cancel_order(order_id: str, me: Merchant, body: CancelIn | None = None) -> Response:
        try:
            view = await service.cancel_order(me, parse_order_id(order_id), body.reason if body else None)
        except OrderNotFound:
            raise Problem(404, "Order not found") from None
        except CancelNotAllowed as exc:
            raise Problem(409, str(exc), title="Not cancellable", order_status=exc.status) from None
        return json_response(view, 202)
