"""Wiring of the tracking service: settings, runtime (pool, consumers, change feed), FastAPI app.

Settings (environment variables) are listed in services/tracking/settings.py.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.tracking.api import add_routes
from services.tracking import domain
from services.tracking.handlers import Projection
from services.tracking.live import ChangeFeed
from services.tracking.settings import TrackingSettings
from shared.events import COURIER_LOCATIONS_TOPIC, DISPATCH_TOPIC, ORDERS_TOPIC
from shared.http import FASTAPI_TELEMETRY_OFF, Metrics, install_common_routes, install_problem_handlers
from shared.service import Runtime

# Consumer names; the runtime prefixes them with the topic prefix to make the group ids.
STATUS_CONSUMER = "tracking-status"
LOCATION_CONSUMER = "tracking-locations"


def create_app(settings: TrackingSettings | None = None) -> FastAPI:
    settings = settings or TrackingSettings()
    # Tracking publishes nothing: no outbox relay.
    runtime = Runtime(settings, name="tracking", database_url=settings.database_url,
                      migrations=Path(__file__).parent / "migrations", pool_size=settings.pool_size,
                      relay=False)
    metrics = Metrics("tracking")
    applied = metrics.counter("tracking_applied_total",
                              "Events applied to the read model (status) and parcels moved (location)",
                              ("kind",))
    projection = Projection(lambda: runtime.pool, on_applied=lambda kind, n: applied.labels(kind).inc(n))
    runtime.consume(name=STATUS_CONSUMER, topics=[ORDERS_TOPIC, DISPATCH_TOPIC],
                    handler=projection.on_status_events, max_records=settings.status_batch,
                    ignore=domain.IRRELEVANT_TYPES)
    runtime.consume(name=LOCATION_CONSUMER, topics=[COURIER_LOCATIONS_TOPIC],
                    handler=projection.on_locations, max_records=settings.location_batch)

    feed = ChangeFeed(settings.database_url, lambda: runtime.pool)
    runtime.loop("tracking-listen", feed.listen)
    runtime.loop("tracking-deliver", feed.deliver)

    app = FastAPI(
        telemetry=FASTAPI_TELEMETRY_OFF,
        title="Giao tracking",
        version="1.0.0",
        summary="Customers follow their parcel with its tracking code",
        description=(
            "Theo dõi đơn hàng: no login, the tracking code is the key. Answers never hold a phone "
            "number, a full name, an address or the delivery code. Errors are RFC 9457 problem "
            "details; clients that send too many requests get 429 with `Retry-After`."),
        lifespan=runtime.lifespan(),
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.feed = feed
    install_problem_handlers(app)
    install_common_routes(app, metrics, runtime.ready_checks())
    add_routes(app.router, settings, runtime, feed, metrics)  # on the app itself: FastAPI matches an included router twice
    return app
