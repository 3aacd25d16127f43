"""The merchant's statement (cash on delivery, reconciled): orders delivered in a range of
Vietnam's days, brought there by dispatch's events through the real broker (this test plays
dispatch, as test_flow does)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

import services.orders as orders_service
from services.orders.app import create_app
from services.orders.schemas import StatementOut, StatementPage
from services.orders.settings import OrdersSettings
from shared.events import (
    DISPATCH_TOPIC,
    CancelConfirmed,
    CourierInfo,
    DeliveryAssigned,
    DeliveryDelivered,
    DeliveryFailed,
    DeliveryPickedUp,
    DeliveryReturned,
    Envelope,
    new_event,
)
from tests.orders.support import new_merchant, order_body
from tests.support import eventually, produce, running


def backfill() -> str:
    """The UPDATE of migration 0005 that gives the orders already delivered their delivered_at."""
    text = (Path(orders_service.__file__).parent / "migrations" / "0005_delivered_at.sql").read_text()
    sql = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    (update,) = [s for s in sql.split(";") if s.strip().startswith("UPDATE orders")]
    return update


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def courier() -> dict[str, Any]:
    return CourierInfo(
        id=uuid.uuid4(), name="Trần Minh Đức", phone="+84903123456", display_name="Đức T.", vehicle="motorbike"
    ).model_dump(mode="json")


def events(order: dict[str, Any], at: datetime, *steps: type[Envelope]) -> list[Envelope]:
    """Dispatch's events for one order, sequences 1..n, the last one at `at` (a minute apart)."""
    sent = []
    for n, cls in enumerate(steps, start=1):
        data: dict[str, Any] = {"order_id": order["id"]}
        if cls is DeliveryAssigned:
            data["courier"] = courier()
        elif cls is DeliveryDelivered:
            data["cod_collected_vnd"] = order["cod_amount_vnd"]
        elif cls is DeliveryFailed:
            data["reason"] = "recipient_unreachable"
        sent.append(
            new_event(
                cls,
                subject=order["id"],
                sequence=n,
                source="dispatch",
                occurred_at=at - timedelta(minutes=len(steps) - n),
                data=data,
            )
        )
    return sent


DELIVERED = (DeliveryAssigned, DeliveryPickedUp, DeliveryDelivered)


async def send(settings, *events: Envelope) -> None:
    await produce(
        settings.kafka_bootstrap_servers,
        settings.topic(DISPATCH_TOPIC),
        [(e.subject.encode(), e.model_dump_json().encode()) for e in events],
    )


async def place(client, merchant, external_id: str, cod_amount_vnd: int) -> dict[str, Any]:
    body = order_body(external_id=external_id, cod_amount_vnd=cod_amount_vnd)
    r = await client.post("/v1/orders", json=body, headers=merchant["headers"])
    assert r.status_code == 201, r.text
    return r.json()


async def statuses_reached(client, merchant, expected: dict[str, str]) -> None:
    async def check() -> bool:
        r = await client.get("/v1/orders", params={"limit": 100}, headers=merchant["headers"])
        now = {o["id"]: o["status"] for o in r.json()["items"]}
        return all(now.get(order_id) == status for order_id, status in expected.items())

    await eventually(check, what=f"statuses {sorted(expected.values())}")


async def statement(client, merchant, first: str, last: str) -> dict[str, Any]:
    r = await client.get("/v1/statement", params={"from": first, "to": last}, headers=merchant["headers"])
    assert r.status_code == 200, r.text
    StatementOut.model_validate(r.json())  # the documented shape, nothing more or less
    return r.json()


def day(date: str, *orders: dict[str, Any]) -> dict[str, Any]:
    cod, fees = sum(o["cod_amount_vnd"] for o in orders), sum(o["fee_vnd"] for o in orders)
    return {"date": date, "delivered": len(orders), "cod_collected_vnd": cod, "fees_vnd": fees, "net_vnd": cod - fees}


async def test_the_statement_sums_the_merchants_deliveries_by_day_in_vietnam(client, merchant, settings, app):
    other = await new_merchant(client, "Shop Khác")
    a = await place(client, merchant, "A", 850_000)
    start = await place(client, merchant, "START", 300_000)
    end = await place(client, merchant, "END", 200_000)
    no_cod = await place(client, merchant, "NO-COD", 0)
    before = await place(client, merchant, "BEFORE", 100_000)
    after = await place(client, merchant, "AFTER", 100_000)
    returned = await place(client, merchant, "RETURNED", 400_000)
    failed = await place(client, merchant, "FAILED", 400_000)
    cancelled = await place(client, merchant, "CANCELLED", 400_000)
    theirs = await place(client, other, "THEIRS", 500_000)
    await send(
        settings,
        # 23:30 on the 1st in UTC is 06:30 on the 2nd in Vietnam.
        *events(a, utc("2024-05-01T23:30:00"), *DELIVERED),
        # The 3rd in Vietnam, from its first instant to its last.
        *events(start, utc("2024-05-02T17:00:00"), *DELIVERED),
        *events(end, utc("2024-05-03T16:59:59.999999"), *DELIVERED),
        # A day without COD: the shop owes Giao the fee.
        *events(no_cod, utc("2024-05-04T10:00:00"), *DELIVERED),
        # Just outside 2024-05-01 .. 2024-05-04 in Vietnam (inside it in UTC).
        *events(before, utc("2024-04-30T16:59:59.999999"), *DELIVERED),
        *events(after, utc("2024-05-04T17:00:00"), *DELIVERED),
        # Not delivered: nothing collected.
        *events(
            returned, utc("2024-05-02T03:00:00"), DeliveryAssigned, DeliveryPickedUp, DeliveryFailed, DeliveryReturned
        ),
        *events(failed, utc("2024-05-02T03:00:00"), DeliveryAssigned, DeliveryPickedUp, DeliveryFailed),
        *events(cancelled, utc("2024-05-02T03:00:00"), CancelConfirmed),
        # Another merchant's delivery, the same day.
        *events(theirs, utc("2024-05-02T03:00:00"), *DELIVERED),
    )
    mine = {o["id"]: "delivered" for o in (a, start, end, no_cod, before, after)}
    await statuses_reached(
        client,
        merchant,
        {**mine, returned["id"]: "returned", failed["id"]: "delivery_failed", cancelled["id"]: "cancelled"},
    )
    await statuses_reached(client, other, {theirs["id"]: "delivered"})

    days = [day("2024-05-02", a), day("2024-05-03", start, end), day("2024-05-04", no_cod)]
    assert days[2]["net_vnd"] < 0
    total = day("", a, start, end, no_cod)
    assert await statement(client, merchant, "2024-05-01", "2024-05-04") == {
        "from": "2024-05-01",
        "to": "2024-05-04",
        **{k: v for k, v in total.items() if k != "date"},
        "days": days,
    }
    one_day = await statement(client, merchant, "2024-05-03", "2024-05-03")
    assert one_day["days"] == [days[1]] and one_day["delivered"] == 2
    wider = await statement(client, merchant, "2024-04-30", "2024-05-05")
    assert [d["date"] for d in wider["days"]] == ["2024-04-30", "2024-05-02", "2024-05-03", "2024-05-04", "2024-05-05"]
    empty = await statement(client, merchant, "2024-06-01", "2024-06-30")
    assert (empty["delivered"], empty["net_vnd"], empty["days"]) == (0, 0, [])
    assert (await statement(client, other, "2024-05-01", "2024-05-04"))["days"] == [day("2024-05-02", theirs)]

    # The same orders one by one, oldest delivery first, page by page.
    seen, cursor = [], None
    for expected_size in (3, 1):
        params = {"from": "2024-05-01", "to": "2024-05-04", "limit": 3, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/statement/orders", params=params, headers=merchant["headers"])
        assert r.status_code == 200, r.text
        page = r.json()
        StatementPage.model_validate(page)
        assert len(page["items"]) == expected_size
        seen += page["items"]
        cursor = page["next_cursor"]
    assert cursor is None
    assert seen == [
        {
            "order_id": o["id"],
            "external_id": o["external_id"],
            "tracking_code": o["tracking_code"],
            "delivered_at": at,
            "cod_collected_vnd": o["cod_amount_vnd"],
            "fee_vnd": o["fee_vnd"],
        }
        for o, at in [
            (a, "2024-05-01T23:30:00+00:00"),
            (start, "2024-05-02T17:00:00+00:00"),
            (end, "2024-05-03T16:59:59.999999+00:00"),
            (no_cod, "2024-05-04T10:00:00+00:00"),
        ]
    ]
    # Each line's time is the one its order shows in its history.
    shown = (await client.get(f"/v1/orders/{a['id']}", headers=merchant["headers"])).json()
    assert datetime.fromisoformat(shown["history"][-1]["at"]) == datetime.fromisoformat(seen[0]["delivered_at"])
    r = await client.get(
        "/v1/statement/orders", params={"from": "2024-05-01", "to": "2024-05-04"}, headers=other["headers"]
    )
    assert [line["order_id"] for line in r.json()["items"]] == [theirs["id"]]

    # Orders delivered before migration 0005 get their time from their history, as these did.
    whole = await statement(client, merchant, "2024-04-30", "2024-05-05")
    pool = app.state.runtime.pool
    await pool.execute("UPDATE orders SET delivered_at = NULL")
    assert (await statement(client, merchant, "2024-04-30", "2024-05-05"))["days"] == []
    await pool.execute(backfill())
    assert await statement(client, merchant, "2024-04-30", "2024-05-05") == whole


async def test_bad_statement_parameters_are_422_naming_the_field(client, merchant):
    good = {"from": "2024-05-01", "to": "2024-05-31"}
    for params, loc in [
        ({"to": "2024-05-31"}, "from"),
        ({"from": "2024-05-01"}, "to"),
        ({**good, "from": "2024-5-1"}, "from"),
        ({**good, "from": "20240501"}, "from"),
        ({**good, "from": "2024-05-01T00:00"}, "from"),
        ({**good, "to": "2024-02-30"}, "to"),
        ({**good, "to": "mai"}, "to"),
        ({**good, "from": "1999-12-31"}, "from"),
        ({**good, "to": "2024-04-30"}, "to"),  # before from
        ({"from": "2024-01-01", "to": "2024-04-03"}, "to"),  # 94 days
        ({**good, "month": "5"}, "month"),
    ]:
        for path in ("/v1/statement", "/v1/statement/orders"):
            r = await client.get(path, params=params, headers=merchant["headers"])
            assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (params, r.text)
            assert [e["loc"] for e in r.json()["errors"]] == [["query", loc]], (path, params, r.text)
    for params, loc in [
        ({**good, "cursor": "garbage"}, "cursor"),
        ({**good, "limit": 0}, "limit"),
        ({**good, "limit": 101}, "limit"),
    ]:
        r = await client.get("/v1/statement/orders", params=params, headers=merchant["headers"])
        assert r.status_code == 422 and [e["loc"] for e in r.json()["errors"]] == [["query", loc]], (params, r.text)
    # 93 days, both ends included, is the longest range.
    r = await client.get(
        "/v1/statement", params={"from": "2024-01-01", "to": "2024-04-02"}, headers=merchant["headers"]
    )
    assert r.status_code == 200, r.text
    for path in ("/v1/statement", "/v1/statement/orders"):
        assert (await client.get(path, params=good)).status_code == 401


async def test_the_statement_counts_against_the_merchants_rate_limit(infra, database, topic_prefix):
    settings = OrdersSettings(
        database_url=database,
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_prefix=topic_prefix,
        db_pool_size=4,
        api_key_rate_per_s=0.001,
        api_key_rate_burst=2,
    )
    async with (
        running(create_app(settings)) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orders.test") as c,
    ):
        merchant = await new_merchant(c)
        days = {"from": "2024-05-01", "to": "2024-05-31"}
        assert (await c.get("/v1/statement", params=days, headers=merchant["headers"])).status_code == 200
        assert (await c.get("/v1/statement/orders", params=days, headers=merchant["headers"])).status_code == 200
        for path in ("/v1/statement", "/v1/statement/orders"):
            r = await c.get(path, params=days, headers=merchant["headers"])
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, (path, r.text)
