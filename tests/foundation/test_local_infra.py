"""The infrastructure itself: a client we did not write sees the broker, starts are idempotent,
the compose file is valid, and migrations from scratch apply once even when processes race."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import asyncpg
import pytest

from shared.db import create_pool, migrate, migration_files
from tests.conftest import ROOT


def test_kcat_lists_the_broker_metadata(infra):
    assert shutil.which("kcat"), "kcat is installed by deploy/local/tools.sh (make test runs it)"
    out = subprocess.run(["kcat", "-b", infra.kafka_bootstrap, "-L", "-m", "10"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "1 brokers:" in out
    assert f"at {infra.kafka_bootstrap}" in out


def test_docker_compose_file_is_valid():
    assert shutil.which("docker-compose"), "docker-compose is installed by deploy/local/tools.sh"
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_second_start_changes_nothing(infra):
    if not infra.local:
        pytest.skip("Kafka and PostgreSQL come from env or containers, not deploy/local")
    pids = (ROOT / "var/run/kafka.pid").read_text(), (ROOT / "var/run/postgres.pid").read_text()
    for script in ("kafka.sh", "postgres.sh"):
        result = subprocess.run([str(ROOT / "deploy/local" / script), "start"], capture_output=True,
                                text=True, timeout=60, check=True)
        assert "already running" in result.stderr
    assert pids == ((ROOT / "var/run/kafka.pid").read_text(), (ROOT / "var/run/postgres.pid").read_text())


async def test_migrations_from_scratch_apply_once_when_two_processes_race(database):
    pools = [await create_pool(database, min_size=1, max_size=2) for _ in range(2)]
    try:
        applied = await asyncio.gather(*(migrate(p) for p in pools))
        names = [n for n, _ in migration_files()]
        assert sorted(applied[0] + applied[1]) == sorted(names), "each file applied by exactly one"
        assert await migrate(pools[0]) == [], "nothing left to apply"
        conn: asyncpg.Connection = await asyncpg.connect(database)
        try:
            columns = {(r["table_name"], r["column_name"]) for r in await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'")}
        finally:
            await conn.close()
        # The columns shared/outbox.py and shared/inbox.py read and write.
        expected = {("outbox", c) for c in ("id", "topic", "key", "lane", "event_type", "payload")} | \
                   {("event_sequences", c) for c in ("topic", "subject", "last")} | \
                   {("inbox", c) for c in ("consumer", "event_id")} | \
                   {("inbox_positions", c) for c in ("consumer", "topic", "subject", "sequence")}
        assert expected <= columns
    finally:
        for p in pools:
            await p.close()
