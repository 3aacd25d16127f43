"""What every Giao HTTP service does the same way.

- Errors are RFC 9457 problem details; validation errors name every bad field.
- Bodies over 64 KiB are 413, non-JSON bodies 415, malformed JSON 400: never a 500 (RequestEdge).
- /healthz, /readyz (PostgreSQL and Kafka), /metrics (Prometheus text).
- Bearer-token helpers for the admin token (constant-time comparison).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import OUTAGES, is_outage

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
PROBLEM = "application/problem+json"
# FastAPI's built-in OpenTelemetry hooks, off: nothing here exports traces (our metrics are
# RequestEdge), and off they spare every request a look at the global OTel providers.
FASTAPI_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


PROBLEM_TYPES = "https://giao.vn/problems/"


class Problem(Exception):
    """Raise to answer with a problem document: Problem(404, "Order not found").

    Its `type` is PROBLEM_TYPES + the status, or + `kind` for a refusal that a client must tell
    from others of the same status (docs/contract.md lists them)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        kind: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = headers
        self.kind = kind
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    kind: str | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"{PROBLEM_TYPES}{kind or status}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class ModelResponse(Response):
    """A pydantic model as the JSON body, serialized once by pydantic-core.

    Routes still declare `response_model` (the OpenAPI document shows it), but returning a
    Response skips FastAPI's own pass, which validates the model again, dumps it to Python
    objects and encodes those with the standard json module: under load that was a large
    share of a courier call's CPU."""

    media_type = "application/json"

    def render(self, content: BaseModel) -> bytes:
        return content.model_dump_json().encode()


def invalid_query(param: str, message: str) -> Problem:
    """The 422 of a query parameter a route parses itself (a cursor, an area), shaped like a
    validation error's."""
    return Problem(
        422, f"Invalid fields: {param}", title="Invalid input", errors=[{"loc": ["query", param], "msg": message}]
    )


def unauthorized(detail: str = "Missing or invalid bearer credentials") -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": "Bearer"})


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_admin(admin_token: str) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that lets through only the admin bearer token.

    Async although it awaits nothing, like every dependency here: FastAPI runs a plain
    function in anyio's thread pool, a hop to a worker thread and back on every request."""

    async def check(request: Request) -> None:
        token = bearer(request)
        if token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
            raise unauthorized()

    return check


# Documented on every route that takes a body or credentials, so clients (and the fuzzer)
# know the shape of an error.
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"loc": {"type": "array", "items": {}}, "msg": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {"description": HTTPStatus(s).phrase, "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}} for s in statuses
    }


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, title=exc.title, headers=exc.headers, kind=exc.kind, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(400, "The body is not valid JSON", title="Malformed JSON")
        named = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid")} for e in errors]
        fields = ", ".join(".".join(str(p) for p in e["loc"][1:] or e["loc"]) for e in named)
        return problem_response(422, f"Invalid fields: {fields}", title="Invalid input", errors=named)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def _outage(request: Request, exc: Exception) -> JSONResponse:
        if not is_outage(exc):  # an InterfaceError that is a ValueError: an argument asyncpg cannot encode
            return await _unstorable(request, exc)
        # The database (or broker) is briefly unreachable, say during a restart: not the
        # client's fault, and worth retrying in a moment.
        log.warning("outage on %s %s: %r", request.method, _route_of(request), exc)
        return problem_response(503, "Temporarily unavailable; retry shortly", headers={"Retry-After": "1"})

    for outage in OUTAGES:  # what the consumers wait out too (shared.errors)
        app.add_exception_handler(outage, _outage)

    @app.exception_handler(asyncpg.DataError)
    async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
        # A value the schemas let through but PostgreSQL (or asyncpg's encoding for it) refuses:
        # the request's fault, and retrying cannot help. shared.inputs' types are meant to stop
        # such values first, so this is logged (the class only: the value may be personal data).
        log.warning("unstorable value on %s %s: %s", request.method, _route_of(request), type(exc).__name__)
        return problem_response(422, "A value cannot be stored (out of range or not valid text)", title="Invalid input")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, _route_of(request))
        return problem_response(500, "Internal error; it has been logged")


def _route_of(request: Request) -> str:
    """The route's template (/v1/tracking/{tracking_code}), never the path itself: a path may
    carry a tracking code, and logs hold no codes or credentials."""
    return str(getattr(request.scope.get("route"), "path", "an unmatched path"))


# A route's JSON body model, by name, for the routes that read their body with read_body
# (json_body puts it here; service_app adds their schemas to the OpenAPI document).
BODY_MODELS: dict[str, type[BaseModel]] = {}
BodyModel = TypeVar("BodyModel", bound=BaseModel)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The `openapi_extra` of a route that reads its body with `read_body(request, model)`:
    the body documented exactly as FastAPI documents a `body: model` parameter."""
    BODY_MODELS[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"content": {"application/json": {"schema": ref}}, "required": True}}


async def read_body(request: Request, model: type[BodyModel]) -> BodyModel:
    """The JSON body as `model`, parsed and validated in one pass by pydantic-core.

    For the hot routes, instead of a `body: model` parameter: FastAPI decodes the body with
    the json module, parses the Content-Type with the email package, then validates the
    Python objects field by field, a large share of a small request's CPU. The answers to bad
    bodies are the same: no body is a missing `body` (422), malformed JSON a 400, invalid
    fields a 422 naming each (loc starts with "body"). RequestEdge has already refused
    bodies that are not JSON or too large."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    if not request.headers.get("content-type", "").lstrip().lower().startswith("application/"):
        return _validated(model, raw)  # like FastAPI: a text/...+json body is not read as JSON
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if not any(e["type"] == "json_invalid" for e in exc.errors()):
            raise RequestValidationError([_body_error(e) for e in exc.errors()]) from None
    # pydantic-core's parser refuses what the json module FastAPI reads bodies with takes (a
    # lone surrogate escape, UTF-16): on this path only, decide as FastAPI does.
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise StarletteHTTPException(400, "There was an error parsing the body") from None
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}
        raise RequestValidationError([error]) from None
    return _validated(model, data)


def _validated(model: type[BodyModel], data: Any) -> BodyModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([_body_error(e) for e in exc.errors()]) from None


def _body_error(error: Any) -> dict[str, Any]:
    """A pydantic error as FastAPI reports it for a body parameter (its wording for a body
    that is not an object: a pass in JSON mode words it otherwise)."""
    named = {**error, "loc": ("body", *error["loc"])}
    if error["type"] == "model_type" and not error["loc"]:
        named["msg"] = "Input should be a valid dictionary or object to extract fields from"
    return named


class StrictQueryRoute(APIRoute):
    """A route that answers 422 naming every query parameter it does not declare.

    FastAPI ignores unknown query parameters, so a client's typo (`?stauts=placed`) would
    quietly return something else than asked for. Found by the fuzz tests.

    A route class rather than a dependency: FastAPI solves a dependency on every request
    (a tenth of a small request's CPU), while this looks at the query string only when
    there is one, against names collected once when the route is built.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        declared = frozenset(_query_names(self.dependant))

        async def strict_query(request: Request) -> Response:
            if request.scope["query_string"]:
                unknown = sorted(set(request.query_params.keys()) - declared)
                if unknown:
                    raise Problem(
                        422,
                        "Unknown query parameters: " + ", ".join(unknown),
                        title="Invalid input",
                        errors=[{"loc": ["query", n], "msg": "Unknown query parameter"} for n in unknown],
                    )
            return await handler(request)

        return strict_query


def _query_names(dependant: Any) -> set[str]:
    """Query parameter names a route declares, its sub-dependencies and query models included."""
    names: set[str] = set()
    for field in dependant.query_params:
        model = field.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names |= {f.alias or n for n, f in model.model_fields.items()}
        else:
            names.add(field.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


class Metrics:
    """Per-app Prometheus registry (several apps can live in one test process)."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.service = service

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, list(labels), registry=self.registry)

    def render(self) -> Response:
        return PlainTextResponse(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestEdge:
    """ASGI middleware around every request: the body guard and the request metrics, in one.

    Body guard: 413 over the size limit, 415 when a body is not JSON, checked before any
    handler runs: from Content-Length, or for a body without one (chunked) from the bytes as
    they arrive, so an oversized body is never read whole. Its early answers are not counted
    in the metrics.

    Metrics: requests by method, route template and status, and their latency. The route is
    the one the router matched (it sets scope["route"]).

    One plain ASGI layer, not two (nor Starlette's BaseHTTPMiddleware, which runs every request
    through a task group and memory streams): each layer costs a coroutine and wrappers on
    every request. The headers are scanned once, without building a dict of them, and the
    receive channel is wrapped only for a body without a length (with one, the server reads
    no more than it says).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes
        # (method, route, status) -> (counter child, histogram child): labels() is not free
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500
        too_large = False
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length, ctype, chunked = None, b"", False
            for name, value in scope["headers"]:
                name = name.lower()
                if name == b"content-length":
                    length = value
                elif name == b"content-type":
                    ctype = value
                elif name == b"transfer-encoding":
                    chunked = True
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                return await self._too_large()(scope, receive, send)
            has_body = length not in (None, b"0") or chunked
            ctype = ctype.split(b";")[0].strip().lower()
            if has_body and ctype != b"application/json" and not ctype.endswith(b"+json"):
                return await problem_response(415, "Send the body as application/json")(scope, receive, send)
            if length is None:
                seen, sent_on = 0, receive

                async def limited_receive() -> Message:
                    nonlocal seen, too_large
                    message = await sent_on()
                    if message["type"] == "http.request":
                        seen += len(message.get("body", b""))
                        if seen > self.max_bytes:
                            # FastAPI turns any error raised while it reads a body into a 400, so
                            # cut the body short instead and answer 413 in place of what the app says.
                            too_large = True
                            return {"type": "http.request", "body": b"", "more_body": False}
                    return message

                receive = limited_receive

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._too_large()(scope, receive, send)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            key = (scope["method"], path, status)
            children = self._children.get(key)
            if children is None:
                children = (
                    self.metrics.requests.labels(key[0], path, str(status)),
                    self.metrics.latency.labels(key[0], path),
                )
                if len(self._children) < 10_000:
                    self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)

    def _too_large(self) -> Response:
        return problem_response(413, f"Bodies are limited to {self.max_bytes} bytes")


def api_router() -> APIRouter:
    """A module-level router for a service's API (`router = api_router()` in its api.py): its
    routes answer 422 to unknown query parameters (StrictQueryRoute)."""
    return APIRouter(route_class=StrictQueryRoute)
