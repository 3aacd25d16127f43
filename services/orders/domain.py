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
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

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


# --- codes ------------------------------------------------------------------------

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


# --- list cursors -----------------------------------------------------------------


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    """Where a page of the newest-first list ended: the last order's (created_at, id)."""

    created_at: datetime
    id: UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            when, _, ident = raw.partition("|")
            # Bounded: a hand-made 0001-01-01T00:00:00+14:00 parses, but not for PostgreSQL.
            return cls(created_at=instant_from_text(when), id=UUID(ident))
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise BadCursor("not a cursor this service gave out") from exc
