"""The bench's baselines (what the broker and PostgreSQL do alone) leave nothing behind: the
bench runs again and again on one broker and one cluster."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka_clients import connection
from tests.support import eventually, kafka_settings
from tools.bench.measure import kafka_baseline, postgres_baseline

pytestmark = [pytest.mark.kafka, pytest.mark.db]


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(**connection(kafka_settings(bootstrap)))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_the_kafka_baseline_measures_on_a_topic_it_deletes(kafka):
    before = await _topics(kafka.bootstrap)
    assert await kafka_baseline(kafka.bootstrap, 500) > 0

    async def deleted() -> bool:
        left = {t for t in await _topics(kafka.bootstrap) - before if t.startswith("bench.baseline.")}
        assert not left, left
        return True

    await eventually(deleted, timeout=20, interval=0.2, what="the baseline's topic deleted")


async def test_the_postgres_baseline_drops_its_table(database):
    assert await postgres_baseline(database, seconds=0.5, connections=2) > 0
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'bench_baseline_%'") == []
    finally:
        await conn.close()
