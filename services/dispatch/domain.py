"""Dispatch's rules, free of I/O: the job state machine, the cancel saga's decision,
choosing a courier, the delivery-code check and the courier's public name.

Job statuses are the order statuses of the contract, plus two of dispatch's own before
`assigned`: `waiting` (nobody holds an offer) and `offered` (one courier holds one). The
order's status is `placed` in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, get_args

from shared import geo
from shared.contract import FINAL_STATUSES, ORDER_STATUSES

WAITING, OFFERED, ASSIGNED, PICKED_UP = "waiting", "offered", "assigned", "picked_up"
DELIVERED, DELIVERY_FAILED, RETURNED = "delivered", "delivery_failed", "returned"
CANCELLED, EXPIRED = "cancelled", "expired"

# The contract's order statuses, with `placed` split in two (see above).
JOB_STATUSES: tuple[str, ...] = (WAITING, OFFERED, *(s for s in ORDER_STATUSES if s != "placed"))
FINAL = FINAL_STATUSES
# Statuses in which the job takes one unit of its courier's capacity (in this order in SQL,
# where the partial index of a courier's active jobs lists them the same way).
HOLDS_CAPACITY: tuple[str, ...] = (OFFERED, ASSIGNED, PICKED_UP, DELIVERY_FAILED)
# Statuses in which the courier holding the job sees the recipient (name, phone, street
# address, exact point) and the note: once they accepted it. An offer shows only the area.
SHOWS_RECIPIENT = frozenset({ASSIGNED, PICKED_UP, DELIVERY_FAILED, DELIVERED, RETURNED})
# Jobs whose courier's position is public (tracking shows it "while the parcel is on its way").
ON_ITS_WAY: tuple[str, ...] = (ASSIGNED, PICKED_UP)
# Statuses a job can be cancelled in (before pickup), and those the dispatch window ends.
CANCELLABLE: tuple[str, ...] = (WAITING, OFFERED, ASSIGNED)
NOT_YET_ACCEPTED: tuple[str, ...] = (WAITING, OFFERED)

# An offer: open until answered, expired or withdrawn (the courier went offline, or the
# order was cancelled or expired).
OfferState = Literal["open", "accepted", "declined", "expired", "withdrawn"]
OFFER_OPEN, OFFER_ACCEPTED, OFFER_DECLINED, OFFER_EXPIRED, OFFER_WITHDRAWN = get_args(OfferState)
# Offers that count as the order's one live offer (a partial unique index holds them).
LIVE_OFFER: tuple[str, ...] = (OFFER_OPEN, OFFER_ACCEPTED)


class Action(StrEnum):
    ACCEPT = "accept"
    PICKUP = "pickup"
    DELIVER = "deliver"
    FAIL = "fail"
    RETURN = "return"


# action -> (the status it starts from, the status it leads to)
TRANSITIONS: dict[Action, tuple[str, str]] = {
    Action.ACCEPT: (OFFERED, ASSIGNED),
    Action.PICKUP: (ASSIGNED, PICKED_UP),
    Action.DELIVER: (PICKED_UP, DELIVERED),
    Action.FAIL: (PICKED_UP, DELIVERY_FAILED),
    Action.RETURN: (DELIVERY_FAILED, RETURNED),
}


class TransitionNotAllowed(Exception):
    def __init__(self, action: Action, status: str) -> None:
        super().__init__(f"Cannot {action.value} a job that is {status}")
        self.action, self.status = action, status


def next_status(action: Action, status: str) -> str:
    """The status after `action`; TransitionNotAllowed if the current status does not allow it."""
    start, end = TRANSITIONS[action]
    if status != start:
        raise TransitionNotAllowed(action, status)
    return end


def already_done(action: Action, status: str) -> bool:
    """Whether a job in `status` is where `action` leads: the courier's app replays steps it
    queued while offline, so repeating one is answered with the job, changing nothing."""
    return TRANSITIONS[action][1] == status


def frees_capacity(old: str, new: str) -> bool:
    """Whether going from `old` to `new` gives the courier a unit of capacity back."""
    return old in HOLDS_CAPACITY and new not in HOLDS_CAPACITY


# --- the cancel saga -------------------------------------------------------------------


@dataclass(frozen=True)
class CancelConfirmed:
    frees_courier: bool  # an offer or an accepted job gave its capacity back
    already_cancelled: bool = False  # a repeated request: answer again, change nothing


@dataclass(frozen=True)
class CancelRefused:
    reason: str


def decide_cancel(status: str) -> CancelConfirmed | CancelRefused:
    """Before pickup the job is cancelled; once the courier has the parcel it goes on."""
    if status in CANCELLABLE:
        return CancelConfirmed(frees_courier=status in HOLDS_CAPACITY)
    if status == CANCELLED:
        return CancelConfirmed(frees_courier=False, already_cancelled=True)
    if status in HOLDS_CAPACITY:  # the parcel is with the courier
        return CancelRefused("The courier has already picked up the parcel")
    return CancelRefused(f"The delivery is already {status}")


# --- choosing a courier ------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An online courier with free capacity near the pickup, as the lookup found them."""

    courier_id: object
    vehicle: str
    lat: float
    lng: float
    load: int
    capacity: int


@dataclass(frozen=True)
class RankedCandidate:
    candidate: Candidate
    distance_m: int  # estimated road distance to the pickup
    travel_s: int  # estimated travel time to the pickup with the courier's vehicle


def rank_candidates(pickup_lat: float, pickup_lng: float, candidates: list[Candidate]) -> list[RankedCandidate]:
    """Best first: the shortest travel estimate to the pickup, then the lighter load
    (spreads work), then the courier id (a stable order, so ties do not flap).

    Candidates without free capacity are left out.
    """
    ranked = []
    for c in candidates:
        if c.load >= c.capacity:
            continue
        distance = geo.road_distance_m(c.lat, c.lng, pickup_lat, pickup_lng)
        ranked.append(RankedCandidate(c, distance, round(geo.travel_seconds(distance, c.vehicle))))
    ranked.sort(key=lambda r: (r.travel_s, r.candidate.load, str(r.candidate.courier_id)))
    return ranked


def ring_steps(max_ring: int) -> list[int]:
    """How far (in H3 rings) the candidate search widens, one step at a time: 1, 2, 4, 8 ...

    Doubling keeps the number of lookups per order logarithmic in the search radius.
    """
    steps, k = [], 1
    while k < max_ring:
        steps.append(k)
        k *= 2
    steps.append(max_ring)
    return steps


def reach_radius_m(travel_s: float) -> float:
    """How far (straight line) a courier may be and still reach the pickup within `travel_s`:
    anyone further away cannot beat a courier with that travel estimate, whatever their vehicle."""
    return travel_s * max(geo.SPEED_MPS.values()) / geo.ROAD_FACTOR


def match_retry_delay(attempts: int, base_s: float, max_s: float) -> float:
    """Seconds until a waiting job nobody could take is looked at again (capped backoff)."""
    return min(max_s, base_s * (1 << min(attempts, 20)))


# --- delivery -----------------------------------------------------------------------------


class CodeVerdict(StrEnum):
    OK = "ok"
    WRONG_CODE = "wrong_code"
    WRONG_COD = "wrong_cod"
    LOCKED = "locked"


@dataclass(frozen=True)
class DeliveryCheck:
    verdict: CodeVerdict
    failures: int  # wrong codes counted since the last lockout, after this attempt
    locked_until: datetime | None


def check_delivery(
    *,
    code_matches: bool,
    cod_collected_vnd: int,
    cod_amount_vnd: int,
    failures: int,
    locked_until: datetime | None,
    now: datetime,
    max_failures: int,
    lockout: timedelta,
) -> DeliveryCheck:
    """Wrong codes are limited per job: after `max_failures` wrong ones in a row, no code is
    checked until the lockout ends (so 10^6 codes cannot be tried; a right code does not
    get through a lockout either, else the lock would tell a guesser nothing)."""
    if locked_until is not None and now < locked_until:
        return DeliveryCheck(CodeVerdict.LOCKED, failures, locked_until)
    if locked_until is not None:  # the lockout is over: a fresh allowance
        failures, locked_until = 0, None
    if not code_matches:
        failures += 1
        if failures >= max_failures:
            return DeliveryCheck(CodeVerdict.WRONG_CODE, 0, now + lockout)
        return DeliveryCheck(CodeVerdict.WRONG_CODE, failures, None)
    if cod_collected_vnd != cod_amount_vnd:
        return DeliveryCheck(CodeVerdict.WRONG_COD, failures, None)
    return DeliveryCheck(CodeVerdict.OK, 0, None)


def retry_after_s(locked_until: datetime, now: datetime) -> int:
    return max(1, math.ceil((locked_until - now).total_seconds()))


# --- couriers --------------------------------------------------------------------------------


def display_name(full_name: str) -> str:
    """The public short name: given name and the family name's initial.

    Vietnamese names are written "Family Middle Given": "Trần Văn Minh" -> "Minh T.".
    """
    parts = full_name.split()
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return f"{parts[-1]} {parts[0][0].upper()}."


def shows_recipient(status: str) -> bool:
    """Whether the courier holding a job in `status` may see who and where it goes to."""
    return status in SHOWS_RECIPIENT


# An offer's drop-off point, rounded to this many decimals (0.01 degree: about 1 km).
AREA_DECIMALS = 2


@dataclass(frozen=True)
class Area:
    area: str
    lat: float
    lng: float


def dropoff_area(address: str, lat: float, lng: float) -> Area:
    """Where a job goes, without the street: the address without its first comma-separated
    part ("45 Trần Hưng Đạo, Bãi Cháy, Hạ Long" -> "Bãi Cháy, Hạ Long"; an address of one
    part gives "", as it may be the street itself) and the point rounded to about 1 km."""
    _, comma, rest = address.partition(",")
    return Area(rest.strip() if comma else "", round(lat, AREA_DECIMALS), round(lng, AREA_DECIMALS))


def location_is_plausible(at: datetime, now: datetime, clock_skew: timedelta) -> bool:
    """A reported position may not be from the future (beyond the phones' clock skew)."""
    return at <= now + clock_skew
