"""The HTTP behaviour every service shares (shared/http.py), on a small app of its own."""

from __future__ import annotations

import importlib
import inspect
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict

from shared.app import service_app
from shared.http import MAX_BODY_BYTES, Metrics, api_router, json_body, read_body


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    weight_grams: int


class Gadget(Thing):
    """A Thing read with shared.http.read_body rather than as a body parameter."""


class NoRuntime:
    """What service_app asks of a runtime, for an app with neither database nor broker."""

    settings = None

    def lifespan(self) -> None:
        return None

    def ready_checks(self) -> dict:
        return {}

    def register_metrics(self, metrics: Metrics) -> None:
        pass


OPS_PORT = 9100


class RuntimeWithPostgresDown(NoRuntime):
    """PostgreSQL fails its check with what asyncpg's errors carry: hosts, users, DSNs."""

    settings: Any = SimpleNamespace(ops_port=OPS_PORT)

    def ready_checks(self) -> dict:
        async def postgres() -> None:
            raise OSError("cannot reach postgresql://giao_orders:s3cret@db.internal:5432/giao_orders")

        async def kafka() -> None:
            return None

        return {"postgres": postgres, "kafka": kafka}


def probe_app(runtime: NoRuntime) -> Any:
    router = api_router()

    @router.get("/v1/things")
    async def things() -> dict:
        return {}

    return service_app(
        title="probe", summary="", description="", runtime=runtime, metrics=Metrics("probe"), routers=[router]
    )


async def test_readiness_says_what_is_down_never_why(caplog):
    transport = httpx.ASGITransport(app=probe_app(RuntimeWithPostgresDown()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"] == {"postgres": "down"} and r.json()["detail"] == "Not ready: postgres is down"
    for leak in ("s3cret", "db.internal", "giao_orders", "OSError"):
        assert leak not in r.text
    # The log names the error's type and where it was raised, and no more of its text.
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("readiness: postgres is down")]
    assert logged and logged[0].startswith("readiness: postgres is down: OSError at "), logged
    assert "s3cret" not in logged[0] and "db.internal" not in logged[0]


async def test_metrics_answer_on_the_ops_port_only_and_it_serves_nothing_else():
    transport = httpx.ASGITransport(app=probe_app(RuntimeWithPostgresDown()))
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://t:8001") as public,
        httpx.AsyncClient(transport=transport, base_url=f"http://t:{OPS_PORT}") as ops,
    ):
        assert (await public.get("/v1/things")).status_code == 200
        assert (await public.get("/healthz")).status_code == 200
        assert (await public.get("/metrics")).status_code == 404
        assert "/metrics" not in (await public.get("/openapi.json")).json()["paths"]
        metrics = await ops.get("/metrics")
        assert metrics.status_code == 200 and "http_requests_total" in metrics.text
        assert (await ops.get("/healthz")).status_code == 200
        assert (await ops.get("/readyz")).status_code == 503
        for path in ("/v1/things", "/openapi.json", "/docs"):
            assert (await ops.get(path)).status_code == 404, path


async def test_errors_are_logged_by_route_never_by_path(caplog):
    """A path may carry a tracking code: an outage or a crash logs the route's template."""
    router = api_router()

    @router.get("/v1/parcels/{code}")
    async def parcel(code: str) -> dict:
        if code.startswith("BAD"):  # a value PostgreSQL refuses, its text holding the value
            raise asyncpg.CharacterNotInRepertoireError(f"invalid byte sequence in {code}")
        raise (OSError("the database went away") if code.startswith("OUT") else RuntimeError("a bug"))

    app = service_app(
        title="probe", summary="", description="", runtime=NoRuntime(), metrics=Metrics("probe"), routers=[router]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as c:
        assert (await c.get("/v1/parcels/OUTK7Q2M9X4")).status_code == 503
        assert (await c.get("/v1/parcels/BUGK7Q2M9X4")).status_code == 500
        assert (await c.get("/v1/parcels/BADK7Q2M9X4")).status_code == 422
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "outage on GET /v1/parcels/{code}" in logged and "unhandled error on GET /v1/parcels/{code}" in logged
    assert "unstorable value on GET /v1/parcels/{code}: CharacterNotInRepertoireError" in logged
    assert "K7Q2M9X4" not in logged


class EncodingError(asyncpg.InterfaceError, ValueError):
    """Like asyncpg's own DataError: an argument it cannot encode (say a datetime that overflows)."""


FAILURES = {
    "encoding": EncodingError("invalid input for query argument $1 (date value out of range)"),
    "nul": asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
    "outage": asyncpg.CannotConnectNowError("the database system is starting up"),
    # What a restart of PostgreSQL raises on connections it closed (shared.errors.OUTAGES).
    "outage-shutdown": asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    "outage-driver": asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
}


@pytest.fixture
async def client():
    router = api_router()

    @router.get("/v1/things")
    async def things(status: str | None = None, limit: int = Query(20, ge=1, le=100)) -> dict:
        return {"status": status, "limit": limit}

    @router.post("/v1/things", status_code=201)
    async def create(thing: Thing) -> Thing:
        return thing

    @router.get("/v1/fail/{kind}")
    async def fail(kind: str) -> dict:
        raise FAILURES[kind]

    @router.post("/v1/gadgets", status_code=201, openapi_extra=json_body(Gadget))
    async def create_gadget(request: Request) -> Gadget:
        return await read_body(request, Gadget)

    app = service_app(
        title="probe", summary="", description="", runtime=NoRuntime(), metrics=Metrics("probe"), routers=[router]
    )

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_unknown_query_parameters_are_named_in_a_422(client):
    assert (await client.get("/v1/things?status=placed&limit=5")).json() == {"status": "placed", "limit": 5}
    r = await client.get("/v1/things?stauts=placed&x=1")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert [e["loc"] for e in r.json()["errors"]] == [["query", "stauts"], ["query", "x"]]
    assert (await client.get("/healthz?cachebust=1")).status_code == 200, "probes may add parameters"


BODY_ROUTES = pytest.mark.parametrize("path", ["/v1/things", "/v1/gadgets"])


@BODY_ROUTES
async def test_validation_names_every_bad_field(client, path):
    r = await client.post(path, json={"weight_grams": "heavy", "colour": "red"})
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["errors"]}
    assert {("body", "name"), ("body", "weight_grams"), ("body", "colour")} <= locs
    assert {"type", "title", "status", "detail"} <= set(r.json())


@BODY_ROUTES
async def test_bodies_too_large_not_json_or_malformed(client, path):
    big = await client.post(
        path, content=b"{" + b" " * MAX_BODY_BYTES + b"}", headers={"content-type": "application/json"}
    )
    assert big.status_code == 413
    text = await client.post(path, content=b"name=x", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    broken = await client.post(path, content=b'{"name": ', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["title"] == "Malformed JSON"

    async def chunked():
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    streamed = await client.post(path, content=chunked(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413, "a body without Content-Length is counted as it arrives"


async def test_read_body_answers_and_documents_as_a_body_parameter(client):
    # shared.http.read_body (one pydantic-core pass) in place of FastAPI's body parameter:
    # the same answers to every kind of body, the same OpenAPI document.
    bodies = [b"", b"[]", b"5", b"null", b'{"name": "x"}', b'{"name": 1, "weight_grams": 1.5}', b'{"name": ']
    bodies += [b'{"name": "x", "weight_grams": 3, "extra": true}', b'{"name": "x", "weight_grams": 3}']
    bodies += ['{"name": "x", "weight_grams": 3}'.encode("utf-16"), b"\xff"]  # the json module's way
    for body in bodies:
        answers = [
            await client.post(path, content=body, headers={"content-type": "application/json"})
            for path in ("/v1/things", "/v1/gadgets")
        ]
        assert answers[0].status_code == answers[1].status_code, body
        assert answers[0].json() == answers[1].json(), body
    doc = (await client.get("/openapi.json")).json()
    thing, gadget = (doc["paths"][p]["post"] for p in ("/v1/things", "/v1/gadgets"))
    assert gadget["requestBody"] == {
        **thing["requestBody"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Gadget"}}},
    }
    schemas = doc["components"]["schemas"]
    assert {**schemas["Gadget"], "title": "Thing"} == {
        **schemas["Thing"],
        "description": schemas["Gadget"]["description"],
    }


def _sync_calls(dependant) -> list[str]:
    """The endpoint and dependencies under `dependant` that are plain functions."""
    found = []
    call = dependant.call
    if call is not None and not (inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(call.__call__)):
        found.append(getattr(call, "__qualname__", repr(call)))
    for sub in dependant.dependencies:
        found += _sync_calls(sub)
    return found


@pytest.mark.parametrize("service", ["orders", "dispatch", "tracking"])
def test_no_route_hops_to_a_worker_thread(service):
    # FastAPI runs a plain-function endpoint or dependency in anyio's thread pool: a hop to a
    # worker thread and back, waiting for the GIL under load, on every request that uses it.
    app = importlib.import_module(f"services.{service}.app").create_app()
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert routes
    assert [f"{r.path}: {name}" for r in routes for name in _sync_calls(r.dependant)] == []


async def test_a_value_the_database_cannot_take_is_422_and_an_outage_503(client):
    # Retrying cannot help a value PostgreSQL refuses: not a 503 "retry shortly", nor a 500.
    for kind in ("encoding", "nul"):
        r = await client.get(f"/v1/fail/{kind}")
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), kind
        assert "Retry-After" not in r.headers
    for kind in ("outage", "outage-shutdown", "outage-driver"):
        r = await client.get(f"/v1/fail/{kind}")
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", kind
