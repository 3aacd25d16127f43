"""HTTP routes of the orders service: merchants (admin), quotes, orders, cancelling, the statement,
webhook endpoints, API keys and the admin's audit log.

Each route is thin: parse, call the service layer (service_layer.py), answer. The caller is
the one dependency (deps.py); the service is read from app.state through the `request`.
Answers are written by orjson from the service layer's plain dicts; the response models
(schemas.py) document them.
"""

from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import Depends, Header, Query, Request
from fastapi.responses import Response

from services.orders import deps
from services.orders.admission import Overloaded
from services.orders.deps import CurrentMerchant
from services.orders.domain import (
    STATEMENT_MAX_DAYS,
    BadCursor,
    BadRange,
    CancelNotAllowed,
    Cursor,
    DayRange,
    OutsideServiceArea,
    UnlockNotAllowed,
    day_range,
)
from services.orders.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    CancelIn,
    ConsoleConfigOut,
    MerchantCreated,
    MerchantIn,
    OrderIn,
    OrderOut,
    OrderPage,
    QuoteIn,
    QuoteOut,
    StatementOut,
    StatementPage,
)
from services.orders.service_layer import (
    DuplicateExternalId,
    IdempotencyConflict,
    KeyNotFound,
    LastKey,
    OrderNotFound,
)
from shared.contract import OrderStatus
from shared.http import Problem, api_router, invalid_query, json_body, problem_responses, read_body
from shared.pages import SECURITY_HEADERS

router = api_router()

# The merchant console (web/, served by app.py under this path) and its settings as JSON: the
# pages' CSP allows no inline script, so a page cannot be handed its settings any other way.
CONSOLE_PATH = "/merchant"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def order_not_found() -> Problem:
    return Problem(404, "Order not found")


def parse_order_id(text: str) -> UUID:
    """A path id that is not a UUID names no order: 404, like any other unknown id."""
    try:
        return UUID(text)
    except ValueError:
        raise order_not_found() from None


def outside_service_area(exc: OutsideServiceArea) -> Problem:
    """422 naming the place(s) outside, like a validation error of those fields."""
    return Problem(
        422,
        f"Invalid fields: {', '.join(exc.places)} (outside the service area)",
        title="Outside the service area",
        errors=[{"loc": ["body", place], "msg": "outside the service area"} for place in exc.places],
    )


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Printable ASCII, such as a UUID. Retrying with the same key and body returns the first "
        "response and creates nothing",
    ),
]


# --- routes -----------------------------------------------------------------------


@router.post(
    "/v1/admin/merchants",
    status_code=201,
    response_model=MerchantCreated,
    tags=["admin"],
    summary="Create a merchant and its API key",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(400, 401, 413, 415, 422),
)
async def create_merchant(request: Request, body: MerchantIn) -> Response:
    return json_response(await deps.orders(request).create_merchant(name=body.name, phone=body.phone), 201)


@router.post(
    "/v1/quotes",
    response_model=QuoteOut,
    tags=["orders"],
    summary="What a delivery would cost",
    responses=problem_responses(400, 401, 413, 415, 422, 429),
)
async def quote(request: Request, body: QuoteIn, _: CurrentMerchant) -> Response:
    try:
        q = deps.orders(request).quote(body)
    except OutsideServiceArea as exc:
        raise outside_service_area(exc) from None
    return json_response({"fee_vnd": q.fee_vnd, "distance_m": q.distance_m, "eta_minutes": q.eta_minutes})


@router.post(
    "/v1/orders",
    status_code=201,
    response_model=OrderOut,
    tags=["orders"],
    summary="Place an order",
    description="Under an `Idempotency-Key`, a retry with the same body gets the first 201 again "
    "(header `Idempotent-Replayed: true`) and creates nothing; another body is 409. While dispatch is "
    "behind, 503 with `Retry-After` (seconds): nothing was created, the same request may be sent again then.",
    responses=problem_responses(400, 401, 409, 413, 415, 422, 429, 503),
    openapi_extra=json_body(OrderIn),
)
async def create_order(request: Request, me: CurrentMerchant, idempotency_key: IdempotencyKey = None) -> Response:
    body = await read_body(request, OrderIn)  # one pass of pydantic-core: the hottest route
    try:
        deps.admission(request).check(me.id)
        placed = await deps.orders(request).place_order(me, body, idempotency_key)
    except Overloaded as exc:
        raise Problem(503, str(exc), title="Overloaded", headers={"Retry-After": str(exc.retry_after_s)}) from None
    except IdempotencyConflict as exc:
        raise Problem(409, str(exc), title="Idempotency conflict") from None
    except DuplicateExternalId as exc:
        raise Problem(409, str(exc), title="Duplicate external_id", order_id=str(exc.order_id)) from None
    except OutsideServiceArea as exc:
        raise outside_service_area(exc) from None
    return json_response(
        placed.body, placed.status, headers={"Idempotent-Replayed": "true"} if placed.replayed else None
    )


@router.get(
    "/v1/orders/{order_id}",
    response_model=OrderOut,
    tags=["orders"],
    summary="One of your orders",
    responses=problem_responses(401, 404, 429),
)
async def get_order(request: Request, order_id: str, me: CurrentMerchant) -> Response:
    try:
        return json_response(await deps.orders(request).order(me, parse_order_id(order_id)))
    except OrderNotFound:
        raise order_not_found() from None


@router.get(
    "/v1/orders",
    response_model=OrderPage,
    tags=["orders"],
    summary="Your orders, newest first",
    responses=problem_responses(401, 422, 429),
)
async def list_orders(
    request: Request,
    me: CurrentMerchant,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> Response:
    try:
        after = Cursor.decode(cursor) if cursor else None
    except BadCursor as exc:
        raise invalid_query("cursor", str(exc)) from None
    return json_response(await deps.orders(request).orders(me, status=status, limit=limit, after=after))


@router.post(
    "/v1/orders/{order_id}/cancel",
    status_code=202,
    response_model=OrderOut,
    tags=["orders"],
    summary="Ask to cancel an order",
    description='Dispatch decides: the order becomes `cancelled` (`cancellation: "done"`), or shows '
    '`cancellation: "refused"` if the parcel was already picked up. 409 once the parcel '
    "is picked up or the order is over.",
    responses=problem_responses(400, 401, 404, 409, 413, 415, 422, 429),
)
async def cancel_order(request: Request, order_id: str, me: CurrentMerchant, body: CancelIn | None = None) -> Response:
    try:
        view = await deps.orders(request).cancel_order(me, parse_order_id(order_id), body.reason if body else None)
    except OrderNotFound:
        raise order_not_found() from None
    except CancelNotAllowed as exc:
        raise Problem(409, str(exc), title="Not cancellable", order_status=exc.status) from None
    return json_response(view, 202)


@router.post(
    "/v1/orders/{order_id}/delivery-code/unlock",
    status_code=202,
    tags=["orders"],
    summary="Clear the delivery-code lock of a picked-up order",
    description="Wrong delivery codes lock the courier out of delivering the order (429 for a while, "
    "423 after the cap). Once the recipient confirmed the courier is with them, the merchant clears "
    "the lock: dispatch forgets the job's wrong codes and lockouts within moments (audited there as "
    "`job.code_lock_cleared` by `merchant:<id>`). 409 unless the order is `picked_up`; asking when "
    "nothing is locked changes nothing. A courier locked out across jobs stays so: only the admin "
    "clears a courier.",
    responses=problem_responses(400, 401, 404, 409, 413, 415, 422, 429),
)
async def unlock_delivery_code(request: Request, order_id: str, me: CurrentMerchant) -> Response:
    try:
        await deps.orders(request).unlock_delivery_code(me, parse_order_id(order_id))
    except OrderNotFound:
        raise order_not_found() from None
    except UnlockNotAllowed as exc:
        raise Problem(409, str(exc), title="Nothing to unlock", order_status=exc.status) from None
    return Response(status_code=202)


# --- the statement (cash on delivery, reconciled) --------------------------------------------

FirstDay = Annotated[str, Query(alias="from", max_length=10, description="The first day (Vietnam, UTC+7), YYYY-MM-DD")]
LastDay = Annotated[str, Query(max_length=10, description="The last day (Vietnam, UTC+7), YYYY-MM-DD, included")]
STATEMENT_RANGE = (
    f"Days are Vietnam's calendar days (UTC+7), `from` and `to` both included, at most {STATEMENT_MAX_DAYS} of them."
)


def parse_days(first: str, last: str) -> DayRange:
    try:
        return day_range(first, last)
    except BadRange as exc:
        raise invalid_query(exc.field, str(exc)) from None


@router.get(
    "/v1/statement",
    response_model=StatementOut,
    tags=["statement"],
    summary="Cash on delivery collected and fees, by day of delivery",
    description="Your orders delivered in the range, by the time they were delivered: each one's COD was "
    "collected in full (dispatch refuses a delivery whose amount differs), and its fee is due. `net_vnd` = "
    "COD collected - fees: what Giao owes you (negative: what you owe Giao). " + STATEMENT_RANGE,
    responses=problem_responses(401, 422, 429),
)
async def statement(request: Request, me: CurrentMerchant, first: FirstDay, to: LastDay) -> Response:
    return json_response(await deps.orders(request).statement(me, parse_days(first, to)))


@router.get(
    "/v1/statement/orders",
    response_model=StatementPage,
    tags=["statement"],
    summary="The statement's orders one by one, oldest delivery first",
    description=STATEMENT_RANGE,
    responses=problem_responses(401, 422, 429),
)
async def statement_orders(
    request: Request,
    me: CurrentMerchant,
    first: FirstDay,
    to: LastDay,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> Response:
    days = parse_days(first, to)
    try:
        after = Cursor.decode(cursor) if cursor else None
    except BadCursor as exc:
        raise invalid_query("cursor", str(exc)) from None
    return json_response(await deps.orders(request).statement_orders(me, days, limit=limit, after=after))


def key_not_found() -> Problem:
    return Problem(404, "API key not found")


def parse_key_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise key_not_found() from None


@router.post(
    "/v1/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    tags=["keys"],
    summary="Another API key (to rotate to)",
    responses=problem_responses(401, 429),
)
async def create_api_key(request: Request, me: CurrentMerchant) -> Response:
    return json_response(await deps.orders(request).create_api_key(me), 201)


@router.get(
    "/v1/api-keys",
    response_model=list[ApiKeyOut],
    tags=["keys"],
    summary="Your live API keys (prefix and creation time only)",
    responses=problem_responses(401, 429),
)
async def list_api_keys(request: Request, me: CurrentMerchant) -> Response:
    return json_response(await deps.orders(request).api_keys(me))


@router.delete(
    "/v1/api-keys/{key_id}",
    status_code=204,
    tags=["keys"],
    summary="Revoke one of your API keys",
    description="Every instance refuses it within a few seconds (`GIAO_ORDERS_API_KEY_CACHE_S`). "
    "Your last key cannot be revoked (409).",
    responses=problem_responses(401, 404, 409, 429),
)
async def revoke_api_key(request: Request, key_id: str, me: CurrentMerchant) -> Response:
    try:
        await deps.orders(request).revoke_api_key(me, parse_key_id(key_id))
    except KeyNotFound:
        raise key_not_found() from None
    except LastKey as exc:
        raise Problem(409, str(exc), title="Last API key") from None
    return Response(status_code=204)


@router.delete(
    "/v1/admin/api-keys/{key_id}",
    status_code=204,
    tags=["admin"],
    summary="Revoke any API key",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def admin_revoke_api_key(request: Request, key_id: str) -> Response:
    try:
        await deps.orders(request).admin_revoke_api_key(parse_key_id(key_id))
    except KeyNotFound:
        raise key_not_found() from None
    return Response(status_code=204)


# --- the merchant console's settings ----------------------------------------------------


@router.get(
    f"{CONSOLE_PATH}/config.json",
    response_model=ConsoleConfigOut,
    tags=["console"],
    summary="The merchant console's settings (public: no secret in them)",
)
async def console_config(request: Request) -> Response:
    settings = deps.settings(request)
    west, south, east, north = settings.area().bbox
    config = {
        "tracking_url": settings.tracking_public_url.rstrip("/"),
        "service_area_bounds": [[south, west], [north, east]],
    }
    return json_response(config, headers=SECURITY_HEADERS)
