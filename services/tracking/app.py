"""The composition root of tracking: settings, runtime (pool, consumers, change feed), app.

Settings (environment variables) are listed in services/tracking/settings.py.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import Gauge

from services.tracking import api, domain, page, page_api
from services.tracking.handlers import Projection
from services.tracking.live import Streams, change_feed
from services.tracking.settings import TrackingSettings
from shared import maps
from shared.app import service_app
from shared.events import COURIER_LOCATIONS_TOPIC, DISPATCH_TOPIC, ORDER_TRACKING_TOPIC
from shared.http import Metrics
from shared.pages import pages_router
from shared.ratelimit import AddressLimits
from shared.service import Runtime

# Consumer names; the runtime prefixes them with the topic prefix to make the group ids.
STATUS_CONSUMER = "tracking-status"
LOCATION_CONSUMER = "tracking-locations"


def create_app(settings: TrackingSettings | None = None) -> FastAPI:
    settings = settings or TrackingSettings()
    # Tracking publishes nothing: no outbox relay.
    runtime = Runtime(
        settings,
        name="tracking",
        database_url=settings.database_url,
        migration_database_url=settings.migration_database_url,
        migrations=Path(__file__).parent / "migrations",
        pool_size=settings.pool_size,
        relay=False,
    )
    metrics = Metrics("tracking")
    applied = metrics.counter(
        "tracking_applied_total", "Events applied to the read model (status) and parcels moved (location)", ("kind",)
    )
    projection = Projection(lambda: runtime.pool, on_applied=lambda kind, n: applied.labels(kind).inc(n))
    runtime.consume(
        name=STATUS_CONSUMER,
        topics=[ORDER_TRACKING_TOPIC, DISPATCH_TOPIC],  # never giao.orders.v1: it holds personal data
        handler=projection.on_status_events,
        max_records=settings.status_batch,
        ignore=domain.IRRELEVANT_TYPES,
    )
    runtime.consume(
        name=LOCATION_CONSUMER,
        topics=[COURIER_LOCATIONS_TOPIC],
        handler=projection.on_locations,
        max_records=settings.location_batch,
    )

    feed = change_feed(settings.database_url, lambda: runtime.pool)
    runtime.loop("tracking-listen", feed.listen)
    runtime.loop("tracking-deliver", feed.deliver)
    streams = Streams(
        feed,
        lambda: runtime.pool,
        max_per_client=settings.sse_max_streams_per_client,
        max_open=settings.sse_max_streams,
        max_stream_s=settings.sse_max_stream_s,
        gauge=Gauge("tracking_sse_streams", "Open Server-Sent Events streams", registry=metrics.registry),
    )
    client_limits = AddressLimits(
        settings.rate_limit_per_s,
        settings.rate_limit_burst,
        exempt=settings.exempt_networks(),
        refused=metrics.counter("tracking_rate_limited_total", "Requests refused with 429"),
        instances=settings.instances,
    )

    return service_app(
        title="Giao tracking",
        summary="Customers follow their parcel with its tracking code",
        description=(
            "Theo dõi đơn hàng: no login, the tracking code is the key. Answers never hold a phone "
            "number, a full name, an address or the delivery code. Errors are RFC 9457 problem "
            "details; clients that send too many requests get 429 with `Retry-After`."
        ),
        runtime=runtime,
        metrics=metrics,
        routers=[
            api.router,
            page_api.router,
            maps.router,
            pages_router(page.PAGE_PATH, page.WEB),
            pages_router(maps.WEB_PATH, maps.WEB),
        ],
        feed=feed,
        streams=streams,
        client_limits=client_limits,
    )
