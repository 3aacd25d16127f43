"""The orders domain without I/O: pricing, codes, cancelling, dispatch's events, cursors."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import orjson
import pytest

from services.orders.domain import (
    IGNORED_EVENTS,
    TRACKING_ALPHABET,
    BadCursor,
    BadRange,
    CancelNotAllowed,
    Cursor,
    Progress,
    Tariff,
    apply_event,
    day_range,
    delivered_at,
    new_order_id,
    new_tracking_code,
    placed,
    price,
    request_cancel,
    tracking_code_bits,
)
from shared.contract import ORDER_STATUSES
from shared.events import CancelRefusedData, CourierInfo, DeliveryAssignedData, DeliveryStepData
from shared.geo import road_distance_m, travel_minutes

T0 = datetime(2024, 5, 6, 2, 15, tzinfo=UTC)
HA_LONG = (20.9511, 107.0735)
BAI_CHAY = (20.9586, 107.0452)
FLAT = Tariff(base_fare_vnd=10_000, per_km_vnd=4_000, free_weight_grams=2_000, per_extra_kg_vnd=3_000, rounding_vnd=1)


# --- pricing ----------------------------------------------------------------------


def test_fee_is_base_plus_distance_plus_started_kilograms_above_the_threshold():
    q = price(FLAT, pickup=HA_LONG, dropoff=BAI_CHAY, weight_grams=2_001)
    distance = road_distance_m(*HA_LONG, *BAI_CHAY)
    assert q.distance_m == distance
    assert q.fee_vnd == 10_000 + math.ceil(4_000 * distance / 1000) + 3_000  # 1 g over: one started kg
    assert q.eta_minutes == travel_minutes(distance)


@pytest.mark.parametrize(("grams", "extra_kg"), [(1, 0), (2_000, 0), (2_001, 1), (3_000, 1), (3_001, 2), (50_000, 48)])
def test_weight_surcharge_counts_started_kilograms(grams, extra_kg):
    same_place = price(FLAT, pickup=HA_LONG, dropoff=HA_LONG, weight_grams=grams)
    assert same_place.distance_m == 0 and same_place.eta_minutes == 0
    assert same_place.fee_vnd == 10_000 + extra_kg * 3_000


def test_fee_is_rounded_up_to_the_configured_step_and_is_an_int():
    q = price(Tariff(rounding_vnd=1_000), pickup=HA_LONG, dropoff=BAI_CHAY, weight_grams=500)
    assert isinstance(q.fee_vnd, int) and q.fee_vnd % 1_000 == 0
    exact = price(Tariff(rounding_vnd=1), pickup=HA_LONG, dropoff=BAI_CHAY, weight_grams=500)
    assert exact.fee_vnd <= q.fee_vnd < exact.fee_vnd + 1_000


def test_farther_costs_more():
    near = price(Tariff(), pickup=HA_LONG, dropoff=BAI_CHAY, weight_grams=500)
    far = price(Tariff(), pickup=HA_LONG, dropoff=(21.03, 107.35), weight_grams=500)  # Cẩm Phả
    assert far.distance_m > near.distance_m and far.fee_vnd > near.fee_vnd and far.eta_minutes > near.eta_minutes


# --- codes ------------------------------------------------------------------------


def test_tracking_codes_are_long_unambiguous_and_random():
    codes = {new_tracking_code() for _ in range(2_000)}
    assert len(codes) == 2_000
    assert all(len(c) >= 10 and set(c) <= set(TRACKING_ALPHABET) for c in codes)
    assert not set("01OIL") & set(TRACKING_ALPHABET)
    assert tracking_code_bits() >= 50


# --- dispatch's events ------------------------------------------------------------


def courier():
    return CourierInfo(
        id=uuid4(), name="Trần Minh Đức", phone="+84903123456", display_name="Đức T.", vehicle="motorbike"
    )


def step(order_id=None):
    return DeliveryStepData(order_id=order_id or uuid4())


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_delivery_moves_through_its_statuses_with_one_history_entry_each():
    c = courier()
    p = placed(T0)
    for ignored in IGNORED_EVENTS:  # what the consumer commits unread must change nothing
        p = apply_event(p, ignored, at(1), None)
    assert p == placed(T0), "an offer changes nothing the merchant sees"
    p = apply_event(p, "delivery.assigned", at(2), DeliveryAssignedData(order_id=uuid4(), courier=c))
    assert p.status == "assigned"
    assert p.courier == {"id": str(c.id), "name": "Trần Minh Đức", "phone": "+84903123456"}
    p = apply_event(p, "delivery.picked_up", at(3), step())
    p = apply_event(p, "delivery.delivered", at(4), step())
    assert p.status == "delivered"
    assert [(h["status"], h["at"]) for h in p.history] == [
        ("placed", T0),
        ("assigned", at(2)),
        ("picked_up", at(3)),
        ("delivered", at(4)),
    ]


def test_a_failed_delivery_is_returned():
    p = placed(T0)
    for i, kind in enumerate(["delivery.assigned", "delivery.picked_up", "delivery.failed", "delivery.returned"]):
        data = DeliveryAssignedData(order_id=uuid4(), courier=courier()) if kind == "delivery.assigned" else step()
        p = apply_event(p, kind, at(i + 1), data)
    assert [h["status"] for h in p.history] == ["placed", "assigned", "picked_up", "delivery_failed", "returned"]


def test_a_final_status_is_kept_whatever_comes_later():
    p = apply_event(placed(T0), "delivery.expired", at(30), step())
    assert p.status == "expired" and p.is_final
    assert apply_event(p, "delivery.assigned", at(31), DeliveryAssignedData(order_id=uuid4(), courier=courier())) == p


def test_a_status_reached_again_adds_no_second_history_entry():
    p = apply_event(placed(T0), "delivery.assigned", at(1), DeliveryAssignedData(order_id=uuid4(), courier=courier()))
    p2 = apply_event(p, "delivery.assigned", at(2), DeliveryAssignedData(order_id=uuid4(), courier=courier()))
    assert [h["status"] for h in p2.history] == ["placed", "assigned"]
    assert p2.history[-1]["at"] == at(1)


# --- cancelling -------------------------------------------------------------------


@pytest.mark.parametrize("status", ["placed", "assigned"])
def test_cancel_is_a_request_to_dispatch(status):
    decision = request_cancel(Progress(status=status, history=()))
    assert decision.ask_dispatch and decision.progress.cancellation == "requested"
    assert decision.progress.status == status, "the status waits for dispatch's answer"


def test_asking_again_while_pending_sends_nothing_new():
    pending = request_cancel(placed(T0)).progress
    again = request_cancel(pending)
    assert not again.ask_dispatch and again.progress == pending


@pytest.mark.parametrize("status", ["picked_up", "delivery_failed", "delivered", "returned", "cancelled", "expired"])
def test_no_cancel_once_picked_up_or_over(status):
    with pytest.raises(CancelNotAllowed):
        request_cancel(Progress(status=status, history=()))


def test_dispatch_confirms_a_cancel():
    p = request_cancel(placed(T0)).progress
    p = apply_event(p, "delivery.cancel_confirmed", at(1), step())
    assert (p.status, p.cancellation) == ("cancelled", "done")
    assert [h["status"] for h in p.history] == ["placed", "cancelled"]


def test_dispatch_refuses_a_cancel_and_the_order_goes_on():
    p = apply_event(placed(T0), "delivery.assigned", at(1), DeliveryAssignedData(order_id=uuid4(), courier=courier()))
    p = request_cancel(p).progress
    p = apply_event(p, "delivery.picked_up", at(2), step())
    p = apply_event(p, "delivery.cancel_refused", at(3), CancelRefusedData(order_id=uuid4(), reason="picked up"))
    assert (p.status, p.cancellation) == ("picked_up", "refused")
    p = apply_event(p, "delivery.delivered", at(4), step())
    assert (p.status, p.cancellation) == ("delivered", "refused")


def test_a_pending_cancel_overtaken_by_an_end_is_refused():
    p = request_cancel(placed(T0)).progress
    p = apply_event(p, "delivery.expired", at(30), step())
    assert (p.status, p.cancellation) == ("expired", "refused")


def test_the_api_offers_exactly_the_statuses_of_the_contract():
    from services.orders.schemas import OrderOut

    assert OrderOut.model_json_schema()["properties"]["status"]["enum"] == list(ORDER_STATUSES)


# --- the statement ----------------------------------------------------------------


def test_a_statement_range_is_vietnams_days_both_included():
    days = day_range("2024-05-01", "2024-05-02")
    assert days.start == datetime(2024, 4, 30, 17, tzinfo=UTC)
    assert days.end == datetime(2024, 5, 2, 17, tzinfo=UTC)
    assert day_range("2024-01-01", "2024-04-02").last.isoformat() == "2024-04-02"  # 93 days: the longest


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [
        ("2024-5-1", "2024-05-02", "from"),
        ("20240501", "2024-05-02", "from"),
        ("\uff12\uff10\uff12\uff14-05-01", "2024-05-02", "from"),  # fullwidth digits
        ("1999-12-31", "2000-01-01", "from"),
        ("2024-05-01", "2024-02-30", "to"),
        ("2099-12-31", "2100-01-01", "to"),
        ("2024-05-02", "2024-05-01", "to"),
        ("2024-01-01", "2024-04-03", "to"),  # 94 days
    ],
)
def test_a_bad_statement_range_names_its_field(first, last, field):
    with pytest.raises(BadRange) as caught:
        day_range(first, last)
    assert caught.value.field == field


def test_delivered_at_is_the_historys_delivery_and_never_changes():
    when = datetime(2024, 5, 1, 23, 30, tzinfo=UTC)
    p = apply_event(placed(when - timedelta(hours=1)), "delivery.picked_up", when - timedelta(minutes=5), step())
    assert delivered_at(p) is None
    delivered = apply_event(p, "delivery.delivered", when, step())
    assert delivered_at(delivered) == when
    # As read back from the database (jsonb: the time as text).
    stored = Progress(status="delivered", history=tuple({**h, "at": h["at"].isoformat()} for h in delivered.history))
    assert delivered_at(stored) == when
    assert apply_event(delivered, "delivery.returned", when + timedelta(hours=1), step()) == delivered


# --- cursors ----------------------------------------------------------------------


def test_cursor_round_trip():
    c = Cursor(at=datetime(2024, 5, 6, 9, 15, 2, 120_000, tzinfo=timezone(timedelta(hours=7))), id=uuid4())
    assert Cursor.decode(c.encode()) == c


@pytest.mark.parametrize("text", ["", "abc", "!!!!", "MjAyNC0wNS0wNnxub3QtYS11dWlk", "bm8tdGltZXw="])
def test_a_cursor_this_service_did_not_give_is_rejected(text):
    with pytest.raises(BadCursor):
        Cursor.decode(text)


def test_order_ids_come_in_the_order_they_were_made():
    # Every service keys an order's rows by its id: in time order, new rows go to the
    # right-hand edge of each index instead of anywhere in it (domain.new_order_id).
    ids = [new_order_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7}
    assert orjson.loads(orjson.dumps({"id": ids[0]})) == {"id": str(ids[0])}  # the standard library's UUID
