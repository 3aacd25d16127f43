"""The orders service put together: settings, runtime (pool, outbox relay, the consumer of
dispatch's events, the idempotency-key pruning loop, the admission backlog loop, the webhook
delivery worker), the use cases and the HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.orders import deps, webhook_api
from services.orders.admission import AdmissionControl
from services.orders.api import CONSOLE_PATH, router
from services.orders.domain import IGNORED_EVENTS
from services.orders.handlers import CONSUMER, dispatch_events_handler
from services.orders.service_layer import OrdersService
from services.orders.settings import OrdersSettings
from services.orders.webhook_service import WebhookService
from shared import maps
from shared.app import service_app
from shared.audit import audit_router
from shared.events import DISPATCH_TOPIC
from shared.http import Metrics
from shared.pages import pages_router
from shared.ratelimit import BearerLimits, RateLimiter, failed_auth_limits
from shared.service import Runtime

WEB = Path(__file__).parent / "web"  # the merchant console


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    runtime = Runtime(
        settings,
        name="orders",
        database_url=settings.database_url,
        migration_database_url=settings.migration_database_url,
        migrations=Path(__file__).parent / "migrations",
        pool_size=settings.db_pool_size,
    )
    metrics = Metrics("orders")
    runtime.consume(
        name=CONSUMER, topics=[DISPATCH_TOPIC], handler=dispatch_events_handler(runtime, metrics), ignore=IGNORED_EVENTS
    )
    orders = OrdersService(runtime, settings, metrics)
    runtime.loop("prune-idempotency-keys", orders.prune_idempotency_keys)
    admission = AdmissionControl(runtime, settings, metrics)
    runtime.loop("admission-backlog", admission.watch)
    webhooks = WebhookService(runtime, settings, metrics)
    runtime.loop("deliver-webhooks", webhooks.deliver_forever)
    runtime.loop("prune-webhook-deliveries", webhooks.prune_delivery_log)
    refused = metrics.counter("orders_rate_limited_total", "Requests refused with 429, by limit", ("limit",))
    merchant_keys = BearerLimits(
        orders.known_keys,
        caller_of=lambda merchant: merchant.id,  # all of a merchant's keys share its limit
        callers=RateLimiter(settings.api_key_rate_per_s, settings.api_key_rate_burst, instances=settings.instances),
        addresses=failed_auth_limits(settings, refused.labels("address")),
        refused=refused.labels("api_key"),
        unknown_detail="Unknown API key",
    )
    return service_app(
        title="Giao orders",
        summary="Local merchants place and follow their deliveries",
        description="Giao giao hàng nội thành: the merchant API. Authenticate with `Authorization: Bearer <api_key>`; "
        "errors are RFC 9457 problem details.",
        runtime=runtime,
        metrics=metrics,
        # the pages last: the API's routes are tried first
        routers=[
            router,
            webhook_api.router,
            audit_router(deps.admin, lambda request: deps.orders(request).runtime.pool),
            maps.router,
            pages_router(CONSOLE_PATH, WEB),
            pages_router(maps.WEB_PATH, maps.WEB),
        ],
        orders=orders,
        admission=admission,
        webhooks=webhooks,
        merchant_keys=merchant_keys,
    )
