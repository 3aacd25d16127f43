"""The infrastructure itself: a client we did not write sees the broker, starts are idempotent,
the services' script runs instances sharing a port, and migrations from scratch apply once even
when processes race."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import uuid

import asyncpg
import httpx
import pytest

from shared.db import create_pool, migrate, migration_files
from tests import ROOT
from tests.infra import free_port, need_tool
from tests.support import create_databases, drop_databases, drop_topics, kafka_settings


def test_kcat_lists_the_broker_metadata(kafka):
    kcat = need_tool("kcat")
    settings = kafka_settings(kafka.bootstrap)  # deploy/local's broker wants a user (tests.infra)
    if settings.kafka_username and _librdkafka(kcat) < (2, 6, 1):
        pytest.skip("this kcat's librdkafka fails SCRAM with Kafka 4 brokers (fixed in 2.6.1: librdkafka#4895)")
    auth = (
        [
            *("-X", "security.protocol=SASL_PLAINTEXT"),
            *("-X", f"sasl.mechanisms={settings.kafka_sasl_mechanism}"),
            *("-X", f"sasl.username={settings.kafka_username}"),
            *("-X", f"sasl.password={settings.kafka_password}"),
        ]
        if settings.kafka_username
        else []
    )
    out = subprocess.run(
        [kcat, "-b", kafka.bootstrap, *auth, "-L", "-m", "10"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert "1 brokers:" in out
    assert f"at {kafka.bootstrap}" in out


def _librdkafka(kcat: str) -> tuple[int, ...]:
    version = re.search(
        r"librdkafka (\d+)\.(\d+)\.(\d+)", subprocess.run([kcat, "-V"], capture_output=True, text=True).stdout
    )
    return tuple(int(n) for n in version.groups()) if version else (0,)


def test_a_second_start_changes_nothing(infra):
    if not infra.local:
        pytest.skip("Kafka and PostgreSQL come from env or containers, not deploy/local")
    pids = (ROOT / "var/run/kafka.pid").read_text(), (ROOT / "var/run/postgres.pid").read_text()
    for script in ("kafka.sh", "postgres.sh"):
        result = subprocess.run(
            [str(ROOT / "deploy/local" / script), "start"], capture_output=True, text=True, timeout=60, check=True
        )
        assert "already running" in result.stderr
    assert pids == ((ROOT / "var/run/kafka.pid").read_text(), (ROOT / "var/run/postgres.pid").read_text())


def test_free_ports_are_never_handed_out_twice():
    """A system takes a port for each process before any binds it: the kernel offers a port
    it just offered again now and then (1 in 2,000 within ten asks, measured), and then two
    servers of one test shared a port and a client reached the wrong one."""
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_services_script_runs_instances_sharing_a_port(infra, tmp_path):
    """deploy/local/services.sh with GIAO_DISPATCH_INSTANCES=2: both start and get ready, each
    on the shared port and its own (port + 10 x its number), and a plain stop ends both."""
    if not infra.local:
        pytest.skip("the script's processes reach Kafka and PostgreSQL of deploy/local")
    # the shared port, the instances' own ports and their ops ports (own + 100)
    port = next(p for p in range(18102, 19000, 200) if all(_free(p + d) for d in (0, 10, 20, 110, 120)))
    database, prefix = f"svc_{uuid.uuid4().hex[:8]}", f"svc{uuid.uuid4().hex[:8]}."
    asyncio.run(create_databases(infra.pg_admin_dsn, [database]))
    env = {
        **os.environ,
        "GIAO_VAR_DIR": str(tmp_path),
        "GIAO_DISPATCH_INSTANCES": "2",
        "GIAO_DISPATCH_PORT": str(port),
        "GIAO_DISPATCH_DATABASE_URL": infra.dsn_for(database),
        "GIAO_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "GIAO_TOPIC_PREFIX": prefix,
    }
    script = str(ROOT / "deploy/local/services.sh")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=120)

    try:
        started = run("start", "dispatch", "dispatch-2")
        assert started.returncode == 0, started.stderr
        assert "dispatch-2: ready" in started.stderr
        pids = [(tmp_path / "run" / f"{name}.pid").read_text().strip() for name in ("dispatch", "dispatch-2")]
        for own in (port + 110, port + 120):  # each instance's ops port
            assert httpx.get(f"http://127.0.0.1:{own}/readyz", timeout=5).status_code == 200
            assert httpx.get(f"http://127.0.0.1:{own}/metrics", timeout=5).status_code == 200
        for public in (port + 10, port + 20, port):
            assert httpx.get(f"http://127.0.0.1:{public}/readyz", timeout=5).status_code == 200
            assert httpx.get(f"http://127.0.0.1:{public}/metrics", timeout=5).status_code == 404
        with_one = {**env, "GIAO_DISPATCH_INSTANCES": "1"}  # a stop under other settings still finds both
        stopped = subprocess.run([script, "stop"], env=with_one, capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert all(not os.path.exists(f"/proc/{pid}") for pid in pids), stopped.stderr
        assert all(_free(port + d) for d in (0, 10, 20, 110, 120))
    finally:
        run("stop")
        asyncio.run(drop_databases(infra.pg_admin_dsn, [database]))
        asyncio.run(drop_topics(infra.kafka_bootstrap, prefix))


async def test_migrations_from_scratch_apply_once_when_two_processes_race(database):
    pools = [await create_pool(database, min_size=1, max_size=2) for _ in range(2)]
    try:
        applied = await asyncio.gather(*(migrate(p) for p in pools))
        names = [n for n, _ in migration_files()]
        assert sorted(applied[0] + applied[1]) == sorted(names), "each file applied by exactly one"
        assert await migrate(pools[0]) == [], "nothing left to apply"
        conn: asyncpg.Connection = await asyncpg.connect(database)
        try:
            columns = {
                (r["table_name"], r["column_name"])
                for r in await conn.fetch(
                    "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
                )
            }
        finally:
            await conn.close()
        # The columns shared/outbox.py and shared/inbox.py read and write.
        expected = (
            {("outbox", c) for c in ("id", "topic", "key", "lane", "event_type", "payload")}
            | {("event_sequences", c) for c in ("topic", "subject", "last")}
            | {("inbox_positions", c) for c in ("consumer", "topic", "subject", "sequence", "last_seen_at")}
        )
        assert expected <= columns
    finally:
        for p in pools:
            await p.close()
