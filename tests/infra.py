"""Where the tests' Kafka and PostgreSQL come from, each on its own, first that applies:
1. GIAO_TEST_KAFKA_BOOTSTRAP, GIAO_TEST_PG_DSN (an admin DSN that may create databases);
2. testcontainers, when a Docker engine answers;
3. the project's own local servers (deploy/local), started if they are not running. Its broker
   requires SASL/SCRAM: the tests are its `admin` user (GIAO_KAFKA_USERNAME/PASSWORD in the
   environment, so that every client the tests make, the services they start included, reads
   them), which the ACLs do not restrict (tests/foundation/test_kafka_acls.py tests them).

Each server is asked for only by the tests that need it (tests/conftest.py marks them `kafka`
or `db` for it), so a run of the database tests never waits for a broker, and `make test-fast`
starts neither. The tools of the machine a test may need are here too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import ROOT

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:15"


@dataclass(frozen=True)
class Postgres:
    admin_dsn: str  # connects to an existing database as a role that may CREATE DATABASE
    local: bool = False  # the project's own server of deploy/local (tests may restart it)

    def dsn_for(self, database: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{database}"


@dataclass(frozen=True)
class Kafka:
    bootstrap: str
    local: bool = False  # the project's own broker of deploy/local (tests may restart it)


@dataclass(frozen=True)
class Infra:
    """Both servers, for the tests that run a service (its database and its broker)."""

    postgres: Postgres
    kafka: Kafka

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def pg_admin_dsn(self) -> str:
        return self.postgres.admin_dsn

    @property
    def local(self) -> bool:
        """Both are the project's own servers of deploy/local."""
        return self.postgres.local and self.kafka.local

    def dsn_for(self, database: str) -> str:
        return self.postgres.dsn_for(database)


@functools.cache
def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_local(script: str) -> None:
    subprocess.run([str(ROOT / "deploy/local" / script), "start"], check=True)


def restart_local(script: str) -> None:
    """Stop and start one of the project's own servers (deploy/local: kafka.sh, postgres.sh)."""
    for verb in ("stop", "start"):
        subprocess.run([str(ROOT / "deploy/local" / script), verb], check=True, timeout=180)


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    if dsn := os.environ.get("GIAO_TEST_PG_DSN"):
        yield Postgres(dsn)
    elif docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE) as container:
            yield Postgres(container.get_connection_url().replace("postgresql+psycopg2://", "postgresql://"))
    else:
        _start_local("postgres.sh")
        port = os.environ.get("GIAO_PG_PORT", "5432")
        yield Postgres(f"postgresql://giao:giao@127.0.0.1:{port}/postgres", local=True)


@contextlib.contextmanager
def kafka_server() -> Iterator[Kafka]:
    if bootstrap := os.environ.get("GIAO_TEST_KAFKA_BOOTSTRAP"):
        yield Kafka(bootstrap)
    elif docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield Kafka(container.get_bootstrap_server())
    else:
        _start_local("kafka.sh")
        os.environ.setdefault("GIAO_KAFKA_USERNAME", "admin")
        os.environ.setdefault("GIAO_KAFKA_PASSWORD", os.environ.get("GIAO_KAFKA_ADMIN_PASSWORD", "dev-kafka-admin"))
        yield Kafka(f"127.0.0.1:{os.environ.get('GIAO_KAFKA_PORT', '9092')}", local=True)


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now (for a server a test starts), and one this
    process has not handed out before: a port stays free until its server binds it, and the
    kernel may offer it again in between (a system's processes take several at once)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def need_tool(name: str, installed_by: str = "deploy/local/tools.sh (`make test` runs it)") -> str:
    """The path of a command-line tool a test runs. Missing, the test is skipped with the
    reason, except under CI (`CI` set): there `make test` has installed it, so it fails."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed; it is installed by {installed_by}"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
