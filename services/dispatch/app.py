"""Dispatch's composition root: settings, the runtime (pool, migrations, broker, outbox
relay), the orders consumer, the matcher's loops, the couriers' streams of offers (live.py), and
the HTTP app of the courier's routes (api.py), the admin's routes and the console's views
(admin_api.py, admin_guards_api.py, admin_cash_api.py), the courier app's and the ops console's pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from prometheus_client import Gauge

from shared import maps
from shared.app import service_app
from shared.audit import audit_router
from shared.events import ORDERS_TOPIC
from shared.http import Metrics
from shared.pages import ShellWorker, pages_router
from shared.ratelimit import BearerLimits, RateLimiter, failed_auth_limits
from shared.service import Runtime

from . import admin_api, admin_cash_api, admin_guards_api, api, deps
from .deps import known_couriers
from .handlers import CONSUMER, OrderEvents
from .live import CourierStreams, change_feed
from .matcher import Matcher, NoMatcherHere, WorkHints
from .service.common import GuardCounters
from .service.delivery import KnownTerms
from .settings import DispatchSettings

__all__ = ["DispatchSettings", "create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"
WEB = Path(__file__).parent / "web"
OPS_CONSOLE = "/ops"  # the operations console (admin token), web/ops/


def courier_app_pages(app_files: Path = WEB / "app", shared_files: Path = maps.WEB) -> APIRouter:
    """The courier app's pages, with the service worker that keeps them and the shared files
    they load on the phone (its version: a digest of both directories)."""
    worker = ShellWorker(app_files / "sw.js", [app_files, shared_files])
    return pages_router(api.COURIER_APP, app_files, worker=worker)


def create_app(settings: DispatchSettings | None = None) -> FastAPI:
    settings = settings or DispatchSettings()
    runtime = Runtime(
        settings,
        name="dispatch",
        database_url=settings.database_url,
        migration_database_url=settings.migration_database_url,
        migrations=MIGRATIONS,
        pool_size=settings.pool_size,
    )
    metrics = Metrics("dispatch")
    hints: WorkHints
    if settings.background:
        matcher = hints = Matcher(settings)
        metrics.registry.register(matcher.counts())
        runtime.consume(
            name=CONSUMER,
            topics=[ORDERS_TOPIC],
            handler=OrderEvents(settings, lambda: runtime.pool, matcher),
            concurrency=settings.orders_consumer_concurrency,
        )
        runtime.loop("dispatch-matching", lambda: matcher.run_matching(runtime.pool))
        runtime.loop("dispatch-expiry", lambda: matcher.run_expiry(runtime.pool))
    else:  # HTTP only: a background process elsewhere consumes, matches and expires
        hints = NoMatcherHere()

    feed = change_feed(settings.database_url, lambda: runtime.pool)
    runtime.loop("dispatch-listen", feed.listen)
    runtime.loop("dispatch-stream", feed.deliver)
    streams = CourierStreams(
        feed,
        lambda: runtime.pool,
        max_per_client=settings.streams_per_courier,
        max_open=settings.streams_max,
        max_stream_s=settings.stream_max_s,
        gauge=Gauge("dispatch_courier_streams", "Couriers' open streams of offers", registry=metrics.registry),
    )

    refused = metrics.counter("dispatch_rate_limited_total", "Requests refused with 429, by limit", ("limit",))
    couriers = BearerLimits(
        known_couriers(lambda: runtime.pool, ttl_s=settings.token_cache_s),
        caller_of=lambda courier: courier.id,
        callers=RateLimiter(settings.courier_rate_per_s, settings.courier_rate_burst, instances=settings.instances),
        addresses=failed_auth_limits(settings, refused.labels("address")),
        refused=refused.labels("courier"),
    )
    app = service_app(
        title="Giao dispatch",
        summary="Couriers go online, receive offers and report each step of a delivery.",
        description="Dispatch owns a delivery from `placed` to a final status: it offers each order "
        "to the nearest free courier, takes their answers and steps, and tells the other "
        "services through events on `giao.dispatch.v1`.",
        runtime=runtime,
        metrics=metrics,
        # the courier's routes first, then the admin's and the console's; the pages last
        routers=[
            api.router,
            admin_api.router,
            admin_guards_api.router,
            admin_cash_api.router,
            audit_router(deps.admin, deps.pool),
            maps.router,
            courier_app_pages(),
            pages_router(OPS_CONSOLE, WEB / "ops", img_origin=maps.tile_origin(settings.map_tile_url)),
            pages_router(maps.WEB_PATH, maps.WEB),
        ],
        hints=hints,
        couriers=couriers,
        feed=feed,
        streams=streams,
    )
    app.state.guard_counters = GuardCounters(metrics)
    app.state.known_terms = KnownTerms()
    api.install_error_handlers(app)
    return app
