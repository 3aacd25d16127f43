"""Real Kafka and PostgreSQL for every test, and a database and topic prefix of its own.

Where they come from, first that applies:
1. GIAO_TEST_KAFKA_BOOTSTRAP and GIAO_TEST_PG_DSN (an admin DSN that may create databases);
2. testcontainers, when a Docker engine answers;
3. the project's own local servers (deploy/local), started if they are not running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import create_databases, drop_databases, drop_topics

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    pg_admin_dsn: str  # connects to an existing database as a role that may CREATE DATABASE
    local: bool = False  # the project's own servers of deploy/local (tests may restart them)

    def dsn_for(self, database: str) -> str:
        base, _, _ = self.pg_admin_dsn.rpartition("/")
        return f"{base}/{database}"


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    kafka, pg = os.environ.get("GIAO_TEST_KAFKA_BOOTSTRAP"), os.environ.get("GIAO_TEST_PG_DSN")
    if kafka and pg:
        yield Infra(kafka, pg)
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as k, PostgresContainer("postgres:15") as p:
            dsn = p.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
            yield Infra(k.get_bootstrap_server(), dsn)
        return
    for script in ("kafka.sh", "postgres.sh"):
        subprocess.run([str(ROOT / "deploy/local" / script), "start"], check=True)
    kafka_port, pg_port = os.environ.get("GIAO_KAFKA_PORT", "9092"), os.environ.get("GIAO_PG_PORT", "5432")
    yield Infra(f"127.0.0.1:{kafka_port}", f"postgresql://giao:giao@127.0.0.1:{pg_port}/postgres", local=True)


@pytest.fixture
async def database(infra: Infra) -> AsyncIterator[str]:
    """A new, empty database for this test; its DSN. Dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    await create_databases(infra.pg_admin_dsn, [name])
    yield infra.dsn_for(name)
    await drop_databases(infra.pg_admin_dsn, [name])


@pytest.fixture
async def topic_prefix(infra: Infra) -> AsyncIterator[str]:
    """Topics of this test's own: every topic name gets this prefix (deleted afterwards)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    await drop_topics(infra.kafka_bootstrap, prefix)
