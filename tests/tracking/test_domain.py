"""The projection rules, without I/O: in-order, out-of-order and duplicated streams."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from services.tracking import domain, page
from services.tracking.domain import Parcel, apply_all, public_view
from shared.contract import ORDER_STATUSES
from shared.events import COURIER_LOCATIONS_TOPIC, DISPATCH_TOPIC, ORDER_TRACKING_TOPIC
from shared.geo import road_distance_m, travel_minutes
from tests.tracking.stories import DROPOFF, LIFECYCLES, Story


def project(story: Story, items) -> Parcel:
    return apply_all(Parcel(order_id=story.order_id), items)


def statuses(parcel: Parcel) -> list[str]:
    return [s.status for s in parcel.timeline]


def test_a_delivery_in_order():
    s = Story()
    placed, offered, assigned, picked, delivered = s.placed(), s.offered(), s.assigned(), s.picked_up(), s.delivered()
    p = project(s, [placed])
    assert (p.status, p.tracking_code, p.courier) == ("placed", s.code, None)
    assert p.visible
    p = project(s, [placed, offered])
    assert p.status == "placed", "an offer does not change the status"
    p = project(s, [placed, offered, assigned])
    assert p.status == "assigned" and p.courier == domain.Courier(s.courier_id, "Minh P.", "motorbike")
    p = project(s, [placed, offered, assigned, picked, delivered])
    assert p.status == "delivered" and p.final
    assert statuses(p) == ["placed", "assigned", "picked_up", "delivered"]
    assert [st.at for st in p.timeline] == [e.occurred_at for _, e in (placed, assigned, picked, delivered)]


def test_the_types_committed_unread_are_those_that_change_no_parcel():
    s = Story()
    offered, assigned = s.offered(), s.assigned()
    assert domain.IRRELEVANT_TYPES >= {"delivery.offered", "order.cancel_requested", "delivery.cancel_refused"}
    assert not domain.relevant(*offered) and domain.relevant(*assigned)
    assert {"order.trackable", "delivery.assigned", "delivery.delivered"}.isdisjoint(domain.IRRELEVANT_TYPES)


def test_timeline_texts_are_vietnamese_and_cover_every_status():
    assert domain.TIMELINE_TEXT is page.MESSAGES["steps"]  # one table, the page's
    assert set(domain.TIMELINE_TEXT) == set(ORDER_STATUSES) == set(domain.LIFECYCLE)
    assert domain.TIMELINE_TEXT["picked_up"] == "Shipper đã lấy hàng"
    s = Story()
    view = public_view(project(s, [s.placed(), s.assigned()]))
    assert [(t["status"], t["text"]) for t in view["timeline"]] == [
        ("placed", "Đơn hàng đã được tạo"),
        ("assigned", "Đã có shipper nhận đơn"),
    ]


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_each_lifecycle_reaches_each_of_its_statuses(name):
    s = Story()
    steps = LIFECYCLES[name](s)
    for i, (expected, _) in enumerate(steps):
        p = project(s, [item for _, item in steps[: i + 1]])
        assert p.status == expected, (name, i)
    assert statuses(p) == list(dict.fromkeys(expected for expected, _ in steps))


def test_dispatch_events_before_order_placed_are_kept_and_merged():
    s = Story()
    placed, assigned, picked = s.placed(), s.assigned(), s.picked_up()
    early = project(s, [assigned, picked])
    assert early.status == "picked_up" and early.tracking_code is None and not early.visible
    assert early.courier is not None
    merged = domain.apply(early, *placed)
    assert merged.status == "picked_up", "order.placed never moves the status back"
    assert merged.tracking_code == s.code and merged.visible
    assert statuses(merged) == ["placed", "assigned", "picked_up"]
    assert merged == project(s, [placed, assigned, picked])


def test_order_placed_after_a_final_status():
    s = Story()
    placed, expired = s.placed(), s.expired()
    p = project(s, [expired, placed])
    assert p.status == "expired" and statuses(p) == ["placed", "expired"] and p.visible


def test_duplicates_change_nothing():
    s = Story()
    items = [s.placed(), s.assigned(), s.picked_up(), s.delivered()]
    once = project(s, items)
    assert project(s, [i for item in items for i in (item, item)]) == once
    assert project(s, items + items) == once


def test_a_stale_event_never_moves_the_status_or_the_courier_back():
    s = Story()
    placed, assigned, picked = s.placed(), s.assigned(), s.picked_up()
    p = project(s, [placed, assigned, picked])
    assert domain.apply(p, *assigned) == p
    # A redelivered older event with a changed payload (another courier) is stale too.
    _, old = assigned
    other = old.model_copy(
        update={
            "id": uuid.uuid4(),
            "data": old.data.model_copy(
                update={"courier": old.data.courier.model_copy(update={"id": uuid.uuid4(), "display_name": "Lan V."})}
            ),
        }
    )
    assert domain.apply(p, DISPATCH_TOPIC, other) == p
    assert p.courier.display_name == "Minh P."


def test_a_final_status_is_final_even_for_a_newer_event():
    s = Story()
    p = project(s, [s.placed(), s.assigned(), s.cancel_confirmed()])
    assert p.status == "cancelled"
    p2 = domain.apply(p, *s.picked_up())  # a buggy producer: picked up after cancelled
    assert p2.status == "cancelled" and p2.location is None


def test_status_never_moves_to_an_earlier_step_of_the_lifecycle():
    s = Story()
    p = project(s, [s.placed(), s.assigned(), s.picked_up()])
    assert domain.apply(p, *s.assigned()).status == "picked_up"


def _random_interleaving(rng: random.Random, orders: list, dispatch: list) -> list:
    """Both streams in their own order, interleaved at random, with redeliveries of old events."""
    out, i, j = [], 0, 0
    while i < len(orders) or j < len(dispatch):
        if j >= len(dispatch) or (i < len(orders) and rng.random() < 0.5):
            out.append(orders[i])
            i += 1
        else:
            out.append(dispatch[j])
            j += 1
        if rng.random() < 0.3:
            out.append(rng.choice(out))  # at-least-once: something seen before comes again
    return out


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_any_interleaving_with_duplicates_gives_the_same_parcel(name):
    rng = random.Random(name)
    s = Story()
    items = [item for _, item in LIFECYCLES[name](s) if item[0] != COURIER_LOCATIONS_TOPIC]
    expected = project(s, items)
    orders = [it for it in items if it[0] == ORDER_TRACKING_TOPIC]
    dispatch = [it for it in items if it[0] == DISPATCH_TOPIC]
    for _ in range(200):
        assert project(s, _random_interleaving(rng, orders, dispatch)) == expected


def test_courier_shown_from_assigned_but_not_after_cancel_or_expiry():
    s = Story()
    placed, assigned = s.placed(), s.assigned()
    assert public_view(project(s, [placed]))["courier"] is None
    view = public_view(project(s, [placed, assigned]))
    assert view["courier"] == {"display_name": "Minh P.", "vehicle": "motorbike", "location": None}
    assert public_view(project(s, [placed, assigned, s.cancel_confirmed()]))["courier"] is None
    e = Story()
    assert public_view(project(e, [e.placed(), e.expired()]))["courier"] is None


# --- locations ----------------------------------------------------------------------


def test_location_only_while_on_its_way_and_only_newer_points():
    s = Story()
    placed, assigned = s.placed(), s.assigned()
    first, second = s.location(20.9541, 107.0611), s.location(20.9552, 107.0533)
    fix1, fix2 = domain.latest_locations([first])[0], domain.latest_locations([second])[0]
    p = project(s, [placed, assigned])
    assert domain.apply_location(p, fix1) == p, "not shown before pickup"
    p = domain.apply(p, *s.picked_up())
    p = domain.apply_location(p, fix2)
    assert (p.location.lat, p.location.lng) == (20.9552, 107.0533)
    assert domain.apply_location(p, fix1) == p, "an older point is stale"
    assert domain.apply_location(p, fix2) == p, "the same point again changes nothing"
    view = public_view(p)
    assert view["courier"]["location"] == {"lat": 20.9552, "lng": 107.0533, "at": view["courier"]["location"]["at"]}
    done = domain.apply(p, *s.delivered())
    assert done.location is None and public_view(done)["courier"]["location"] is None
    assert domain.apply_location(done, replace(fix2, sequence=99)) == done, "none after a final status"


def test_location_of_another_courier_or_an_order_not_carried_is_ignored():
    s = Story()
    p = project(s, [s.placed(), s.assigned(), s.picked_up()])
    fix = domain.latest_locations([s.location(20.9541, 107.0611)])[0]
    assert domain.apply_location(p, replace(fix, courier_id=uuid.uuid4())) == p
    assert domain.apply_location(p, replace(fix, order_ids=())) == p
    assert domain.apply_location(p, fix) != p


def test_moved_by_returns_only_the_parcels_the_points_move():
    on_way, waiting, other = Story(), Story(), Story()
    parcels = {
        s.order_id: project(s, events)
        for s, events in (
            (on_way, [on_way.placed(), on_way.assigned(), on_way.picked_up()]),
            (waiting, [waiting.placed(), waiting.assigned()]),
            (other, [other.placed(), other.assigned(), other.picked_up()]),
        )
    }
    fixes = domain.latest_locations([on_way.location(20.9541, 107.0611), waiting.location(20.95, 107.06)])
    moved = domain.moved_by(parcels, fixes)
    assert [p.order_id for p in moved] == [on_way.order_id]
    assert moved[0] == domain.apply_location(parcels[on_way.order_id], fixes[0])
    assert domain.moved_by(parcels, []) == []


def test_latest_locations_keeps_one_point_per_courier_the_newest():
    a, b = Story(), Story()
    a1, a2, a3 = a.location(20.1, 107.1), a.location(20.2, 107.2), a.location(20.3, 107.3)
    b1 = b.location(20.5, 107.5)
    fixes = {f.courier_id: f for f in domain.latest_locations([a1, a3, b1, a2, a1])}
    assert len(fixes) == 2
    assert (fixes[a.courier_id].lat, fixes[a.courier_id].sequence) == (20.3, 3)
    assert fixes[b.courier_id].lat == 20.5
    assert domain.latest_locations([a.placed()]) == []


def test_a_parcel_picked_up_takes_its_couriers_latest_point():
    s = Story()
    placed, assigned = s.placed(), s.assigned()
    point = domain.latest_locations([s.location(20.9541, 107.0611)])[0]  # consumed before the pickup
    p = project(s, [placed, assigned, s.picked_up()])
    shown = domain.with_courier_point(p, point)
    assert (shown.location.lat, shown.location.sequence) == (20.9541, point.sequence)
    assert domain.with_courier_point(project(s, [placed, assigned]), point).location is None, "not before pickup"
    assert domain.with_courier_point(p, replace(point, courier_id=uuid.uuid4())) == p, "another courier's"
    assert domain.with_courier_point(p, None) == p
    old = replace(point, at=p.timeline[1].at - domain.POINT_TOLERANCE - timedelta(seconds=1))
    assert domain.with_courier_point(p, old) == p, "a point from before the job"
    assert domain.with_courier_point(shown, replace(point, lat=1.0)) == shown, "a parcel with a point keeps it"
    done = domain.apply(shown, *s.delivered())
    assert domain.with_courier_point(done, point) == done


# --- ETA ----------------------------------------------------------------------------


def test_eta_from_the_remaining_distance():
    s = Story(vehicle="bicycle")
    placed, assigned, picked = s.placed(), s.assigned(), s.picked_up()
    assert domain.eta_minutes(project(s, [placed])) == travel_minutes(3900, "motorbike")
    assert domain.eta_minutes(project(s, [placed, assigned])) == travel_minutes(3900, "bicycle")
    p = project(s, [placed, assigned, picked])
    p = domain.apply_location(p, domain.latest_locations([s.location(20.9541, 107.0611)])[0])
    remaining = road_distance_m(20.9541, 107.0611, *DROPOFF)
    assert domain.eta_minutes(p) == travel_minutes(remaining, "bicycle") < travel_minutes(3900, "bicycle")
    assert domain.eta_minutes(domain.apply(p, *s.failed())) is None
    assert domain.eta_minutes(domain.apply(p, *s.delivered())) is None


def test_view_holds_nothing_personal_nor_internal_ids():
    s = Story()
    steps = LIFECYCLES["delivered"](s)
    p = Parcel(order_id=s.order_id)
    for _, (topic, event) in steps:
        if topic == COURIER_LOCATIONS_TOPIC:
            p = domain.apply_location(p, domain.latest_locations([(topic, event)])[0])
        else:
            p = domain.apply(p, topic, event)
        text = str(public_view(p))
        for label, secret in s.secrets().items():
            assert secret.lower() not in text.lower(), label
    assert set(public_view(p)) == {"tracking_code", "status", "timeline", "courier", "eta_minutes"}


def test_well_formed_codes():
    assert domain.well_formed_code("7KQ2M9XH4TBR")
    for bad in ("", "x" * 65, "abc def", "../etc", "ĐƠN123", "a;b", "%00"):
        assert not domain.well_formed_code(bad), bad
