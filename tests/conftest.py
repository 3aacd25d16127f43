"""Real Kafka and PostgreSQL for the tests that need them (where they come from: tests/infra.py),
a database and a topic prefix of each test's own, and the tiers.

Tiers: every test is marked by what it needs, read from the fixtures it uses, so that no test
has to say it and none can forget to: `db` (PostgreSQL), `kafka` (the broker), `e2e` (the
services as processes), `browser` (a web browser). `make test-fast` runs the tests with none
of these marks: no server is started for it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests import ROOT
from tests.infra import Infra, Kafka, Postgres, kafka_server, postgres_server
from tests.support import create_databases, drop_databases, drop_topics

__all__ = ["ROOT", "Infra"]  # still imported from here by some tests; new code imports tests / tests.infra

# A fixture a test uses (directly or through other fixtures) -> the marks it gets.
MARKS_BY_FIXTURE = {
    "postgres": ("db",),
    "kafka": ("kafka",),
    "system": ("e2e",),  # tests/e2e/conftest.py: the services as processes
    "city": ("e2e",),
    "browser": ("browser",),  # pytest-playwright's; its `context` and `page` use it
}


# Every test here is e2e, whatever it uses: `make test-fast` leaves the directory out unread.
E2E = ROOT / "tests" / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        marks = {m for fixture, fixture_marks in MARKS_BY_FIXTURE.items() if fixture in used for m in fixture_marks}
        if item.path.is_relative_to(E2E):
            marks.add("e2e")
        for mark in sorted(marks):
            item.add_marker(mark)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def kafka() -> Iterator[Kafka]:
    with kafka_server() as server:
        yield server


@pytest.fixture(scope="session")
def infra(postgres: Postgres, kafka: Kafka) -> Infra:
    return Infra(postgres, kafka)


@pytest.fixture
async def database(postgres: Postgres) -> AsyncIterator[str]:
    """A new, empty database for this test; its DSN. Dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    await create_databases(postgres.admin_dsn, [name])
    yield postgres.dsn_for(name)
    await drop_databases(postgres.admin_dsn, [name])


@pytest.fixture
async def topic_prefix(kafka: Kafka) -> AsyncIterator[str]:
    """Topics of this test's own: every topic name gets this prefix (deleted afterwards)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    await drop_topics(kafka.bootstrap, prefix)
