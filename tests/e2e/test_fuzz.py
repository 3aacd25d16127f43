"""Schemathesis against each service's own OpenAPI, authenticated, with a bounded number of
examples per operation, valid and invalid data alike: no 5xx for any input, and every answer
matches its schema. (Driven through hypothesis directly: schemathesis' pytest loader does not
work with pytest 9.)"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = 12
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


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


def test_orders_api(system, credentials):
    fuzz(system.procs["orders"][0].url, credentials)


def test_dispatch_api(system, credentials):
    fuzz(system.procs["dispatch"][0].url, credentials)


def test_tracking_api(system):
    # The SSE stream is covered by tracking's own stream tests.
    fuzz(system.procs["tracking"][0].url, None, skip=("/events",))
