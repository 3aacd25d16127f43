"""The merchant's webhook endpoints: register, change, rotate the secret, read the delivery log,
redeliver, ping (thin HTTP; the use cases are webhook_service.py)."""

from typing import Annotated
from uuid import UUID

from fastapi import Query, Request
from fastapi.responses import Response

from services.orders import deps
from services.orders.api import json_response
from services.orders.deps import CurrentMerchant
from services.orders.webhook_schemas import (
    PingOut,
    WebhookDeliveryPage,
    WebhookEndpointCreated,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPatch,
)
from services.orders.webhook_service import EndpointNotFound
from services.orders.webhooks import UnsafeTarget
from shared.http import Problem, api_router, problem_responses

router = api_router()


def endpoint_not_found() -> Problem:
    return Problem(404, "Webhook endpoint not found")


def parse_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise endpoint_not_found() from None


def unsafe_url(exc: UnsafeTarget) -> Problem:
    return Problem(
        422, f"Invalid fields: url ({exc})", title="Invalid input", errors=[{"loc": ["body", "url"], "msg": str(exc)}]
    )


@router.post(
    "/v1/webhook-endpoints",
    status_code=201,
    response_model=WebhookEndpointCreated,
    tags=["webhooks"],
    summary="Register a webhook endpoint",
    description="The answer holds the signing secret, shown this once.",
    responses=problem_responses(400, 401, 413, 415, 422, 429),
)
async def create_webhook_endpoint(request: Request, body: WebhookEndpointIn, me: CurrentMerchant) -> Response:
    try:
        created = await deps.webhooks(request).create_endpoint(
            me.id, url=body.url, event_types=body.event_types, enabled=body.enabled
        )
    except UnsafeTarget as exc:
        raise unsafe_url(exc) from None
    return json_response(created, 201)


@router.get(
    "/v1/webhook-endpoints",
    response_model=list[WebhookEndpointOut],
    tags=["webhooks"],
    summary="Your webhook endpoints",
    responses=problem_responses(401, 429),
)
async def list_webhook_endpoints(request: Request, me: CurrentMerchant) -> Response:
    return json_response(await deps.webhooks(request).endpoints(me.id))


@router.get(
    "/v1/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpointOut,
    tags=["webhooks"],
    summary="One webhook endpoint (with the reason it was disabled, if it was)",
    responses=problem_responses(401, 404, 429),
)
async def get_webhook_endpoint(request: Request, endpoint_id: str, me: CurrentMerchant) -> Response:
    try:
        return json_response(await deps.webhooks(request).endpoint(me.id, parse_id(endpoint_id)))
    except EndpointNotFound:
        raise endpoint_not_found() from None


@router.patch(
    "/v1/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpointOut,
    tags=["webhooks"],
    summary="Change an endpoint's URL, event types or enabled flag",
    responses=problem_responses(400, 401, 404, 413, 415, 422, 429),
)
async def update_webhook_endpoint(
    request: Request, endpoint_id: str, body: WebhookEndpointPatch, me: CurrentMerchant
) -> Response:
    try:
        return json_response(
            await deps.webhooks(request).update_endpoint(
                me.id, parse_id(endpoint_id), url=body.url, event_types=body.event_types, enabled=body.enabled
            )
        )
    except UnsafeTarget as exc:
        raise unsafe_url(exc) from None
    except EndpointNotFound:
        raise endpoint_not_found() from None


@router.delete(
    "/v1/webhook-endpoints/{endpoint_id}",
    status_code=204,
    tags=["webhooks"],
    summary="Delete an endpoint and its delivery log",
    responses=problem_responses(401, 404, 429),
)
async def delete_webhook_endpoint(request: Request, endpoint_id: str, me: CurrentMerchant) -> Response:
    try:
        await deps.webhooks(request).delete_endpoint(me.id, parse_id(endpoint_id))
    except EndpointNotFound:
        raise endpoint_not_found() from None
    return Response(status_code=204)


@router.post(
    "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=WebhookEndpointCreated,
    tags=["webhooks"],
    summary="A new signing secret",
    description="The new secret is shown this once. Until `previous_secret_expires_at` every delivery "
    "carries two signatures, by the old and the new secret.",
    responses=problem_responses(401, 404, 429),
)
async def rotate_webhook_secret(request: Request, endpoint_id: str, me: CurrentMerchant) -> Response:
    try:
        return json_response(await deps.webhooks(request).rotate_secret(me.id, parse_id(endpoint_id)))
    except EndpointNotFound:
        raise endpoint_not_found() from None


@router.get(
    "/v1/webhook-endpoints/{endpoint_id}/deliveries",
    response_model=WebhookDeliveryPage,
    tags=["webhooks"],
    summary="The endpoint's deliveries, newest first, with their attempts",
    responses=problem_responses(401, 404, 422, 429),
)
async def list_webhook_deliveries(
    request: Request,
    endpoint_id: str,
    me: CurrentMerchant,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the last page")] = None,
) -> Response:
    try:
        return json_response(
            await deps.webhooks(request).deliveries(
                me.id, parse_id(endpoint_id), limit=limit, before=int(cursor) if cursor else None
            )
        )
    except EndpointNotFound:
        raise endpoint_not_found() from None


@router.post(
    "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    tags=["webhooks"],
    summary="Send a delivery again",
    responses=problem_responses(401, 404, 429),
)
async def redeliver_webhook(request: Request, endpoint_id: str, delivery_id: str, me: CurrentMerchant) -> Response:
    try:
        await deps.webhooks(request).redeliver(me.id, parse_id(endpoint_id), parse_id(delivery_id))
    except EndpointNotFound:
        raise endpoint_not_found() from None
    return Response(status_code=202)


@router.post(
    "/v1/webhook-endpoints/{endpoint_id}/test",
    status_code=202,
    response_model=PingOut,
    tags=["webhooks"],
    summary="Send a signed `ping` to the endpoint",
    responses=problem_responses(401, 404, 429),
)
async def ping_webhook_endpoint(request: Request, endpoint_id: str, me: CurrentMerchant) -> Response:
    try:
        return json_response(await deps.webhooks(request).ping(me.id, parse_id(endpoint_id)), 202)
    except EndpointNotFound:
        raise endpoint_not_found() from None


# --- API keys and the audit log -------------------------------------------------------
