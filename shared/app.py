"""The FastAPI app of a service, built the same way for all three (service_app), and the
operational routes every one of them has (ops_router: /healthz, /readyz, /metrics).

Each process also listens on an ops port of its own (settings.ops_port, shared/service.py's
serve): /metrics answers there only, and only the ops routes answer there (OpsPort)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import describe
from shared.http import (
    BODY_MODELS,
    FASTAPI_TELEMETRY_OFF,
    Metrics,
    RequestEdge,
    install_problem_handlers,
    problem_response,
    problem_responses,
)

log = logging.getLogger(__name__)

# /healthz, /readyz and /metrics of every service; they read the runtime and the metrics
# from the app's state (service_app puts them there). Plain routes: probes may add
# cache-busting query parameters.
ops_router = APIRouter(tags=["ops"])


@ops_router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@ops_router.get("/readyz", summary="PostgreSQL and Kafka are reachable", responses=problem_responses(503))
async def readyz(request: Request) -> Response:
    checks = request.app.state.runtime.ready_checks()
    failed = {}
    for name, check in checks.items():
        try:
            await check()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            # The answer says what is down, never why: an exception's text may name hosts, users
            # or a DSN. The why goes to the log, for the on-call engineer, as describe() keeps it
            # (a connection error's address, a stuck consumer's name and how long; no value).
            log.warning("readiness: %s is down: %s", name, describe(exc))
            failed[name] = "down"
    if failed:
        return problem_response(503, "Not ready: " + ", ".join(f"{n} is down" for n in failed), checks=failed)
    return JSONResponse({"status": "ready", "checks": {n: "ok" for n in checks}})


# Not in the OpenAPI document, which describes the public port: /metrics is on the ops port only.
@ops_router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse, include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return metrics.render()


OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class OpsPort:
    """ASGI middleware: a request that came in on the process's ops port reaches the ops routes
    only, and /metrics is not found on any other port (the public one, an instance's own): what
    the metrics tell (routes, volumes, errors) is for the operators' network, not the Internet.
    The port a request came in on is the ASGI scope's `server`."""

    def __init__(self, app: ASGIApp, ops_port: int | None) -> None:
        self.app = app
        self.ops_port = ops_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            on_ops_port = self.ops_port is not None and server is not None and server[1] == self.ops_port
            if scope["path"] not in OPS_PATHS if on_ops_port else scope["path"] == "/metrics":
                return await problem_response(404, "Not Found")(scope, receive, send)
        await self.app(scope, receive, send)


def service_app(
    *,
    title: str,
    summary: str,
    description: str,
    runtime: Any,
    metrics: Metrics,
    routers: Sequence[APIRouter],
    **state: Any,
) -> FastAPI:
    """The FastAPI app of a service, the same for all three: problem answers, the body guard,
    request metrics, the ops routes and the service's routers. `runtime`, `metrics`, the
    runtime's settings and every keyword of `state` land in `app.state`, where the routes'
    dependencies (each service's deps.py) find them."""
    app = FastAPI(
        telemetry=FASTAPI_TELEMETRY_OFF,
        title=title,
        version="1.0.0",
        summary=summary,
        description=description,
        lifespan=runtime.lifespan(),
    )
    app.state.runtime = runtime
    app.state.settings = runtime.settings
    app.state.metrics = metrics
    runtime.register_metrics(metrics)
    for name, value in state.items():
        setattr(app.state, name, value)
    install_problem_handlers(app)
    app.add_middleware(RequestEdge, metrics=metrics)
    app.add_middleware(OpsPort, ops_port=getattr(runtime.settings, "ops_port", None))
    for router in (ops_router, *routers):
        # The routes join the app's own router rather than being included: FastAPI 0.165 keeps
        # an included router as a wrapper and matches it twice per request (once to pick it,
        # once inside), about twice the Python calls of a small request.
        for route in router.routes:
            _add_route(app, route)
    _document_read_bodies(app)
    return app


def _document_read_bodies(app: FastAPI) -> None:
    """Put the schemas of the bodies routes read with shared.http.read_body (documented by
    json_body) in the app's OpenAPI components, where FastAPI puts a body parameter's: the
    document is the same as with `body: Model` parameters. Extending app.openapi is FastAPI's
    documented way to add to the document."""
    names = sorted(
        {
            name
            for route in app.routes
            if isinstance(route, APIRoute)
            and route.include_in_schema
            and (name := _body_model_name(route.openapi_extra))
        }
    )
    if not names:
        return
    generate = app.openapi
    schemas: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        document = generate()
        if not schemas:
            schemas.update(_component_schemas([BODY_MODELS[n] for n in names]))
        components = document.setdefault("components", {}).setdefault("schemas", {})
        document["components"]["schemas"] = {k: v for k, v in sorted({**schemas, **components}.items())}
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _body_model_name(openapi_extra: dict[str, Any] | None) -> str | None:
    """The name of the model json_body documented as the route's body, if it did."""
    try:
        ref = (openapi_extra or {})["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    except (KeyError, TypeError):
        return None
    name = str(ref).rsplit("/", 1)[-1]
    return name if name in BODY_MODELS else None


def _component_schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    """The component schemas FastAPI writes for these models as body parameters (made by
    FastAPI itself, for routes made only for this)."""
    routes = []
    for model in models:

        async def takes(body: Any) -> None: ...

        takes.__annotations__ = {"body": model, "return": None}
        routes.append(APIRoute(f"/{model.__name__}", takes, methods=["POST"]))
    schemas: dict[str, Any] = get_openapi(title="", version="", routes=routes).get("components", {}).get("schemas", {})
    return schemas


def _add_route(app: FastAPI, route: Any) -> None:
    """A module-level router's route, made again on the app's own router: a route looks up
    `dependency_overrides` on the app it was made for (a test's override of a service's auth
    dependency would miss a route made for no app), and one router serves every app built."""
    if not isinstance(route, APIRoute):
        app.router.routes.append(route)
        return
    app.router.add_api_route(
        route.path,
        route.endpoint,
        route_class_override=type(route),
        methods=route.methods,
        name=route.name,
        response_model=route.response_model,
        status_code=route.status_code,
        response_class=route.response_class,
        tags=route.tags,
        dependencies=route.dependencies,
        summary=route.summary,
        description=route.description,
        response_description=route.response_description,
        responses=route.responses,
        deprecated=route.deprecated,
        operation_id=route.operation_id,
        include_in_schema=route.include_in_schema,
        callbacks=route.callbacks,
        openapi_extra=route.openapi_extra,
        generate_unique_id_function=route.generate_unique_id_function,
        response_model_include=route.response_model_include,
        response_model_exclude=route.response_model_exclude,
        response_model_by_alias=route.response_model_by_alias,
        response_model_exclude_unset=route.response_model_exclude_unset,
        response_model_exclude_defaults=route.response_model_exclude_defaults,
        response_model_exclude_none=route.response_model_exclude_none,
        strict_content_type=route.strict_content_type,
        max_body_size=route.max_body_size,
    )
