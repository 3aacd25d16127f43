"""Through the real broker: placed orders reach Kafka, dispatch's events move orders along.

Dispatch is played by this test: its events are built from shared.events (source
"dispatch", subject the order id, sequences 1..n) and produced to the test's own
giao.dispatch.v1, exactly as the dispatch service would publish them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.events import (
    DISPATCH_TOPIC,
    ORDERS_TOPIC,
    CancelConfirmed,
    CancelRefused,
    CourierInfo,
    DeliveryAssigned,
    DeliveryDelivered,
    DeliveryExpired,
    DeliveryFailed,
    DeliveryOffered,
    DeliveryPickedUp,
    DeliveryReturned,
    Envelope,
    OrderCancelRequested,
    OrderPlaced,
    new_event,
    parse_event,
)
from shared.secrets import delivery_code_matches
from tests.orders.support import order_body
from tests.support import eventually, produce, read_topic

T0 = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)


class Dispatch:
    """Writes dispatch-style events for one order, numbering its sequence as dispatch would."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.sequence = 0
        self.sent: list[Envelope] = []

    def next(self, cls: type[Envelope], minute: int, **data: Any) -> Envelope:
        self.sequence += 1
        return self.at(cls, self.sequence, minute, **data)

    def at(self, cls: type[Envelope], sequence: int, minute: int, **data: Any) -> Envelope:
        event = new_event(
            cls,
            subject=self.order_id,
            sequence=sequence,
            source="dispatch",
            occurred_at=T0 + timedelta(minutes=minute),
            data={"order_id": self.order_id, **data},
        )
        self.sent.append(event)
        return event


def courier(name: str = "Trần Minh Đức", phone: str = "+84903123456") -> dict[str, Any]:
    return CourierInfo(id=uuid.uuid4(), name=name, phone=phone, display_name="Đức T.", vehicle="motorbike").model_dump(
        mode="json"
    )


async def send(settings, *events: Envelope) -> None:
    await produce(
        settings.kafka_bootstrap_servers,
        settings.topic(DISPATCH_TOPIC),
        [(e.subject.encode(), e.model_dump_json().encode()) for e in events],
    )


async def place(client, merchant, **changes) -> dict[str, Any]:
    r = await client.post("/v1/orders", json=order_body(**changes), headers=merchant["headers"])
    assert r.status_code == 201, r.text
    return r.json()


async def order_when(client, merchant, order_id: str, what: str, **expected: Any) -> dict[str, Any]:
    async def check():
        order = (await client.get(f"/v1/orders/{order_id}", headers=merchant["headers"])).json()
        return order if all(order[k] == v for k, v in expected.items()) else None

    return await eventually(check, timeout=20, what=what)


def history(order: dict[str, Any]) -> list[tuple[str, datetime]]:
    return [(h["status"], datetime.fromisoformat(h["at"])) for h in order["history"]]


def minute(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


async def orders_events(settings, at_least: int) -> list[Envelope]:
    records = await read_topic(settings.kafka_bootstrap_servers, settings.topic(ORDERS_TOPIC), at_least=at_least)
    for r in records:
        assert r.key.decode() == orjson.loads(r.value)["subject"]
    return records


async def test_a_placed_order_reaches_kafka_without_its_delivery_code(client, merchant, settings):
    order = await place(client, merchant)
    records = await orders_events(settings, at_least=1)
    assert len(records) == 1
    record = records[0]
    event = parse_event(record.value)
    assert isinstance(event, OrderPlaced)
    assert (event.subject, event.sequence, event.source) == (order["id"], 1, "orders")
    assert dict(record.headers)["event-type"] == b"order.placed"
    data = event.data
    assert str(data.order_id) == order["id"] and str(data.merchant_id) == merchant["id"]
    assert data.tracking_code == order["tracking_code"]
    assert (data.fee_vnd, data.distance_m, data.cod_amount_vnd) == (order["fee_vnd"], order["distance_m"], 850000)
    assert data.pickup.phone == "+84912345678" and data.dropoff.model_dump() == order["dropoff"]
    assert data.parcel.model_dump() == order["parcel"] and data.note == order["note"]
    # The code travels only as a keyed hash: dispatch (with the key) can check it, nobody else.
    code = order["delivery_code"]
    assert code.encode() not in record.value
    assert delivery_code_matches(code, data.delivery_code, settings.delivery_code_key)
    assert not delivery_code_matches(code, data.delivery_code, "another-key")


async def test_dispatch_events_move_orders_through_every_status(client, merchant, settings, app):
    h = merchant["headers"]
    delivered, returned, expired, confirmed, refused = [
        (await place(client, merchant, external_id=name))["id"]
        for name in ("delivered", "returned", "expired", "confirmed", "refused")
    ]

    # placed -> assigned -> picked_up -> delivered, with a duplicate and two stale events on the way.
    d = Dispatch(delivered)
    duc = courier()
    offered = d.next(DeliveryOffered, 1, courier_id=duc["id"], expires_at=minute(2).isoformat())
    assigned = d.next(DeliveryAssigned, 2, courier=duc)
    picked_up = d.next(DeliveryPickedUp, 3)
    stale_assigned = d.at(DeliveryAssigned, 2, 4, courier=courier("Lê Văn Sai", "+84903999999"))
    done = d.next(DeliveryDelivered, 5, cod_collected_vnd=850000)
    stale_picked_up = d.at(DeliveryPickedUp, 3, 6)
    await send(settings, offered, assigned, assigned, picked_up, stale_assigned, done, done, stale_picked_up)

    # placed -> assigned -> picked_up -> delivery_failed -> returned
    ret = Dispatch(returned)
    await send(
        settings,
        ret.next(DeliveryAssigned, 1, courier=courier()),
        ret.next(DeliveryPickedUp, 2),
        ret.next(DeliveryFailed, 3, reason="recipient_unreachable"),
        ret.next(DeliveryReturned, 4),
    )

    # placed -> expired (no courier took it)
    e = Dispatch(expired)
    await send(
        settings,
        e.next(DeliveryOffered, 1, courier_id=duc["id"], expires_at=minute(2).isoformat()),
        e.next(DeliveryExpired, 30),
    )

    order = await order_when(client, merchant, delivered, "delivered", status="delivered")
    assert history(order) == [
        ("placed", datetime.fromisoformat(order["created_at"])),
        ("assigned", minute(2)),
        ("picked_up", minute(3)),
        ("delivered", minute(5)),
    ]
    assert order["courier"] == {"id": duc["id"], "name": "Trần Minh Đức", "phone": "+84903123456"}
    assert order["cancellation"] is None
    order = await order_when(client, merchant, returned, "returned", status="returned")
    assert [s for s, _ in history(order)] == ["placed", "assigned", "picked_up", "delivery_failed", "returned"]
    order = await order_when(client, merchant, expired, "expired", status="expired")
    assert history(order)[1:] == [("expired", minute(30))] and order["courier"] is None

    # Cancel saga, confirmed: placed -> (requested) -> cancelled.
    r = await client.post(f"/v1/orders/{confirmed}/cancel", json={"reason": "Khách đổi ý"}, headers=h)
    assert r.status_code == 202 and r.json()["cancellation"] == "requested"
    requests = [parse_event(rec.value) for rec in await orders_events(settings, at_least=6)]
    asked = [ev for ev in requests if isinstance(ev, OrderCancelRequested)]
    assert [(str(ev.data.order_id), ev.data.reason, ev.sequence) for ev in asked] == [(confirmed, "Khách đổi ý", 2)]
    c = Dispatch(confirmed)
    await send(settings, c.next(CancelConfirmed, 7))
    order = await order_when(client, merchant, confirmed, "cancelled", status="cancelled")
    assert order["cancellation"] == "done" and history(order)[1:] == [("cancelled", minute(7))]
    assert (await client.post(f"/v1/orders/{confirmed}/cancel", headers=h)).status_code == 409

    # Cancel saga, refused: assigned -> (requested) -> picked_up, refused -> delivered.
    f = Dispatch(refused)
    await send(settings, f.next(DeliveryAssigned, 1, courier=courier()))
    await order_when(client, merchant, refused, "assigned", status="assigned")
    r = await client.post(f"/v1/orders/{refused}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["cancellation"] == "requested"
    await send(settings, f.next(DeliveryPickedUp, 2), f.next(CancelRefused, 3, reason="Đã lấy hàng"))
    order = await order_when(client, merchant, refused, "cancel refused", cancellation="refused")
    assert order["status"] == "picked_up"
    assert (await client.post(f"/v1/orders/{refused}/cancel", headers=h)).status_code == 409
    await send(settings, f.next(DeliveryDelivered, 4, cod_collected_vnd=850000))
    order = await order_when(client, merchant, refused, "delivered after refusal", status="delivered")
    assert order["cancellation"] == "refused"
    assert [s for s, _ in history(order)] == ["placed", "assigned", "picked_up", "delivered"]

    # Every duplicate and stale event was read and ignored, not merely not read yet.
    sample = app.state.metrics.registry.get_sample_value

    def ignored(verdict: str) -> float:
        return sum(
            sample("orders_dispatch_events_total", {"type": t, "verdict": verdict}) or 0
            for t in ("delivery.assigned", "delivery.picked_up", "delivery.delivered")
        )

    async def all_read() -> bool:
        return (ignored("duplicate"), ignored("stale")) == (2, 2)

    await eventually(all_read, what="2 duplicates and 2 stale events read")
    distinct_events = len(d.sent + ret.sent + e.sent + c.sent + f.sent)
    applied = await app.state.runtime.pool.fetchval("SELECT sum(applied) FROM inbox_applied")
    assert applied == distinct_events - 2, "all but the two stale ones applied, each once"
    # No dispatch event was dead-lettered.
    assert app.state.runtime.consumers[0].dead_lettered == 0
