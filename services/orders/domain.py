"""The rules of an order, free of I/O: pricing, codes, cancelling, and how dispatch's
events move an order along.

Dispatch owns the delivery (it decides who carries the parcel and when it is picked up,
delivered or cancelled); orders keeps the merchant's view of it current from dispatch's
events. Everything here is a pure function or a plain dataclass so it can be tested
without a database or a broker.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal
from uuid import UUID

from uuid6 import uuid7

from shared.contract import FINAL_STATUSES
from shared.events import STATUS_AFTER
from shared.geo import road_distance_m, travel_minutes
from shared.inputs import instant_from_text

# --- pricing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tariff:
    """What a delivery costs; every number comes from settings (see settings.OrdersSettings)."""

    base_fare_vnd: int = 15_000
    per_km_vnd: int = 5_000
    # Parcels up to this weight cost no more; every started kilogram above it adds the surcharge.
    free_weight_grams: int = 3_000
    per_extra_kg_vnd: int = 2_500
    # Fees are rounded up to a whole multiple of this (nobody pays 23,417 VND).
    rounding_vnd: int = 1_000


@dataclass(frozen=True)
class Quote:
    fee_vnd: int
    distance_m: int
    eta_minutes: int


def price(tariff: Tariff, *, pickup: tuple[float, float], dropoff: tuple[float, float], weight_grams: int) -> Quote:
    """The one pricing function: quotes and orders both call it, so they always agree."""
    distance_m = road_distance_m(*pickup, *dropoff)
    extra_kg = max(0, math.ceil((weight_grams - tariff.free_weight_grams) / 1000))
    # Integer arithmetic: money never goes through a float.
    distance_fee = -(-tariff.per_km_vnd * distance_m // 1000)  # ceil
    fee = tariff.base_fare_vnd + distance_fee + extra_kg * tariff.per_extra_kg_vnd
    if tariff.rounding_vnd > 1:
        fee = -(-fee // tariff.rounding_vnd) * tariff.rounding_vnd
    return Quote(fee_vnd=fee, distance_m=distance_m, eta_minutes=travel_minutes(distance_m))


# --- ids and codes ----------------------------------------------------------------


def new_order_id() -> UUID:
    """A UUID of version 7 (RFC 9562): the time it was made, to the millisecond, then 74 random
    bits. Every service keys its rows of an order by this id (orders, jobs, offers, parcels,
    inbox positions, event sequences), and each row is written and rewritten within minutes
    of the order: keys in time order keep all of that at the right-hand edge of each index,
    where random (version 4) keys spread it over the whole of every index, so a database of
    many orders had to keep every index in memory (an aged `var/` evicted and wrote buffers
    in its backends, and latency grew). As the standard library's class (orjson writes only
    that; uuid6's UUID is a subclass)."""
    return UUID(int=uuid7().int)


# No 0/O, 1/I/L: a code read out over the phone or copied from a receipt survives.
TRACKING_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
TRACKING_CODE_LENGTH = 12  # 31**12 ~ 2**59: not guessable, even by someone trying millions


def new_tracking_code() -> str:
    return "".join(secrets.choice(TRACKING_ALPHABET) for _ in range(TRACKING_CODE_LENGTH))


def tracking_code_bits() -> float:
    return TRACKING_CODE_LENGTH * math.log2(len(TRACKING_ALPHABET))


# --- the order's state as dispatch's events change it ------------------------------

# A merchant's cancel request: pending, refused by dispatch, or granted (None: never asked).
Cancellation = Literal["requested", "refused", "done"]
# Past these, a cancel cannot be granted: the parcel is with the courier, or the order is over.
NOT_CANCELLABLE = frozenset({"picked_up", "delivery_failed"}) | FINAL_STATUSES


@dataclass(frozen=True)
class Progress:
    """The part of an order that dispatch's events change."""

    status: str
    history: tuple[dict[str, Any], ...]  # ({"status", "at"}, ...) oldest first
    courier: dict[str, Any] | None = None  # {"id", "name", "phone"} once assigned
    cancellation: Cancellation | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


def placed(at: datetime) -> Progress:
    return Progress(status="placed", history=({"status": "placed", "at": at},))


# An offer changes nothing a merchant sees (the order stays placed until a courier accepts):
# the consumer of dispatch's events commits offers unread.
IGNORED_EVENTS = frozenset({"delivery.offered"})


def apply_event(progress: Progress, event_type: str, at: datetime, data: Any) -> Progress:
    """The order after one of dispatch's events (already known to be new and in order).

    A final status is kept whatever comes later: dispatch's state machine makes that
    impossible, and if a bug elsewhere tried, the merchant's record must not flip back.
    """
    if progress.is_final:
        return progress
    new = progress
    if event_type == "delivery.assigned":
        c = data.courier
        new = replace(new, courier={"id": str(c.id), "name": c.name, "phone": c.phone})
    elif event_type == "delivery.cancel_confirmed":
        new = replace(new, cancellation="done")
    elif event_type == "delivery.cancel_refused":
        new = replace(new, cancellation="refused")
    status = STATUS_AFTER.get(event_type)
    if status is not None and status != new.status:
        new = _move_to(new, status, at)
    return new


def _move_to(progress: Progress, status: str, at: datetime) -> Progress:
    history = progress.history
    if all(h["status"] != status for h in history):
        history = (*history, {"status": status, "at": at})
    cancellation = progress.cancellation
    if cancellation == "requested" and status in FINAL_STATUSES and status != "cancelled":
        # Delivered, returned or expired while a cancel was pending: it can no longer happen.
        cancellation = "refused"
    return replace(progress, status=status, history=history, cancellation=cancellation)


def delivered_at(progress: Progress) -> datetime | None:
    """When the order was delivered (its history's entry: dispatch's time of the delivery), or
    None unless it is delivered. Only a delivered order looks through its history."""
    if progress.status != "delivered":
        return None
    for step in progress.history:
        if step["status"] == "delivered":
            at = step["at"]  # a datetime when applied here, text when read back from the database
            return at if isinstance(at, datetime) else datetime.fromisoformat(at)
    return None


class CancelNotAllowed(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"An order that is {status} can no longer be cancelled")
        self.status = status


@dataclass(frozen=True)
class CancelDecision:
    progress: Progress
    ask_dispatch: bool  # False: a request is already pending, nothing new to send


def request_cancel(progress: Progress) -> CancelDecision:
    """The merchant asks to cancel. Dispatch decides; until it answers the order shows
    `cancellation: "requested"`. Asking again while a request is pending changes nothing."""
    if progress.status in NOT_CANCELLABLE:
        raise CancelNotAllowed(progress.status)
    if progress.cancellation == "requested":
        return CancelDecision(progress, ask_dispatch=False)
    return CancelDecision(replace(progress, cancellation="requested"), ask_dispatch=True)


# A delivery code is asked only to deliver a picked-up parcel, so only then can wrong codes
# lock the job: a merchant's clear of the lock is for that status.
UNLOCKABLE = "picked_up"


class UnlockNotAllowed(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"An order that is {status} has no delivery code to unlock (only a picked-up parcel's)")
        self.status = status


def request_code_unlock(progress: Progress) -> None:
    """The merchant asks dispatch to clear the delivery-code lock (the recipient confirmed the
    courier is with them). Raises UnlockNotAllowed unless the parcel is picked up."""
    if progress.status != UNLOCKABLE:
        raise UnlockNotAllowed(progress.status)


# --- list cursors -----------------------------------------------------------------


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    """Where a page of a list ended: the last order's (time, id), the time being what the list
    is in order of (created_at for the orders, delivered_at for the statement's orders)."""

    at: datetime
    id: UUID

    def encode(self) -> str:
        raw = f"{self.at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            when, _, ident = raw.partition("|")
            # Bounded: a hand-made 0001-01-01T00:00:00+14:00 parses, but not for PostgreSQL.
            return cls(at=instant_from_text(when), id=UUID(ident))
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise BadCursor("not a cursor this service gave out") from exc


# --- the statement (cash on delivery, reconciled) ---------------------------------------

VIETNAM = timezone(timedelta(hours=7))  # the merchant's calendar days; no daylight saving time
STATEMENT_MAX_DAYS = 93  # a quarter: three months of 31 days
# A day as the contract writes it; the rest of ISO 8601 (20240506, 2024-W19-1) is refused.
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_FIRST_DAY, _LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # as shared.inputs' instants


class BadRange(ValueError):
    """A statement's day range that cannot be read; `field` names the query parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class DayRange:
    """Calendar days of Vietnam, both ends included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), VIETNAM)

    @property
    def end(self) -> datetime:
        """The start of the day after the last: the range is [start, end)."""
        return datetime.combine(self.last + timedelta(days=1), time(), VIETNAM)


def _day(field: str, text: str) -> date:
    if not _DAY.fullmatch(text):
        raise BadRange(field, "a date YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRange(field, "not a date of the calendar") from None
    if not _FIRST_DAY <= day <= _LAST_DAY:
        raise BadRange(field, f"a date from {_FIRST_DAY} to {_LAST_DAY}")
    return day


def day_range(first: str, last: str) -> DayRange:
    """The statement's `from` and `to`: each a day, in order, at most STATEMENT_MAX_DAYS days."""
    days = DayRange(_day("from", first), _day("to", last))
    if days.last < days.first:
        raise BadRange("to", "before from")
    if (days.last - days.first).days + 1 > STATEMENT_MAX_DAYS:
        raise BadRange("to", f"the range is longer than {STATEMENT_MAX_DAYS} days (both ends included)")
    return days


# --- the service area -------------------------------------------------------------

Ring = tuple[tuple[float, float], ...]  # (lng, lat) corners, GeoJSON's order; closed or not
# A ring as its non-horizontal edges, ready for the ray cast: (lowest lat, highest lat, lng and
# lat of one end, lng per degree of lat along it).
Edges = tuple[tuple[float, float, float, float, float], ...]


class OutsideServiceArea(Exception):
    """Pickup or drop-off (named in `places`) is outside the area the service delivers in."""

    def __init__(self, places: list[str]) -> None:
        super().__init__(" and ".join(places) + " outside the service area")
        self.places = places


@dataclass(frozen=True)
class ServiceArea:
    """Where orders may start and end: GeoJSON polygons (outer ring, then holes), checked with
    an even-odd ray cast over their edges. A few dozen corners: a few microseconds per point,
    no I/O, no library (shapely would do the same with a C extension for one polygon)."""

    polygons: tuple[tuple[Edges, tuple[Edges, ...]], ...]  # (outer ring, holes)
    bbox: tuple[float, float, float, float]  # min lng, min lat, max lng, max lat: most points outside stop here

    @classmethod
    def from_geojson(cls, doc: Any) -> ServiceArea:
        """From a Polygon, a MultiPolygon, or a Feature or FeatureCollection of them; ValueError
        for anything else, or a ring of fewer than 3 corners or with a corner off the globe."""
        polygons = _polygons(doc)
        if not polygons:
            raise ValueError("the service area has no polygon")
        corners = [corner for polygon in polygons for corner in polygon[0]]
        lngs, lats = [c[0] for c in corners], [c[1] for c in corners]
        return cls(
            tuple((_edges(p[0]), tuple(_edges(hole) for hole in p[1:])) for p in polygons),
            (min(lngs), min(lats), max(lngs), max(lats)),
        )

    def contains(self, lat: float, lng: float) -> bool:
        min_lng, min_lat, max_lng, max_lat = self.bbox
        if not (min_lng <= lng <= max_lng and min_lat <= lat <= max_lat):
            return False
        for outer, holes in self.polygons:
            if _in_ring(lng, lat, outer):
                for hole in holes:
                    if _in_ring(lng, lat, hole):
                        break
                else:
                    return True
        return False

    def check(self, pickup: tuple[float, float], dropoff: tuple[float, float]) -> None:
        """Raise OutsideServiceArea naming each (lat, lng) place outside."""
        pickup_in, dropoff_in = self.contains(*pickup), self.contains(*dropoff)
        if not (pickup_in and dropoff_in):
            raise OutsideServiceArea(
                [name for name, inside in (("pickup", pickup_in), ("dropoff", dropoff_in)) if not inside]
            )


def _edges(ring: Ring) -> Edges:
    edges = []
    x1, y1 = ring[-1]
    for x2, y2 in ring:
        if y1 != y2:  # a horizontal edge is never crossed by a horizontal ray
            edges.append((min(y1, y2), max(y1, y2), x1, y1, (x2 - x1) / (y2 - y1)))
        x1, y1 = x2, y2
    return tuple(edges)


def _in_ring(x: float, y: float, edges: Edges) -> bool:
    """Even-odd rule: a ray from (x, y) towards +x crosses the ring's edges an odd number of times."""
    inside = False
    for low, high, x1, y1, dx_dy in edges:
        if low <= y < high and x < x1 + (y - y1) * dx_dy:
            inside = not inside
    return inside


def _polygons(doc: Any) -> list[tuple[Ring, ...]]:  # each: outer ring, then holes
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        return [p for feature in doc.get("features") or [] for p in _polygons(feature)]
    if kind == "Feature":
        return _polygons(doc.get("geometry"))
    if kind == "Polygon":
        return [_polygon(doc.get("coordinates"))]
    if kind == "MultiPolygon":
        return [_polygon(p) for p in doc.get("coordinates") or []]
    raise ValueError(f"not a GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection: {kind!r}")


def _polygon(rings: Any) -> tuple[Ring, ...]:
    if not isinstance(rings, list) or not rings:
        raise ValueError("a polygon is a list of rings")
    polygon = []
    for ring in rings:
        try:
            corners = tuple((float(c[0]), float(c[1])) for c in ring)
        except (TypeError, ValueError, IndexError, KeyError):
            raise ValueError("a corner is [lng, lat]: two numbers") from None
        if len(set(corners)) < 3:
            raise ValueError("a ring needs at least 3 corners")
        if not all(-180 <= lng <= 180 and -90 <= lat <= 90 for lng, lat in corners):
            raise ValueError("a corner is off the globe (GeoJSON is [lng, lat])")
        polygon.append(corners)
    return tuple(polygon)
