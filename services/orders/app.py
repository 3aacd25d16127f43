"""Wiring of the orders service: settings, runtime (pool, outbox relay, consumer), FastAPI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.orders.api import add_routes
from services.orders.domain import IGNORED_EVENTS
from services.orders.handlers import CONSUMER, dispatch_events_handler
from services.orders.service_layer import OrdersService
from services.orders.settings import OrdersSettings
from shared.events import DISPATCH_TOPIC
from shared.http import FASTAPI_TELEMETRY_OFF, Metrics, install_common_routes, install_problem_handlers
from shared.service import Runtime


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    runtime = Runtime(settings, name="orders", database_url=settings.database_url,
                      migrations=Path(__file__).parent / "migrations", pool_size=settings.db_pool_size)
    metrics = Metrics("orders")
    runtime.consume(name=CONSUMER, topics=[DISPATCH_TOPIC], handler=dispatch_events_handler(runtime, metrics),
                    ignore=IGNORED_EVENTS)
    service = OrdersService(runtime, settings, metrics)
    runtime.loop("prune-idempotency-keys", service.prune_idempotency_keys)

    app = FastAPI(
        telemetry=FASTAPI_TELEMETRY_OFF,
        title="Giao orders",
        version="1.0.0",
        summary="Local merchants place and follow their deliveries",
        description="Giao giao hàng nội thành: the merchant API. Authenticate with `Authorization: Bearer <api_key>`; "
                    "errors are RFC 9457 problem details.",
        lifespan=runtime.lifespan(),
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.metrics = metrics
    install_problem_handlers(app)
    install_common_routes(app, metrics, runtime.ready_checks())
    add_routes(app.router, settings, service)  # on the app itself: FastAPI matches an included router twice
    return app

