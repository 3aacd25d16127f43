"""Wiring of the orders service: settings, runtime (pool, outbox relay, consumer), FastAPI app.

Environment variables (besides the common GIAO_* ones of shared.settings):

| variable | default | what |
| --- | --- | --- |
| GIAO_ORDERS_PORT | 8001 | HTTP port |
| GIAO_ORDERS_DATABASE_URL | postgresql://giao:giao@127.0.0.1:5432/giao_orders | its PostgreSQL database |
| GIAO_ORDERS_DB_POOL_SIZE | 20 | connections in the pool |
| GIAO_ORDERS_BASE_FARE_VND | 15000 | every delivery's fixed part |
| GIAO_ORDERS_PER_KM_VND | 5000 | per kilometre of estimated road distance |
| GIAO_ORDERS_FREE_WEIGHT_GRAMS | 3000 | parcels up to this weight pay no surcharge |
| GIAO_ORDERS_PER_EXTRA_KG_VND | 2500 | per started kilogram above that |
| GIAO_ORDERS_FEE_ROUNDING_VND | 1000 | fees are rounded up to a multiple of this |
| GIAO_ORDERS_IDEMPOTENCY_TTL_HOURS | 24 | how long an Idempotency-Key is remembered |
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.orders import store
from services.orders.api import add_routes
from services.orders.domain import IGNORED_EVENTS, Tariff
from services.orders.handlers import CONSUMER, dispatch_events_handler
from shared.events import DISPATCH_TOPIC
from shared.http import FASTAPI_TELEMETRY_OFF, Metrics, install_common_routes, install_problem_handlers
from shared.service import Runtime
from shared.settings import CommonSettings


class OrdersSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GIAO_ORDERS_", extra="ignore", populate_by_name=True)

    port: int = 8001
    database_url: str = "postgresql://giao:giao@127.0.0.1:5432/giao_orders"
    db_pool_size: int = Field(20, ge=2)
    base_fare_vnd: int = Field(15_000, ge=0)
    per_km_vnd: int = Field(5_000, ge=0)
    free_weight_grams: int = Field(3_000, ge=0)
    per_extra_kg_vnd: int = Field(2_500, ge=0)
    fee_rounding_vnd: int = Field(1_000, ge=1)
    idempotency_ttl_hours: float = Field(24, gt=0)

    def tariff(self) -> Tariff:
        return Tariff(base_fare_vnd=self.base_fare_vnd, per_km_vnd=self.per_km_vnd,
                      free_weight_grams=self.free_weight_grams, per_extra_kg_vnd=self.per_extra_kg_vnd,
                      rounding_vnd=self.fee_rounding_vnd)


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    runtime = Runtime(settings, name="orders", database_url=settings.database_url,
                      migrations=Path(__file__).parent / "migrations", pool_size=settings.db_pool_size)
    metrics = Metrics("orders")
    runtime.consume(name=CONSUMER, topics=[DISPATCH_TOPIC], handler=dispatch_events_handler(runtime, metrics),
                    ignore=IGNORED_EVENTS)

    async def prune_idempotency_keys() -> None:
        while True:
            cutoff = datetime.now(timezone.utc) - timedelta(hours=settings.idempotency_ttl_hours)
            await store.prune_idempotency_keys(runtime.pool, cutoff)
            await asyncio.sleep(3600)

    runtime.loop("prune-idempotency-keys", prune_idempotency_keys)

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
    add_routes(app.router, settings, runtime, metrics, settings.tariff())  # on the app itself: FastAPI matches an included router twice
    return app

