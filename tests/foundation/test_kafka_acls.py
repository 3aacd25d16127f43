"""Kafka's least privilege (shared/kafka_acls.py) on a broker of this test's own, started by
deploy/local/kafka.sh as `make up` starts it (SASL/SCRAM, the users formatted in, the ACLs of
deploy/kafka-acls.txt): the suite's shared broker may be one without authentication."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from shared import kafka_acls
from shared.events import ORDER_TRACKING_TOPIC, ORDERS_TOPIC, dlq_topic
from shared.kafka_clients import connection
from shared.settings import CommonSettings
from tests import ROOT
from tests.infra import free_port, need_tool


def test_the_acl_file_is_the_one_the_code_writes():
    assert kafka_acls.FILE.read_text() == kafka_acls.rendered(), "run `python -m shared.kafka_acls`"


def test_tracking_is_allowed_nothing_of_the_topic_with_personal_data():
    tracking = [g for g in kafka_acls.grants() if g.principal == "User:tracking"]
    named = {name for g in tracking for name in g.names}
    assert ORDER_TRACKING_TOPIC in named
    assert ORDERS_TOPIC not in named and dlq_topic(ORDERS_TOPIC) not in named
    assert all(g.pattern == "literal" for g in tracking if g.resource == "topic"), "no prefix can reach it either"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of deploy/local/kafka.sh in a directory and on ports of its own; its address."""
    for tool in ("java", "javac", "mvn"):
        need_tool(tool)
    port = free_port()
    env = {
        **os.environ,
        "GIAO_VAR_DIR": str(tmp_path_factory.mktemp("kafka-sasl")),
        "GIAO_KAFKA_PORT": str(port),
        "GIAO_KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    script = str(ROOT / "deploy/local/kafka.sh")
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=90)


def as_user(bootstrap: str, user: str | None) -> dict:
    """The aiokafka options a service's settings give (shared.kafka_clients.connection)."""
    settings = CommonSettings(
        kafka_bootstrap_servers=bootstrap,
        kafka_username=user or "",
        kafka_password=f"dev-kafka-{user}" if user else "",
    )
    return connection(settings)


async def produce(options: dict, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True, request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k", partition=0)
    finally:
        await producer.stop()


async def read(options: dict, topic: str, group: str, *, at_least: int = 1, timeout: float = 20.0) -> list[bytes]:
    """The records of `topic` read as a member of consumer group `group`, as a service reads
    (subscribed: a refused topic raises, where an assigned one would only be logged)."""
    consumer = AIOKafkaConsumer(
        topic,
        **options,
        group_id=group,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline, values = loop.time() + timeout, []
        while len(values) < at_least and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            values += [r.value for records in batch.values() for r in records]
        return values
    finally:
        await consumer.stop()


@pytest.mark.kafka
async def test_the_broker_refuses_what_the_acls_do_not_allow(sasl_broker):
    orders, tracking = as_user(sasl_broker, "orders"), as_user(sasl_broker, "tracking")

    with pytest.raises(KafkaConnectionError):
        await produce(as_user(sasl_broker, None), ORDERS_TOPIC, b"no credentials")
    wrong = {**orders, "sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaConnectionError):
        await produce(wrong, ORDERS_TOPIC, b"wrong password")

    # What the contract allows goes through: orders writes both its topics, tracking reads its own.
    await produce(orders, ORDERS_TOPIC, b"order.placed, with personal data")
    await produce(orders, ORDER_TRACKING_TOPIC, b"order.trackable")
    assert await read(tracking, ORDER_TRACKING_TOPIC, "tracking-status") == [b"order.trackable"]

    with pytest.raises(TopicAuthorizationFailedError):  # a service writing another's topic
        await produce(tracking, ORDERS_TOPIC, b"forged by tracking")
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(tracking, ORDER_TRACKING_TOPIC, b"forged by tracking")
    with pytest.raises(TopicAuthorizationFailedError):  # tracking reading the personal data
        await read(tracking, ORDERS_TOPIC, "tracking-status")
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(as_user(sasl_broker, "dispatch"), ORDERS_TOPIC, b"forged by dispatch")

    admin = as_user(sasl_broker, None) | {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "admin",
        "sasl_plain_password": "dev-kafka-admin",
    }
    assert await read(admin, ORDERS_TOPIC, "audit") == [b"order.placed, with personal data"], "nothing forged got in"
