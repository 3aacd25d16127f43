"""Dispatch's rules, free of I/O: the job state machine, the cancel saga's decision,
choosing a courier, the delivery-code check, the courier's public name and what flags a
courier (codes guessed across jobs, positions no vehicle reaches).

Job statuses are the order statuses of the contract, plus two of dispatch's own before
`assigned`: `waiting` (nobody holds an offer) and `offered` (one courier holds one). The
order's status is `placed` in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, NamedTuple, get_args

from shared import geo
from shared.contract import FINAL_STATUSES, ORDER_STATUSES, VEHICLES

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


# Tuples, not frozen dataclasses: a matcher's pass builds and ranks some thirty of each for
# every job it weighs, and a frozen dataclass's __init__ costs about three times a tuple's.
class Candidate(NamedTuple):
    """An online courier with free capacity near the pickup, as the lookup found them."""

    courier_id: Any  # comparable: a UUID (ordered by its int, as by its text) or, in tests, a str
    vehicle: str
    lat: float
    lng: float
    load: int
    capacity: int


class RankedCandidate(NamedTuple):
    candidate: Candidate
    distance_m: int  # estimated road distance to the pickup
    travel_s: int  # estimated travel time to the pickup with the courier's vehicle


def _rank(r: RankedCandidate) -> tuple[int, int, Any]:
    return (r.travel_s, r.candidate.load, r.candidate.courier_id)


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
    ranked.sort(key=_rank)
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
    LOCKED = "locked"  # for a while (locked_until)
    HELD = "held"  # until the admin clears it: the job's wrong codes reached the cap


@dataclass(frozen=True)
class CodeLimits:
    """How many delivery codes may be guessed. The code has 10^6 values: a fixed lockout that
    starts afresh for ever would let ~480 guesses a day through; growing lockouts and a cap
    per job bound the guesses on a job to `max_per_job` in all."""

    max_failures: int  # wrong codes in a row before a lockout
    lockout: timedelta  # the first lockout; each next one `growth` times longer ...
    growth: int
    lockout_max: timedelta  # ... up to this
    max_per_job: int  # wrong codes on a job in all: then it is held until the admin clears it


@dataclass(frozen=True)
class CodeState:
    """A job's wrong codes as stored (jobs.code_*)."""

    failures: int = 0  # wrong codes since the last lockout
    total: int = 0  # wrong codes in all (until the admin clears the job)
    lockouts: int = 0
    locked_until: datetime | None = None


@dataclass(frozen=True)
class DeliveryCheck:
    verdict: CodeVerdict
    state: CodeState  # after this attempt

    @property
    def locked_until(self) -> datetime | None:
        return self.state.locked_until


def lockout_length(lockouts: int, limits: CodeLimits) -> timedelta:
    """The `lockouts`-th lockout of a job (1 for the first): 15 min, 1 h, 4 h, ... up to the max."""
    growth: int = limits.growth ** max(0, lockouts - 1)
    return min(limits.lockout_max, limits.lockout * growth)


def code_held(state: CodeState, limits: CodeLimits) -> bool:
    """Whether a job's code can no longer be tried at all until the admin clears it."""
    return state.total >= limits.max_per_job


def check_delivery(
    *,
    code_matches: bool,
    cod_collected_vnd: int,
    cod_amount_vnd: int,
    state: CodeState,
    now: datetime,
    limits: CodeLimits,
) -> DeliveryCheck:
    """Wrong codes are limited per job: after `max_failures` wrong ones in a row, no code is
    checked until the lockout ends (a right code does not get through a lockout either, else
    the lock would tell a guesser nothing); each lockout is longer than the last, and after
    `max_per_job` wrong codes in all the job is held until the admin clears it."""
    if code_held(state, limits):
        return DeliveryCheck(CodeVerdict.HELD, state)
    if state.locked_until is not None and now < state.locked_until:
        return DeliveryCheck(CodeVerdict.LOCKED, state)
    if not code_matches:
        failures, total, lockouts, until = state.failures + 1, state.total + 1, state.lockouts, state.locked_until
        if failures >= limits.max_failures and total < limits.max_per_job:
            lockouts += 1
            failures, until = 0, now + lockout_length(lockouts, limits)
        return DeliveryCheck(CodeVerdict.WRONG_CODE, CodeState(failures, total, lockouts, until))
    if cod_collected_vnd != cod_amount_vnd:
        return DeliveryCheck(CodeVerdict.WRONG_COD, state)
    return DeliveryCheck(CodeVerdict.OK, state)


def attempts_left(state: CodeState, limits: CodeLimits, now: datetime) -> int:
    """Wrong codes the courier may still give before the job locks (0 while it is locked)."""
    if code_held(state, limits) or (state.locked_until is not None and now < state.locked_until):
        return 0
    return min(limits.max_failures - state.failures, limits.max_per_job - state.total)


def courier_code_locked(failures: int, max_failures: int) -> bool:
    """Whether a courier's wrong codes across their jobs (within the window store_couriers
    counts them in) lock them out of deliveries and flag them, until the admin clears it:
    a courier guessing a little on many jobs stays under every job's limit."""
    return failures >= max_failures


def retry_after_s(locked_until: datetime, now: datetime) -> int:
    return max(1, math.ceil((locked_until - now).total_seconds()))


# --- cash on delivery --------------------------------------------------------------------

# The largest hand-in the admin may record (a day of a whole hub's cash is far below it).
MAX_HANDIN_VND = 10**12


class HandinCount(NamedTuple):
    """How many of a courier's oldest deliveries a hand-in settles: `settled` when their cash adds
    up to exactly the amount; None when no run of the oldest does, and `need_more` when the
    deliveries given add up to less (the next ones may still reach it)."""

    settled: int | None
    need_more: bool


def handin_count(cash_oldest_first: Sequence[int], amount_vnd: int) -> HandinCount:
    """A hand-in settles the oldest deliveries first (the cash a courier carries longest): the
    first N whose cash adds up to exactly `amount_vnd`, or none (a part of one delivery's cash
    settles nothing, and an amount matching no run is refused whole)."""
    total = 0
    for n, cash in enumerate(cash_oldest_first, start=1):
        total += cash
        if total == amount_vnd:
            return HandinCount(n, False)
        if total > amount_vnd:
            return HandinCount(None, False)
    return HandinCount(None, True)


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


# --- flags ---------------------------------------------------------------------------------------

# Why a courier was flagged: a flagged courier gets no new offers until the admin clears it.
FlagReason = Literal["impossible_speed", "code_guessing"]
IMPOSSIBLE_SPEED, CODE_GUESSING = get_args(FlagReason)

# Speeds (m/s) no courier on such a vehicle reaches in town, with margin: an electric bicycle
# at 54 km/h, a motorbike at 144, a car at 180, a van at 150. A position further from the
# last one than this speed allows (plus the GPS error, settings.location_jump_slack_m) in the
# time between the two (by the phone's clock) is impossible.
MAX_SPEED_MPS: dict[str, float] = {"bicycle": 15.0, "motorbike": 40.0, "car": 50.0, "van": 42.0}
assert set(MAX_SPEED_MPS) == set(VEHICLES), "a speed limit for every vehicle of the contract"
# Reject or flag: one impossible point is ignored (a cheap phone's GPS glitches now and then;
# the courier is not locked out for it), and only `jump_flag_after` of them in a row flag the
# courier (a sustained jump: a spoofed position, or a wrong point kept before). That point is
# kept then, so the position follows the phone again while the admin looks.


def sustained_jump(jumps: int, flag_after: int) -> bool:
    """Whether a run of `jumps` impossible positions in a row flags the courier (and its last
    position is kept): a point's or a status's, they count in one run."""
    return jumps >= flag_after
