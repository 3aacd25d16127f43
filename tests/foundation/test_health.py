"""What the on-call engineer sees (shared/health.py): consumer lag, retries of an outage, dead
letters per topic, the outbox backlog, and readiness red while a consumer is stuck."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from shared.app import service_app
from shared.events import ORDERS_TOPIC, OrderCancelRequested, dlq_topic, new_event
from shared.http import Metrics
from shared.service import Runtime
from shared.settings import CommonSettings
from tests.support import eventually, ops_client, produce, read_topic


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _cancel_request(reason: str) -> tuple[str, OrderCancelRequested]:
    """An event of a new order (its id, the event) that the probe's handler records by reason."""
    subject = str(uuid.uuid4())
    data = {"order_id": subject, "reason": reason}
    return subject, new_event(OrderCancelRequested, subject=subject, sequence=1, source="orders", data=data)


async def test_an_outage_shows_as_lag_and_retries_then_readiness_red_until_it_ends(
    infra, database, topic_prefix, caplog
):
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_prefix=topic_prefix,
        shutdown_grace_s=5,
        health_every_s=0.2,
        ops_port=9100,  # /readyz and /metrics are asked there, as the on-call does
        consumer_stuck_after_s=1.0,
    )
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=True)
    outage = {"on": True}
    handled: list[str] = []

    async def handle(batch):
        if outage["on"]:
            raise ConnectionRefusedError("the database is down (as the handler sees it)")
        handled.extend(e.data.reason or "" for _, e in batch)

    rt.consume(name="probe", topics=[ORDERS_TOPIC], handler=handle)
    app = service_app(title="probe", summary="", description="", runtime=rt, metrics=Metrics("probe"), routers=[])
    topic = settings.topic(ORDERS_TOPIC)
    await rt.start()
    try:
        async with ops_client(app) as client:

            async def metric(name: str, **labels: str) -> float | None:
                return _samples((await client.get("/metrics")).text).get((name, tuple(sorted(labels.items()))))

            assert (await client.get("/readyz")).status_code == 200
            subject, event = _cancel_request("x")
            await produce(infra.kafka_bootstrap, topic, [(subject.encode(), event.model_dump_json().encode())])
            await produce(infra.kafka_bootstrap, topic, [(b"k", b"not an event")])

            async def stuck() -> bool:
                r = await client.get("/readyz")
                return r.status_code == 503 and "consumers" in r.json()["checks"]

            await eventually(stuck, timeout=20, what="readiness red for a consumer stuck in an outage")
            # The answer says only what is down; the log says which consumer and why.
            logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("readiness: consumers")]
            assert logged and "ConsumersStuck (probe: retrying an outage for" in logged[-1], logged
            assert await metric("giao_consumer_stuck", consumer="probe") == 1
            assert await metric("giao_consumer_retrying", consumer="probe") == 1
            assert (await metric("giao_consumer_retrying_seconds", consumer="probe") or 0) > 1.0
            lag = [
                v
                for (name, _), v in _samples((await client.get("/metrics")).text).items()
                if name == "giao_consumer_lag"
            ]
            assert sum(lag) >= 1, lag
            dead = await metric("giao_dead_letters_total", consumer="probe", topic=topic)
            assert dead == 1, "the record that is no event went to the dead letters"
            assert len(await read_topic(infra.kafka_bootstrap, dlq_topic(topic), at_least=1)) == 1

            outage["on"] = False

            async def recovered() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(recovered, timeout=20, what="readiness green once the outage ended")
            assert handled == ["x"]
            assert await metric("giao_consumer_retrying", consumer="probe") == 0
            assert await metric("giao_consumer_stuck", consumer="probe") == 0

            async def caught_up() -> bool:
                text = (await client.get("/metrics")).text
                lag = [v for (name, _), v in _samples(text).items() if name == "giao_consumer_lag"]
                return bool(lag) and sum(lag) == 0

            await eventually(caught_up, timeout=10, what="lag back to 0")

            # What the relay did: reads of the outbox (empty ones too) and events published.
            assert rt.relay is not None
            assert await metric("giao_outbox_published_total") == 0
            assert (await metric("giao_outbox_drains_total") or 0) >= 1, "the relay reads the outbox when idle too"
            other, relayed_event = _cancel_request("y")
            await rt.pool.execute(
                "INSERT INTO outbox (topic, key, lane, event_type, payload) VALUES ($1, $2, 0, $3, $4)",
                *(topic, other, relayed_event.type, relayed_event.model_dump_json().encode()),
            )
            rt.relay.hint()

            async def relayed() -> bool:
                return await metric("giao_outbox_published_total") == 1 and handled == ["x", "y"]

            await eventually(relayed, timeout=10, what="the outbox row published, counted and handled")

            # Rows the relay has not published: their count and the age of the oldest.
            await rt.relay.stop()
            await rt.pool.execute(
                """INSERT INTO outbox (topic, key, lane, event_type, payload, created_at)
                   VALUES ('t', 'k', 0, 'x', 'x', now() - interval '30 seconds'), ('t', 'k', 0, 'x', 'x', now())"""
            )
            await rt.watch.look()
            assert await metric("giao_outbox_backlog") == 2
            assert 30 <= (await metric("giao_outbox_oldest_seconds") or 0) < 60
            await rt.pool.execute("DELETE FROM outbox")
    finally:
        await rt.stop()
