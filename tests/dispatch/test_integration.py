"""Through the real broker: orders' events produced to Kafka, dispatch's answers read back
from the prefixed giao.dispatch.v1 and giao.courier-locations.v1 topics."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from shared.events import COURIER_LOCATIONS_TOPIC, DISPATCH_TOPIC, ORDERS_TOPIC, parse_event
from tests.dispatch.support import Order
from tests.support import eventually, produce, read_topic


async def _produce(infra, dispatch, *events) -> None:
    await produce(
        infra.kafka_bootstrap,
        dispatch.settings.topic(ORDERS_TOPIC),
        [(e.subject.encode(), e.model_dump_json().encode()) for e in events],
    )


async def _events_by_order(infra, topic: str, want: dict[str, list[str]]) -> dict[str, list]:
    """Events per subject once every subject in `want` shows exactly the wanted types."""

    async def read():
        got: dict[str, list] = {}
        for record in await read_topic(infra.kafka_bootstrap, topic, at_least=1):
            event = parse_event(record.value)  # every record is a valid contract event
            assert record.key.decode() == event.subject
            got.setdefault(event.subject, []).append(event)
        assert {s: [e.type for e in got.get(s, [])] for s in want} == want
        return got

    return await eventually(read, timeout=20, what=f"events on {topic}")


async def test_from_order_placed_to_delivered_and_cancel_both_ways(dispatch, infra):
    courier = await dispatch.new_courier(name="Trần Văn Minh", vehicle="motorbike")
    delivered, cancelled, refused = Order(cod_amount_vnd=150_000), Order(), Order()
    await _produce(infra, dispatch, delivered.placed_event(), cancelled.placed_event(), refused.placed_event())
    for o in (delivered, cancelled, refused):
        await dispatch.offer_for(courier, o)
        assert (await dispatch.act(courier, o.id, "accept")).status_code == 200
    for o in (delivered, refused):
        assert (await dispatch.act(courier, o.id, "pickup")).status_code == 200
    r = await dispatch.client.post(
        "/v1/courier/locations",
        headers=courier.auth,
        json={"points": [{"lat": 20.953, "lng": 107.07, "at": datetime.now(UTC).isoformat()}]},
    )
    assert r.json()["published"] is True
    r = await dispatch.act(
        courier, delivered.id, "deliver", {"delivery_code": delivered.code, "cod_collected_vnd": 150_000}
    )
    assert r.status_code == 200
    await _produce(infra, dispatch, cancelled.cancel_event(), refused.cancel_event())

    step = ["delivery.offered", "delivery.assigned"]
    events = await _events_by_order(
        infra,
        dispatch.settings.topic(DISPATCH_TOPIC),
        {
            delivered.id: [*step, "delivery.picked_up", "delivery.delivered"],
            cancelled.id: [*step, "delivery.cancel_confirmed"],
            refused.id: [*step, "delivery.picked_up", "delivery.cancel_refused"],
        },
    )
    for order_id in (delivered.id, cancelled.id, refused.id):
        assert [e.sequence for e in events[order_id]] == list(range(1, len(events[order_id]) + 1))
        assert all(e.source == "dispatch" and str(e.data.order_id) == order_id for e in events[order_id])
    offered, assigned, _, done = events[delivered.id]
    assert str(offered.data.courier_id) == courier.id and offered.data.expires_at > offered.occurred_at
    info = assigned.data.courier
    assert (str(info.id), info.name, info.phone, info.display_name, info.vehicle) == (
        courier.id,
        "Trần Văn Minh",
        "+84912345678",
        "Minh T.",
        "motorbike",
    )
    assert done.data.cod_collected_vnd == 150_000
    assert events[refused.id][-1].data.reason
    assert await dispatch.job_status(cancelled.id) == "cancelled"
    assert await dispatch.job_status(refused.id) == "picked_up"

    locations = await read_topic(infra.kafka_bootstrap, dispatch.settings.topic(COURIER_LOCATIONS_TOPIC), at_least=1)
    [location] = [parse_event(r.value) for r in locations]
    assert location.type == "courier.location" and location.subject == courier.id
    assert sorted(map(str, location.data.order_ids)) == sorted([delivered.id, refused.id, cancelled.id])
    assert location.data.lat == 20.953


async def test_an_unaccepted_order_expires_through_the_broker(start, infra):
    dispatch = await start(window_s=1)
    lonely = Order(pickup=(10.77, 106.70))
    await _produce(infra, dispatch, lonely.placed_event())
    events = await _events_by_order(infra, dispatch.settings.topic(DISPATCH_TOPIC), {lonely.id: ["delivery.expired"]})
    assert events[lonely.id][0].sequence == 1


async def test_a_malformed_order_event_is_dead_lettered_and_the_next_one_applied(dispatch, infra):
    good = Order()
    await produce(
        infra.kafka_bootstrap,
        dispatch.settings.topic(ORDERS_TOPIC),
        [
            (b"x", orjson.dumps({"type": "order.placed", "data": {"order_id": "nope"}})),
            (good.id.encode(), good.placed_event().model_dump_json().encode()),
        ],
    )

    async def applied():
        return await dispatch.job_status(good.id)

    assert await eventually(applied, what="the good order applied") == "waiting"
    dlq = await read_topic(infra.kafka_bootstrap, dispatch.settings.topic(ORDERS_TOPIC) + ".dlq", at_least=1)
    assert len(dlq) == 1 and dict(dlq[0].headers)["x-error"].startswith(b"invalid event")
