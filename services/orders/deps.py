"""FastAPI dependencies of the orders API: who is calling (a merchant's API key, within its
rate limits: shared.ratelimit.BearerLimits; the admin token), and typed getters for what
app.py put in `app.state`.

The routes take the caller as their one dependency and read the rest through their `request`
with these getters: FastAPI solves every dependency on every request, a cost the hot routes
(placing and reading orders) do not pay twice. A test replaces the caller with
`app.dependency_overrides[deps.merchant] = ...`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from services.orders.admission import AdmissionControl
from services.orders.service_layer import OrdersService
from services.orders.settings import OrdersSettings
from services.orders.store import Merchant
from services.orders.webhook_service import WebhookService
from shared.http import require_admin
from shared.ratelimit import BearerLimits


def orders(request: Request) -> OrdersService:
    return request.app.state.orders


def admission(request: Request) -> AdmissionControl:
    return request.app.state.admission


def webhooks(request: Request) -> WebhookService:
    return request.app.state.webhooks


def settings(request: Request) -> OrdersSettings:
    return request.app.state.settings


def merchant_keys(request: Request) -> BearerLimits[Merchant]:
    return request.app.state.merchant_keys


class BearerScheme(SecurityBase):
    """A bearer-token check that OpenAPI documents as the security scheme `scheme_name`.

    One dependency that both reads the token and checks it (fastapi.security.HTTPBearer
    would be a second one, solved on every request, only to split the header)."""

    def __init__(self, *, scheme_name: str, description: str) -> None:
        self.model = HTTPBearerModel(description=description)
        self.scheme_name = scheme_name


class MerchantKey(BearerScheme):
    async def __call__(self, request: Request) -> Merchant:
        """The key's merchant; 401 for an unknown key, 429 past the merchant's or the address's limit."""
        return await merchant_keys(request).owner(request)


class AdminToken(BearerScheme):
    async def __call__(self, request: Request) -> None:
        # shared.http's constant-time check, made for the app's own token (a rare call).
        await require_admin(settings(request).admin_token)(request)


merchant = MerchantKey(scheme_name="merchant", description="A merchant's API key (from POST /v1/admin/merchants)")
admin = AdminToken(scheme_name="admin", description="The admin token (GIAO_ADMIN_TOKEN)")

# The calling merchant, as a route parameter: `me: CurrentMerchant`.
CurrentMerchant = Annotated[Merchant, Depends(merchant)]
