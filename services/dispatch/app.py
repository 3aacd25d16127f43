"""Wires dispatch together: settings, the runtime (pool, migrations, broker, outbox relay),
the orders consumer, the matcher's loops and the HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.events import ORDERS_TOPIC
from shared.http import FASTAPI_TELEMETRY_OFF, Metrics, install_common_routes, install_problem_handlers
from shared.pages import pages_router
from shared.service import Runtime

from .api import COURIER_APP, add_routes, install_error_handlers
from .handlers import CONSUMER, OrderEvents
from .matcher import Matcher, NoMatcherHere, WorkHints
from .settings import DispatchSettings

__all__ = ["DispatchSettings", "create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"
WEB = Path(__file__).parent / "web"


def create_app(settings: DispatchSettings | None = None) -> FastAPI:
    settings = settings or DispatchSettings()
    runtime = Runtime(settings, name="dispatch", database_url=settings.database_url, migrations=MIGRATIONS,
                      pool_size=settings.pool_size)
    hints: WorkHints
    if settings.background:
        matcher = hints = Matcher(settings)
        runtime.consume(name=CONSUMER, topics=[ORDERS_TOPIC],
                        handler=OrderEvents(settings, lambda: runtime.pool, matcher.poke),
                        concurrency=settings.orders_consumer_concurrency)
        runtime.loop("dispatch-matching", lambda: matcher.run_matching(runtime.pool))
        runtime.loop("dispatch-expiry", lambda: matcher.run_expiry(runtime.pool))
    else:  # HTTP only: a background process elsewhere consumes, matches and expires
        hints = NoMatcherHere()

    app = FastAPI(
        telemetry=FASTAPI_TELEMETRY_OFF,
        title="Giao dispatch",
        version="1.0.0",
        summary="Couriers go online, receive offers and report each step of a delivery.",
        description="Dispatch owns a delivery from `placed` to a final status: it offers each order "
                    "to the nearest free courier, takes their answers and steps, and tells the other "
                    "services through events on `giao.dispatch.v1`.",
        lifespan=runtime.lifespan(),
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.hints = hints
    install_problem_handlers(app)
    install_error_handlers(app)
    install_common_routes(app, Metrics("dispatch"), runtime.ready_checks())
    add_routes(app.router, settings, runtime, hints)  # on the app itself: FastAPI matches an included router twice
    app.router.routes.extend(pages_router(COURIER_APP, WEB / "app").routes)  # last: tried after the API
    return app
