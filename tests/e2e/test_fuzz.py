"""Schemathesis against each service's own OpenAPI, authenticated, with a bounded number of
examples per operation, valid and invalid data alike: no 5xx for any input, and every answer
matches its schema. (Driven through hypothesis directly: schemathesis' pytest loader does not
work with pytest 9.)

Three parts:
- each operation alone (EXAMPLES positive and EXAMPLES negative cases per operation);
- stateful: schemathesis chains operations through the links it infers from the schema (POST
  /v1/orders -> GET/cancel /v1/orders/{order_id}, POST /v1/admin/couriers -> its token and
  jobs, webhook endpoints -> their deliveries, ...), SCENARIOS scenarios of up to STEPS calls.
  Tracking's API has no operation that makes what another reads (its parcels come from
  events), so it has no stateful part;
- a hand-made table (TEXT_VALUES, NUMBER_VALUES, TIME_VALUES, BIG) put in every field of every
  request body, and in the query and path values, of the three services: NUL, a lone
  surrogate, bidi and other control characters, a 1 MB string, extreme numbers and dates
  (388 requests). Never a 5xx; every 4xx a problem document; none of them accepted in a body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.e2e.system import System, start_system, stop_cleanly
from tests.infra import Infra

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = 12
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
SCENARIOS, STEPS = 8, 6
STATEFUL = settings(FUZZ, max_examples=SCENARIOS, stateful_step_count=STEPS)


@pytest.fixture(scope="module")
def system(infra: Infra) -> Iterator[System]:
    # One dispatch instance (the fuzz calls one), and webhook URLs on 127.0.0.1 allowed, so the
    # edge-case table can create an endpoint without DNS (port 9: nothing listens, nothing is sent).
    system = start_system(infra, dispatch_instances=1, extra_env={"GIAO_ORDERS_WEBHOOK_ALLOW_PRIVATE": "true"})
    yield system
    stop_cleanly(system)


@pytest.fixture(scope="module")
def credentials(system) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {system.admin_token}"}
    key = httpx.post(
        f"{system.procs['orders'][0].url}/v1/admin/merchants",
        headers=admin,
        json={"name": "Shop kiểm thử", "phone": "0912345678"},
    ).json()["api_key"]
    token = httpx.post(
        f"{system.procs['dispatch'][0].url}/v1/admin/couriers",
        headers=admin,
        json={"name": "Ngô Văn Thử", "phone": "0987654321", "vehicle": "motorbike"},
    ).json()["token"]
    return {"admin": system.admin_token, "merchant": key, "courier": token}


def _auth(path: str, credentials: dict[str, str] | None) -> dict[str, str]:
    if credentials is None:
        return {}
    who = "admin" if path.startswith("/v1/admin") else "courier" if path.startswith("/v1/courier") else "merchant"
    return {"Authorization": f"Bearer {credentials[who]}"}


def _check_operation(operation, mode: GenerationMode, base_url: str, headers: dict[str, str]) -> None:
    """One operation in one mode as a Hypothesis test of its own (built here, it binds this
    operation and its headers, not the caller's loop variables)."""

    @FUZZ
    @given(case=operation.as_strategy(mode))
    def check(case) -> None:
        # A JSON Schema cannot say which strings are valid phone numbers, or that lat
        # and lng come together: such schema-valid inputs rightly get 422, so the
        # "valid data is accepted" check does not apply. Every other check does.
        case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=[positive_data_acceptance])

    check()


def fuzz(base_url: str, credentials: dict[str, str] | None, skip: tuple[str, ...] = ()) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith(skip):
            continue
        operations += 1
        headers = _auth(operation.path, credentials)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _check_operation(operation, mode, base_url, headers)
            except Unsatisfiable:
                pass  # no invalid input exists for this operation (e.g. GET /healthz takes none)
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"[:3000])
    assert operations > 3
    assert not failures, "\n\n".join(failures)


def fuzz_stateful(base_url: str, credentials: dict[str, str]) -> int:
    """SCENARIOS chains of linked calls; returns how many links schemathesis found to chain by."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    machine = schema.as_state_machine()

    class Authenticated(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case) -> dict[str, Any]:
            return {"base_url": base_url, "headers": _auth(case.operation.path, credentials)}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            # As in fuzz(): schema-valid is not always valid (phones, lat with lng).
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=[positive_data_acceptance],
                transport_kwargs=kwargs,
            )

    Authenticated.run(settings=STATEFUL)
    return schema.statistic.transitions.total


def test_orders_api(system, credentials):
    fuzz(system.procs["orders"][0].url, credentials)


def test_orders_api_stateful(system, credentials):
    assert fuzz_stateful(system.procs["orders"][0].url, credentials) > 10


def test_dispatch_api(system, credentials):
    fuzz(system.procs["dispatch"][0].url, credentials)


def test_dispatch_api_stateful(system, credentials):
    assert fuzz_stateful(system.procs["dispatch"][0].url, credentials) > 10


def test_tracking_api(system):
    # The SSE stream is covered by tracking's own stream tests.
    fuzz(system.procs["tracking"][0].url, None, skip=("/events",))


# --- hand-made edge cases -----------------------------------------------------------------

# Values no schema-driven generator is likely to try. Each goes in place of every value of its
# kind (text, number, time) in a valid body, and must be refused there (never a 2xx); every
# value also goes in the query and path values. A value of another type is the negative
# fuzzing's business, not this table's.
TEXT_VALUES: dict[str, str] = {
    "NUL": "Nguy\x00en",
    "lone surrogate": "Nguy\ud800en",
    "bidi override": "Nguy\u202een",
    "bidi isolate": "\u2067Nguyen",
    "escape character": "Nguy\x1b[31men",
}
NUMBER_VALUES: dict[str, int | float] = {
    "10**30": 10**30,
    "2**63": 2**63,
    "-2**63 - 1": -(2**63) - 1,
    "1e308": 1e308,
    "-1e308": -1e308,
}
TIME_VALUES: dict[str, str] = {
    "year 1 at +14:00": "0001-01-01T00:00:00+14:00",
    "year 9999 at -14:00": "9999-12-31T23:59:59-14:00",
    "year 1970": "1970-01-01T00:00:00Z",
}
BIG = "x" * 1_000_000  # once per body: the size guard answers before any field is read
ORDER_ID = "6f1c2d3e-8a9b-4c5d-9e0f-1a2b3c4d5e6f"
HA_LONG = {"lat": 20.9511, "lng": 107.0735}
PLACE = {"name": "Nguyễn Văn An", "phone": "0987 654 321", "address": "45 Trần Hưng Đạo, Hạ Long", **HA_LONG}
HOOK = {"url": "http://127.0.0.1:9/hooks", "event_types": ["order.status_changed"]}


def leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """The path of every value in a JSON document (a list's items, an object's members)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))
    yield path


def value_at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def replaced(doc: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(doc))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return copy


def wrong_answer(r: httpx.Response, refuse: bool) -> str | None:
    """What is wrong with an answer to an edge value, or None."""
    if r.status_code >= 500:
        return f"{r.status_code} {r.text[:200]}"
    if r.status_code >= 400 and not r.headers.get("content-type", "").startswith("application/problem+json"):
        return f"{r.status_code} without a problem document"
    if refuse and r.status_code < 300:
        return f"{r.status_code}: accepted"
    return None


def in_url(value: Any) -> str:
    """A value as a query or path segment: text as its UTF-8 (a lone surrogate as the bytes it would be)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return quote(text, safe="", errors="surrogatepass")


def test_edge_values_in_every_field_are_4xx_problems(system, credentials):
    orders, dispatch, tracking = (system.procs[s][0].url for s in ("orders", "dispatch", "tracking"))
    who = {k: {"Authorization": f"Bearer {v}"} for k, v in credentials.items()} | {"nobody": {}}
    with httpx.Client(timeout=30) as client:
        order = client.post(
            f"{orders}/v1/orders",
            headers=who["merchant"],
            json={"pickup": PLACE, "dropoff": PLACE, "parcel": {"weight_grams": 1}},
        )
        endpoint = client.post(f"{orders}/v1/webhook-endpoints", headers=who["merchant"], json=HOOK)
        assert order.status_code == endpoint.status_code == 201, (order.text, endpoint.text)
        order_id, endpoint_id = order.json()["id"], endpoint.json()["id"]
        # (method, URL, who, a valid body): each value of the body in turn is replaced.
        bodies: list[tuple[str, str, str, dict[str, Any]]] = [
            ("POST", f"{orders}/v1/admin/merchants", "admin", {"name": "Shop", "phone": "0912 345 678"}),
            (
                "POST",
                f"{orders}/v1/quotes",
                "merchant",
                {"pickup": HA_LONG, "dropoff": PLACE, "parcel": {"weight_grams": 1}},
            ),
            (
                "POST",
                f"{orders}/v1/orders",
                "merchant",
                {
                    "external_id": "E-1",
                    "pickup": PLACE,
                    "dropoff": PLACE,
                    "parcel": {"weight_grams": 1200, "description": "Áo", "value_vnd": 1},
                    "cod_amount_vnd": 1,
                    "note": "Gọi trước",
                },
            ),
            ("POST", f"{orders}/v1/orders/{order_id}/cancel", "merchant", {"reason": "Khách đổi ý"}),
            ("POST", f"{orders}/v1/webhook-endpoints", "merchant", {**HOOK, "enabled": True}),
            ("PATCH", f"{orders}/v1/webhook-endpoints/{endpoint_id}", "merchant", {**HOOK, "enabled": True}),
            (
                "POST",
                f"{dispatch}/v1/admin/couriers",
                "admin",
                {"name": "Ngô Văn Thử", "phone": "0987654321", "vehicle": "car"},
            ),
            ("PUT", f"{dispatch}/v1/courier/status", "courier", {"online": False, **HA_LONG}),
            (
                "POST",
                f"{dispatch}/v1/courier/locations",
                "courier",
                {"points": [{**HA_LONG, "at": "2026-01-01T09:00:00+07:00"}]},
            ),
            (
                "POST",
                f"{dispatch}/v1/courier/jobs/{ORDER_ID}/deliver",
                "courier",
                {"delivery_code": "123456", "cod_collected_vnd": 0},
            ),
            ("POST", f"{dispatch}/v1/courier/jobs/{ORDER_ID}/fail", "courier", {"reason": "other"}),
        ]
        # (URL with {} where the value goes, who): query and path values.
        slots = [
            (f"{orders}/v1/orders?cursor={{}}", "merchant"),
            (f"{orders}/v1/orders?limit={{}}", "merchant"),
            (f"{orders}/v1/orders?status={{}}", "merchant"),
            (f"{orders}/v1/orders/{{}}", "merchant"),
            (f"{orders}/v1/webhook-endpoints/{endpoint_id}/deliveries?cursor={{}}", "merchant"),
            (f"{orders}/v1/admin/audit?cursor={{}}", "admin"),
            (f"{dispatch}/v1/admin/jobs?cursor={{}}", "admin"),
            (f"{dispatch}/v1/admin/jobs?bbox={{}}", "admin"),
            (f"{dispatch}/v1/admin/couriers?cursor={{}}", "admin"),
            (f"{dispatch}/v1/admin/couriers?limit={{}}", "admin"),
            (f"{dispatch}/v1/admin/couriers/{{}}", "admin"),
            (f"{dispatch}/v1/admin/audit?cursor={{}}", "admin"),
            (f"{tracking}/v1/tracking/{{}}", "nobody"),
        ]
        failures, sent = [], 0

        def send(method: str, url: str, role: str, body: Any, what: str) -> None:
            nonlocal sent
            sent += 1
            # json.dumps escapes every non-ASCII character: a lone surrogate travels as \ud800.
            headers = {**who[role], "content-type": "application/json"}
            r = client.request(method, url, headers=headers, content=json.dumps(body))
            if wrong := wrong_answer(r, refuse=True):
                failures.append(f"{method} {url} {what}: {wrong}")

        for method, url, role, valid in bodies:
            send(method, url, role, {"big": BIG, **valid}, "1 MB string")
            for path in leaves(valid):
                value = value_at(valid, path)
                if isinstance(value, str) and path[-1] == "at":
                    table: dict[str, Any] = TIME_VALUES
                elif isinstance(value, str):
                    table = TEXT_VALUES
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    table = NUMBER_VALUES
                else:
                    continue
                for name, edge in table.items():
                    send(method, url, role, replaced(valid, path, edge), f"{'.'.join(map(str, path))} = {name}")
        for url, role in slots:
            for name, value in (TEXT_VALUES | NUMBER_VALUES | TIME_VALUES).items():
                r = client.get(url.format(in_url(value)), headers=who[role])
                sent += 1
                if wrong := wrong_answer(r, refuse=False):
                    failures.append(f"GET {url} = {name}: {wrong}")
    assert sent > 300
    assert not failures, "\n".join(failures)
