"""The tracking projection: how events become what a customer sees. No I/O here.

A `Parcel` is the read model of one order, keyed by order id (the subject of both the
orders and the dispatch topic). Rules:

- Order-proof. Dispatch events may be consumed before `order.trackable` (another topic, another
  partition), so a parcel can exist without its tracking code; `order.trackable` merges into it
  later and never moves the status back. Within a topic, events apply only if their
  sequence is higher than the last applied one of that topic (duplicates and stale events
  change nothing), and a status never moves back in the lifecycle or out of a final status.
- Private. The parcel keeps nothing personal: no names, phones, addresses or delivery code.
  Tracking never even reads them: it learns of new orders from `order.trackable` on
  giao.order-tracking.v1, and Kafka refuses it giao.orders.v1 (shared.kafka_acls).
  The dropoff point (lat/lng) and the pickup-to-dropoff distance are kept for the ETA only
  and never shown. Of the courier it keeps the id (internal, to match location pings),
  the public short name and the vehicle.
- Location. Shown only while the parcel is on its way to the recipient: status `picked_up`.
  Before pickup the courier's position says more about where the sender is than about the
  parcel, and after a final status there is nothing left to follow. Only a newer point of
  the courier's stream replaces the shown one; a parcel that becomes picked_up takes the
  courier's latest point at once (its ping may have been consumed before the pickup).
- Courier. Shown from `assigned` on, except after `cancelled` or `expired`, when no courier
  has the parcel any more.
- ETA. Minutes for the remaining distance at the vehicle's speed (shared.geo): from the
  courier's latest location to the dropoff while `picked_up`; the pickup-to-dropoff
  distance before that (a lower bound: the wait for pickup is not known); none once the
  delivery failed or the status is final.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from services.tracking.messages import MESSAGES
from shared.contract import FINAL_STATUSES, Vehicle
from shared.events import (
    COURIER_LOCATIONS_TOPIC,
    DISPATCH_TOPIC,
    ORDER_TRACKING_TOPIC,
    STATUS_AFTER,
    CourierLocation,
    DeliveryAssigned,
    Envelope,
    OrderData,
    OrderTrackable,
)
from shared.geo import road_distance_m, travel_minutes

# The lifecycle in its one order; the timeline is sorted by it and a status never moves to
# an earlier rank (each possible path of the contract climbs it).
LIFECYCLE = ("placed", "assigned", "picked_up", "delivery_failed", "delivered", "returned", "cancelled", "expired")
_RANK = {
    "placed": 0,
    "assigned": 1,
    "picked_up": 2,
    "delivery_failed": 3,
    "delivered": 4,
    "returned": 4,
    "cancelled": 4,
    "expired": 4,
}
_ORDER = {status: i for i, status in enumerate(LIFECYCLE)}

# The timeline's texts (the API's `text` of each step): the page's message table, written once.
TIMELINE_TEXT: dict[str, str] = MESSAGES["steps"]

ON_ITS_WAY = frozenset({"picked_up"})  # the statuses that show the courier's location
NO_COURIER = frozenset({"placed", "cancelled", "expired"})  # statuses that show no courier
DEFAULT_VEHICLE: Vehicle = "motorbike"


@dataclass(frozen=True)
class Step:
    status: str
    at: datetime


@dataclass(frozen=True)
class Courier:
    id: UUID  # internal: matches location pings, never shown
    display_name: str
    vehicle: str


@dataclass(frozen=True)
class Location:
    lat: float
    lng: float
    at: datetime
    sequence: int  # of the courier's location stream, to refuse a stale point


@dataclass(frozen=True)
class Point:
    lat: float
    lng: float


@dataclass(frozen=True)
class Parcel:
    order_id: UUID
    tracking_code: str | None = None  # None until order.trackable is consumed
    status: str | None = None  # None while only non-status events are known
    timeline: tuple[Step, ...] = ()
    courier: Courier | None = None
    dropoff: Point | None = None  # for the ETA only
    distance_m: int | None = None  # pickup to dropoff along streets, for the ETA only
    location: Location | None = None
    orders_sequence: int = 0  # last applied sequence of giao.order-tracking.v1 (orders') for this order
    dispatch_sequence: int = 0  # last applied sequence of giao.dispatch.v1 for this order
    version: int = 0  # the stored row's write count (set by the store, not by these rules)

    @property
    def visible(self) -> bool:
        """Customers can find it: its tracking code is known."""
        return self.tracking_code is not None and self.status is not None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


def is_final(status: str | None) -> bool:
    return status in FINAL_STATUSES


# --- applying events ----------------------------------------------------------------


# Event types that change no parcel: the status consumer commits them unread.
IRRELEVANT_TYPES = frozenset(t for t, status in STATUS_AFTER.items() if status is None)


def relevant(topic: str, event: Envelope) -> bool:
    """Does this event change a parcel? (Offers, cancel requests and refusals do not.)"""
    return topic in (ORDER_TRACKING_TOPIC, DISPATCH_TOPIC) and STATUS_AFTER.get(event.type) is not None


def order_id_of(event: Envelope) -> UUID:
    """The order a status event is about (every `relevant` event is about one)."""
    if not isinstance(event.data, OrderData):
        raise ValueError(f"{event.type} is not about one order")
    return event.data.order_id


def apply(parcel: Parcel, topic: str, event: Envelope) -> Parcel:
    """The parcel after one event of its order. Duplicates and stale events return it unchanged."""
    if topic == ORDER_TRACKING_TOPIC:
        if event.sequence <= parcel.orders_sequence:
            return parcel
        parcel = replace(parcel, orders_sequence=event.sequence)
        if isinstance(event, OrderTrackable):
            parcel = _placed(parcel, event)
        return parcel
    if topic == DISPATCH_TOPIC:
        if event.sequence <= parcel.dispatch_sequence:
            return parcel
        parcel = replace(parcel, dispatch_sequence=event.sequence)
        if isinstance(event, DeliveryAssigned) and not parcel.final:
            info = event.data.courier
            parcel = replace(parcel, courier=Courier(info.id, info.display_name, info.vehicle))
        status = STATUS_AFTER.get(event.type)
        if status is not None:
            parcel = _move(parcel, status, event.occurred_at)
        return parcel
    return parcel


def apply_all(parcel: Parcel, events: Iterable[tuple[str, Envelope]]) -> Parcel:
    for topic, event in events:
        parcel = apply(parcel, topic, event)
    return parcel


def _placed(parcel: Parcel, event: OrderTrackable) -> Parcel:
    data = event.data
    parcel = replace(
        parcel,
        tracking_code=data.tracking_code,
        dropoff=Point(data.dropoff.lat, data.dropoff.lng),
        distance_m=data.distance_m,
    )
    # Dispatch may be ahead: then "placed" joins the timeline without moving the status.
    return _move(parcel, "placed", event.occurred_at)


def _move(parcel: Parcel, status: str, at: datetime) -> Parcel:
    timeline = parcel.timeline
    if all(step.status != status for step in timeline):
        timeline = tuple(sorted((*timeline, Step(status, at)), key=lambda s: _ORDER[s.status]))
    current = parcel.status
    moves = current is None or (not is_final(current) and _RANK[status] >= _RANK[current])
    new_status = status if moves else current
    location = parcel.location if new_status in ON_ITS_WAY else None
    return replace(parcel, status=new_status, timeline=timeline, location=location)


# --- locations ----------------------------------------------------------------------


@dataclass(frozen=True)
class LocationFix:
    """The latest point of one courier in a batch, for each order the courier carries."""

    courier_id: UUID
    order_ids: tuple[UUID, ...]
    lat: float
    lng: float
    at: datetime
    sequence: int


def latest_locations(events: Iterable[tuple[str, Envelope]]) -> list[LocationFix]:
    """One fix per courier: the point with the highest sequence in the batch."""
    latest: dict[UUID, CourierLocation] = {}
    for topic, event in events:
        if topic != COURIER_LOCATIONS_TOPIC or not isinstance(event, CourierLocation):
            continue
        seen = latest.get(event.data.courier_id)
        if seen is None or event.sequence > seen.sequence:
            latest[event.data.courier_id] = event
    return [
        LocationFix(e.data.courier_id, tuple(e.data.order_ids), e.data.lat, e.data.lng, e.data.at, e.sequence)
        for e in latest.values()
    ]


def apply_location(parcel: Parcel, fix: LocationFix) -> Parcel:
    """The parcel after one courier's point: moved only if on its way with this courier, and
    only to a newer point of the courier's stream."""
    if (
        parcel.status not in ON_ITS_WAY
        or parcel.courier is None
        or parcel.courier.id != fix.courier_id
        or parcel.order_id not in fix.order_ids
        or (parcel.location is not None and parcel.location.sequence >= fix.sequence)
    ):
        return parcel
    return replace(parcel, location=Location(fix.lat, fix.lng, fix.at, fix.sequence))


def moved_by(parcels: dict[UUID, Parcel], fixes: Iterable[LocationFix]) -> list[Parcel]:
    """The parcels that the batch's points move (apply_location), as they are after them."""
    after = dict(parcels)
    for fix in fixes:
        for order_id in fix.order_ids:
            parcel = after.get(order_id)
            if parcel is not None:
                after[order_id] = apply_location(parcel, fix)
    return [parcel for order_id, parcel in after.items() if parcel is not parcels[order_id]]


# A point sent this long before the courier accepted the parcel belongs to an earlier job.
POINT_TOLERANCE = timedelta(seconds=60)


def with_courier_point(parcel: Parcel, point: LocationFix | None) -> Parcel:
    """A parcel on its way without a location takes its courier's latest known point.

    Pings and status changes travel on different topics: the courier's first ping after the
    pickup may be consumed before the pickup itself, and would otherwise be lost until the
    next one. Only a point of this parcel's courier, sent since the job was accepted, counts.
    """
    if (
        point is None
        or parcel.location is not None
        or parcel.status not in ON_ITS_WAY
        or parcel.courier is None
        or parcel.courier.id != point.courier_id
    ):
        return parcel
    accepted = [s.at for s in parcel.timeline if s.status in ("assigned", "picked_up")]
    if not accepted or point.at < min(accepted) - POINT_TOLERANCE:
        return parcel
    return replace(parcel, location=Location(point.lat, point.lng, point.at, point.sequence))


# --- what a customer sees -----------------------------------------------------------


def eta_minutes(parcel: Parcel) -> int | None:
    status = parcel.status
    if status is None or status == "delivery_failed" or is_final(status):
        return None
    vehicle = parcel.courier.vehicle if parcel.courier else DEFAULT_VEHICLE
    if status in ON_ITS_WAY and parcel.location is not None and parcel.dropoff is not None:
        remaining = road_distance_m(parcel.location.lat, parcel.location.lng, parcel.dropoff.lat, parcel.dropoff.lng)
        return travel_minutes(remaining, vehicle)
    if parcel.distance_m is not None:
        return travel_minutes(parcel.distance_m, vehicle)
    return None


def public_view(parcel: Parcel) -> dict[str, Any]:
    """The answer of GET /v1/tracking/{code} and each SSE event: only what a stranger may see."""
    courier = None
    if parcel.courier is not None and parcel.status not in NO_COURIER:
        location = None
        if parcel.status in ON_ITS_WAY and parcel.location is not None:
            location = {"lat": parcel.location.lat, "lng": parcel.location.lng, "at": _rfc3339(parcel.location.at)}
        courier = {"display_name": parcel.courier.display_name, "vehicle": parcel.courier.vehicle, "location": location}
    return {
        "tracking_code": parcel.tracking_code,
        "status": parcel.status,
        "timeline": [
            {"status": s.status, "at": _rfc3339(s.at), "text": TIMELINE_TEXT[s.status]} for s in parcel.timeline
        ],
        "courier": courier,
        "eta_minutes": eta_minutes(parcel),
    }


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


# A parcel that exists nowhere: unknown codes are answered after the same work as known ones.
DECOY = Parcel(
    order_id=UUID(int=0),
    tracking_code="0" * 12,
    status="placed",
    timeline=(Step("placed", datetime.fromisoformat("2000-01-01T00:00:00+00:00")),),
    distance_m=1000,
)


# --- tracking codes -----------------------------------------------------------------

MAX_CODE_LENGTH = 64
_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def well_formed_code(code: str) -> bool:
    """Could this be a tracking code at all? (Anything else is simply not found.)"""
    return 1 <= len(code) <= MAX_CODE_LENGTH and set(code) <= _CODE_CHARS
