"""What couriers, orders and the clock do to jobs: each function is one transaction's worth
of work on a connection the caller has opened a transaction on, except a courier's own
calls (accept, pick up, deliver, fail, return): those are single statements, each its own
transaction, on a connection outside any (deliver opens one when it needs more). Rules come
from domain.py, SQL from store.py; events leave through the outbox in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from shared import secrets
from shared.events import (
    CancelConfirmed, CancelRefused, CancelRefusedData, CourierInfo, CourierLocation,
    CourierLocationData, DeliveryAssigned, DeliveryAssignedData, DeliveryCodeHash,
    DeliveryDelivered, DeliveryDeliveredData, DeliveryExpired, DeliveryFailed, DeliveryFailedData,
    DeliveryOffered, DeliveryOfferedData, DeliveryPickedUp, DeliveryReturned, DeliveryStepData,
    Envelope, Model, OrderCancelRequested, OrderPlaced,
)
from shared.inbox import Verdict, accept_many
from shared.outbox import add_event, add_events, event_args, event_columns

from . import cells, domain, store
from .cells import Grid, SearchStep
from .settings import DispatchSettings

SOURCE = "dispatch"


class JobNotFound(Exception):
    """Unknown, or not this courier's: both answer 404, so existence does not leak."""


class NotAllowedNow(Exception):
    """The job's status (or the offer's) does not allow this now: 409."""


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


async def _emit(conn: asyncpg.Connection, settings: DispatchSettings, cls: type[Envelope],
                subject: UUID, data: Model) -> Envelope:
    return await add_event(conn, cls, subject=str(subject), data=data, source=SOURCE,
                           topic=settings.topic(cls.topic))


async def _emit_many(conn: asyncpg.Connection, settings: DispatchSettings,
                     events: list[tuple[type[Envelope], UUID, Model]]) -> None:
    """Several events (distinct subjects go out in one statement)."""
    await add_events(conn, [(cls, str(subject), data) for cls, subject, data in events], source=SOURCE,
                     topic=lambda cls: settings.topic(cls.topic))


def grid(settings: DispatchSettings) -> Grid:
    return Grid(settings.h3_resolution, settings.h3_coarse_resolution, settings.search_fine_rings,
                settings.search_max_ring)


# --- couriers --------------------------------------------------------------------------------


async def create_courier(conn: asyncpg.Connection, settings: DispatchSettings, *, name: str, phone: str,
                         vehicle: str) -> tuple[asyncpg.Record, str]:
    """A new courier and their bearer token (shown once: only its hash is stored)."""
    token = secrets.new_secret("ct")
    row = await store.insert_courier(conn, id=uuid4(), name=name, phone=phone, vehicle=vehicle,
                                     secret_hash=secrets.secret_hash(token),
                                     capacity=settings.capacity(vehicle))
    return row, token


async def set_status(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, *,
                     online: bool, lat: float | None, lng: float | None) -> asyncpg.Record:
    """Online or offline. Going offline withdraws the courier's open offers (those orders go to
    the next courier at once) but leaves accepted jobs with them, to finish."""
    if not online:
        offered = await store.open_offer_order_ids(conn, courier_id)
        locked = await store.lock_jobs(conn, offered)  # jobs before the courier: lock order
        still_mine = [oid for oid, j in locked.items()
                      if j["status"] == domain.OFFERED and j["courier_id"] == courier_id]
        await store.reopen_jobs(conn, still_mine, offer_state="withdrawn")
        await store.release_couriers(conn, [courier_id] * len(still_mine))
    cell = grid(settings).cell(lat, lng) if lat is not None and lng is not None else None
    return await store.set_courier_status(conn, courier_id, online=online, lat=lat, lng=lng, cell=cell,
                                          coarse_cell=grid(settings).coarse(cell) if cell is not None else None)


@dataclass(frozen=True)
class Point:
    lat: float
    lng: float
    at: datetime


async def report_locations(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID,
                           points: list[Point]) -> bool:
    """Keep the newest position; publish it if the courier carries an active job and none was
    published for them within the last second. Returns whether an event went out."""
    latest = max(points, key=lambda p: p.at)
    carried = await store.carried_order_ids(conn, courier_id)
    cell = grid(settings).cell(latest.lat, latest.lng)
    published = await store.move_courier(
        conn, courier_id, lat=latest.lat, lng=latest.lng, at=latest.at, cell=cell,
        coarse_cell=grid(settings).coarse(cell), publish_if_carrying=bool(carried))
    if published:
        await add_event(conn, CourierLocation, subject=str(courier_id), source=SOURCE,
                        topic=settings.topic(CourierLocation.topic),
                        data=CourierLocationData(courier_id=courier_id, order_ids=carried, lat=latest.lat,
                                                 lng=latest.lng, at=latest.at))
    return published


# --- a courier's answers and steps ---------------------------------------------------------------


# The common case is one guarded UPDATE (its WHERE holds the rule, and the row lock it takes
# makes concurrent answers wait and re-check); only when it changes nothing do we read the
# job again to say why: 404 (not yours) or 409 (not now).


async def _why_not_offer(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID,
                         job: asyncpg.Record | None) -> Exception:
    """404 if the order was never offered to this courier, else 409 with what became of it."""
    if job is None:
        return JobNotFound()
    if job["status"] == domain.OFFERED and job["courier_id"] == courier_id:
        return NotAllowedNow("The offer has expired")
    state = await store.offer_state(conn, order_id, courier_id)
    if state is None:
        return JobNotFound()
    now = "with another courier" if job["courier_id"] not in (None, courier_id) else job["status"]
    return NotAllowedNow(f"The offer is no longer open (it was {state}; the job is now {now})")


def _event(settings: DispatchSettings, cls: type[Envelope], subject: UUID, data: Model) -> list:
    """The event of a single-statement step (store: EVENT_IF_CHANGED)."""
    return event_args(cls, subject=str(subject), data=data, source=SOURCE, topic=settings.topic(cls.topic))


async def accept_offer(conn: asyncpg.Connection, settings: DispatchSettings, courier: Any,
                       order_id: UUID) -> asyncpg.Record:
    """`courier` has id, name, phone and vehicle (for the assigned event). One statement."""
    info = CourierInfo(id=courier.id, name=courier.name, phone=courier.phone,
                       display_name=domain.display_name(courier.name), vehicle=courier.vehicle)
    job = await store.accept_offer(conn, order_id, courier.id, _event(
        settings, DeliveryAssigned, order_id, DeliveryAssignedData(order_id=order_id, courier=info)))
    if job is None:
        job = await store.job(conn, order_id)
        if job is not None and job["courier_id"] == courier.id and domain.already_done(domain.Action.ACCEPT,
                                                                                        job["status"]):
            return job  # accepted before: a repeat changes nothing
        raise await _why_not_offer(conn, order_id, courier.id, job)
    return job


async def decline_offer(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID,
                        order_id: UUID) -> None:
    """Also allowed for an offer just past its time that the expirer has not closed yet."""
    if not await store.decline_offer(conn, order_id, courier_id):
        raise await _why_not_offer(conn, order_id, courier_id, await store.job(conn, order_id))
    await store.release_couriers(conn, [courier_id])


async def _lock_own_job(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID) -> asyncpg.Record:
    job = await store.lock_job(conn, order_id)
    if job is None or job["courier_id"] != courier_id:
        raise JobNotFound
    return job


def _transition(action: domain.Action, status: str) -> str:
    try:
        return domain.next_status(action, status)
    except domain.TransitionNotAllowed as exc:
        raise NotAllowedNow(str(exc)) from None


async def _advance(conn: asyncpg.Connection, settings: DispatchSettings, action: domain.Action, courier_id: UUID,
                   order_id: UUID, event: tuple[type[Envelope], Model], fail_reason: str | None = None) -> asyncpg.Record:
    """One of the courier's steps with its event, in one statement; a repeat of the step the
    job is already in answers the job and changes nothing."""
    start, end = domain.TRANSITIONS[action]
    job = await store.advance_job(conn, order_id, courier_id, start=start, end=end,
                                  frees_capacity=domain.frees_capacity(start, end),
                                  event=_event(settings, event[0], order_id, event[1]), fail_reason=fail_reason)
    if job is None:
        current = await store.job(conn, order_id)
        if current is None or current["courier_id"] != courier_id:
            raise JobNotFound
        if domain.already_done(action, current["status"]):
            return current
        _transition(action, current["status"])  # raises 409 with the reason
        raise NotAllowedNow(f"Cannot {action.value} the job now")  # it changed meanwhile
    return job


async def pick_up(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID,
                  order_id: UUID) -> asyncpg.Record:
    return await _advance(conn, settings, domain.Action.PICKUP, courier_id, order_id,
                          (DeliveryPickedUp, _step(order_id)))


@dataclass(frozen=True)
class DeliveryOutcome:
    check: domain.DeliveryCheck
    job: asyncpg.Record | None  # the delivered job, when the check passed


# The outcome of a deliver repeated on a delivered job.
REPEATED = domain.DeliveryCheck(domain.CodeVerdict.OK, 0, None)


async def deliver(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, order_id: UUID,
                  *, delivery_code: str, cod_collected_vnd: int) -> DeliveryOutcome:
    """Check the code and the COD amount. The common case (the right code) is a read and one
    statement that delivers only if no other call counted a wrong code meanwhile; anything
    else is decided again under the job's row lock, in a transaction of its own, which a
    wrong code is counted in (committed even though the answer is an error)."""
    job = await store.job(conn, order_id)
    if job is None or job["courier_id"] != courier_id:
        raise JobNotFound
    if domain.already_done(domain.Action.DELIVER, job["status"]):
        return DeliveryOutcome(REPEATED, job)  # delivered before: nothing is checked or counted
    check = _check_code(settings, job, delivery_code, cod_collected_vnd)
    if check.verdict is domain.CodeVerdict.OK and job["status"] == domain.TRANSITIONS[domain.Action.DELIVER][0]:
        delivered = await store.deliver_job(
            conn, order_id, courier_id, cod_collected_vnd=cod_collected_vnd, seen_failures=job["code_failures"],
            seen_locked_until=job["code_locked_until"], event=_event(
                settings, DeliveryDelivered, order_id,
                DeliveryDeliveredData(order_id=order_id, cod_collected_vnd=cod_collected_vnd)))
        if delivered is not None:
            return DeliveryOutcome(check, delivered)
    async with conn.transaction():
        return await _deliver_locked(conn, settings, courier_id, order_id, delivery_code=delivery_code,
                                     cod_collected_vnd=cod_collected_vnd)


def _check_code(settings: DispatchSettings, job: asyncpg.Record, delivery_code: str,
                cod_collected_vnd: int) -> domain.DeliveryCheck:
    stored = DeliveryCodeHash(salt=job["code_salt"], hash=job["code_hash"])
    return domain.check_delivery(
        code_matches=secrets.delivery_code_matches(delivery_code, stored, settings.delivery_code_key),
        cod_collected_vnd=cod_collected_vnd, cod_amount_vnd=job["cod_amount_vnd"],
        failures=job["code_failures"], locked_until=job["code_locked_until"], now=now_utc(),
        max_failures=settings.code_max_failures, lockout=timedelta(seconds=settings.code_lockout_s))


async def _deliver_locked(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, order_id: UUID,
                          *, delivery_code: str, cod_collected_vnd: int) -> DeliveryOutcome:
    job = await _lock_own_job(conn, order_id, courier_id)
    if domain.already_done(domain.Action.DELIVER, job["status"]):
        return DeliveryOutcome(REPEATED, job)  # a concurrent call delivered it
    status = _transition(domain.Action.DELIVER, job["status"])
    check = _check_code(settings, job, delivery_code, cod_collected_vnd)
    if (check.failures, check.locked_until) != (job["code_failures"], job["code_locked_until"]):
        await store.record_code_check(conn, order_id, failures=check.failures, locked_until=check.locked_until)
    if check.verdict is not domain.CodeVerdict.OK:
        return DeliveryOutcome(check, None)
    job = await store.update_job(conn, order_id, status=status, cod_collected_vnd=cod_collected_vnd)
    await store.release_couriers(conn, [courier_id])
    await _emit(conn, settings, DeliveryDelivered, order_id,
                DeliveryDeliveredData(order_id=order_id, cod_collected_vnd=cod_collected_vnd))
    return DeliveryOutcome(check, job)


async def fail_delivery(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID,
                        order_id: UUID, *, reason: str) -> asyncpg.Record:
    return await _advance(conn, settings, domain.Action.FAIL, courier_id, order_id,
                          (DeliveryFailed, DeliveryFailedData(order_id=order_id, reason=reason)), fail_reason=reason)


async def return_parcel(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID,
                        order_id: UUID) -> asyncpg.Record:
    return await _advance(conn, settings, domain.Action.RETURN, courier_id, order_id,
                          (DeliveryReturned, _step(order_id)))


def _step(order_id: UUID) -> Model:
    return DeliveryStepData(order_id=order_id)


# --- events from orders -------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    placed: int  # new jobs
    freed: bool  # a courier's capacity came free (a cancel after an offer or acceptance)


async def apply_order_events(conn: asyncpg.Connection, settings: DispatchSettings, consumer: str,
                             batch: list[tuple[str, Envelope]]) -> Applied:
    """Apply a batch of giao.orders.v1 events in the caller's one transaction: new jobs from
    order.placed, and the cancel saga's answer to order.cancel_requested."""
    placed: list[OrderPlaced] = []
    cancels: list[OrderCancelRequested] = []
    # The inbox judges the whole batch in a few statements (not three per event).
    verdicts = await accept_many(conn, consumer, batch)
    for (_, event), verdict in zip(batch, verdicts):
        if verdict is not Verdict.NEW:
            continue
        if isinstance(event, OrderPlaced):
            placed.append(event)
        elif isinstance(event, OrderCancelRequested):
            cancels.append(event)
    if placed:
        await store.insert_jobs(conn, [_job_row(settings, e) for e in placed])
    freed = await _answer_cancels(conn, settings, cancels) if cancels else False
    return Applied(len(placed), freed)


def _job_row(settings: DispatchSettings, event: OrderPlaced) -> tuple[Any, ...]:
    d = event.data
    cell = grid(settings).cell(d.pickup.lat, d.pickup.lng)
    return (d.order_id, d.tracking_code, d.merchant_id, d.pickup.model_dump(), d.dropoff.model_dump(),
            d.parcel.model_dump(), d.note, d.cod_amount_vnd, d.fee_vnd, d.distance_m,
            d.pickup.lat, d.pickup.lng, cell, grid(settings).coarse(cell),
            d.delivery_code.salt, d.delivery_code.hash, event.occurred_at,
            event.occurred_at + timedelta(seconds=settings.window_s))


async def _answer_cancels(conn: asyncpg.Connection, settings: DispatchSettings,
                          cancels: list[OrderCancelRequested]) -> bool:
    """Answer each cancel request; returns whether a courier's capacity came free."""
    jobs = await store.lock_jobs(conn, sorted({e.data.order_id for e in cancels}))
    status = {oid: j["status"] for oid, j in jobs.items()}
    to_cancel: dict[UUID, str | None] = {}
    freed_couriers: list[UUID] = []
    answers: list[tuple[type[Envelope], UUID, Model]] = []
    for event in cancels:
        oid = event.data.order_id
        if oid not in status:
            # Unknown here (its order.placed never arrived, or was dead-lettered): nothing
            # to stop, so the cancel stands; refusing would leave the order placed forever.
            answers.append((CancelConfirmed, oid, _step(oid)))
            continue
        decision = domain.decide_cancel(status[oid])
        if isinstance(decision, domain.CancelRefused):
            answers.append((CancelRefused, oid, CancelRefusedData(order_id=oid, reason=decision.reason)))
            continue
        if not decision.already_cancelled:
            to_cancel[oid] = event.data.reason
            if decision.frees_courier:
                freed_couriers.append(jobs[oid]["courier_id"])
            status[oid] = domain.CANCELLED
        answers.append((CancelConfirmed, oid, _step(oid)))
    await store.end_jobs(conn, list(to_cancel), status=domain.CANCELLED, reasons=list(to_cancel.values()))
    await store.release_couriers(conn, freed_couriers)
    await _emit_many(conn, settings, answers)
    return bool(freed_couriers)


# --- the matcher ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchResult:
    offered: int
    postponed: int
    claimed: int


# Capacity in a coarse cell can serve the waiting jobs within this many coarse rings of it
# (about 4 km at res 7) at once, whatever their backoff says.
CAPACITY_REACH_RINGS = 2


def capacity_news(available: list, rings: int = CAPACITY_REACH_RINGS) -> tuple[dict[int, datetime], int]:
    """From claim_due_and_capacity's capacity rows: {coarse cell: when capacity last appeared within reach
    of it} and the free units in all."""
    since: dict[int, datetime] = {}
    for row in available:
        for cell in cells.disk(row["coarse_cell"], rings):
            if cell not in since or since[cell] < row["since"]:
                since[cell] = row["since"]
    return since, sum(row["units"] for row in available)


async def match_waiting(conn: asyncpg.Connection, settings: DispatchSettings,
                        batch: int | None = None) -> MatchResult:
    """Offer each due waiting job (up to a batch, `match_batch` unless given, claimed with
    SKIP LOCKED so two instances share the queue) to the best available courier; postpone
    those nobody can take.

    Jobs postponed earlier are tried again, before their backoff ends, when capacity appeared
    near them since they were last tried (a unit given back, a courier online or arriving):
    as many of them as there are free units, oldest first. Every job of the pass is served
    oldest order first, so one that waited is not passed over by a newer one.

    The whole batch moves together, so a pass costs a handful of statements whatever its
    size: one candidate search per widening step for every job still looking, one
    reservation of all chosen couriers, one insert of the offers and one of their events.
    """
    batch = batch or settings.match_batch
    jobs, available = await store.claim_due_and_capacity(conn, batch)
    offers: list[_Offer] = []
    if available:  # else nobody is available anywhere: no search would find anyone
        if available[0]["postponed"]:
            since, units = capacity_news(available)
            jobs += await store.claim_waiting_near_capacity(conn, since, min(batch, units))
            jobs.sort(key=lambda job: job["placed_at"])
        if jobs:
            offers = await _offer_all(conn, settings, jobs, await _search(conn, settings, jobs))
    offered = {o.order_id for o in offers}
    postponed = [(job["order_id"], domain.match_retry_delay(
        job["match_attempts"], settings.match_retry_base_s, settings.match_retry_max_s))
        for job in jobs if job["order_id"] not in offered]
    await store.postpone_jobs(conn, postponed)
    return MatchResult(len(offers), len(postponed), len(jobs))


@dataclass(frozen=True)
class _Found:
    step: SearchStep  # the step whose cells were searched last
    ranked: list[domain.RankedCandidate]


async def _search(conn: asyncpg.Connection, settings: DispatchSettings,
                  jobs: list[asyncpg.Record]) -> dict[UUID, _Found]:
    """The ranked candidates of each job that has any.

    Each job widens step by step until someone is found; then the search must cover everyone
    who could still beat the best one found (a faster vehicle a bit further away, or a
    courier just across the ring's edge), so it looks once more, wider, if it does not.

    The fine steps all look inside the widest fine one: one statement reads it for every job
    (`_nearby`) and each fine step takes its own cells from that, with no round trip of its
    own. A pass in a loaded dispatch used to spend three or four round trips widening, each
    waiting for an event loop busy with couriers. Only the coarse steps, beyond, are read
    step by step (jobs at the same step together)."""
    g = grid(settings)
    plan = g.plan()
    by_id = {job["order_id"]: job for job in jobs}
    nearby = await _nearby(conn, settings, g, plan, jobs)
    looking = {oid: plan[0] for oid in by_id}
    final: set[UUID] = set()  # looking at the covering step: what it finds is the answer
    found: dict[UUID, _Found] = {}
    while looking:
        ranked_by_job = await _weigh(conn, settings, g, nearby,
                                     {oid: (by_id[oid], step) for oid, step in looking.items()})
        widen: dict[UUID, SearchStep] = {}
        for oid, ranked in ranked_by_job.items():
            step = looking[oid]
            if oid in final:
                if ranked:
                    found[oid] = _Found(step, ranked)
                continue
            if not ranked:
                later = plan.index(step) + 1
                if later < len(plan):
                    widen[oid] = plan[later]
                continue
            needed = g.step_covering(domain.reach_radius_m(ranked[0].travel_s))
            if g.covered_m(needed) > g.covered_m(step):
                widen[oid] = needed
                final.add(oid)
            else:
                found[oid] = _Found(step, ranked)
        looking = widen
    return found


async def _nearby(conn: asyncpg.Connection, settings: DispatchSettings, g: Grid, plan: list[SearchStep],
                  jobs: list[asyncpg.Record]) -> dict[UUID, list[asyncpg.Record]]:
    """Each job's available couriers in the widest fine step of the plan, nearest first: what
    every fine step of its search chooses from (one statement for all the jobs)."""
    widest = max((s for s in plan if not s.coarse), key=lambda s: s.rings, default=None)
    if widest is None or not jobs:
        return {}
    results = await store.find_candidates(conn, coarse=False, limit=settings.candidate_limit, searches=[
        store.Search(job["order_id"], job["pickup_lat"], job["pickup_lng"], g.cells(job["pickup_cell"], widest))
        for job in jobs])
    return {job["order_id"]: rows for job, rows in zip(jobs, results)}


async def _weigh(conn: asyncpg.Connection, settings: DispatchSettings, g: Grid,
                 nearby: dict[UUID, list[asyncpg.Record]],
                 searches: dict[UUID, tuple[asyncpg.Record, SearchStep]]) -> dict[UUID, list[domain.RankedCandidate]]:
    """Each search's candidates, ranked: a fine step's from `nearby` (those in its cells), the
    coarse steps' from one statement for all of them."""
    def ranked(job: asyncpg.Record, rows: list[asyncpg.Record]) -> list[domain.RankedCandidate]:
        return domain.rank_candidates(job["pickup_lat"], job["pickup_lng"], [
            domain.Candidate(r["id"], r["vehicle"], r["lat"], r["lng"], r["load"], r["capacity"]) for r in rows])

    weighed: dict[UUID, list[domain.RankedCandidate]] = {}
    coarse = []
    for oid, (job, step) in searches.items():
        if step.coarse:
            coarse.append((oid, job, step))
            continue
        cells_of_step = frozenset(g.cells(job["pickup_cell"], step))
        weighed[oid] = ranked(job, [r for r in nearby.get(oid, ()) if r["cell"] in cells_of_step])
    if coarse:
        results = await store.find_candidates(conn, coarse=True, limit=settings.candidate_limit, searches=[
            store.Search(oid, job["pickup_lat"], job["pickup_lng"], g.cells(job["pickup_cell"], step))
            for oid, job, step in coarse])
        for (oid, job, _), rows in zip(coarse, results):
            weighed[oid] = ranked(job, rows)
    return weighed


@dataclass(frozen=True)
class _Offer:
    order_id: UUID
    choice: domain.RankedCandidate
    found: _Found


# A chosen courier may be taken by another transaction between the search and the
# reservation; the jobs that lose theirs choose again among the rest, this many times.
RESERVATION_ROUNDS = 3


async def _offer_all(conn: asyncpg.Connection, settings: DispatchSettings, jobs: list[asyncpg.Record],
                     found: dict[UUID, _Found]) -> list[_Offer]:
    """Give each job (in the order given) its best candidate with capacity left in this pass;
    each round reserves the chosen couriers and records the offers that got theirs, with
    their events, in one statement (store.offer)."""
    g = grid(settings)
    expires_at = now_utc() + timedelta(seconds=settings.offer_timeout_s)
    pending = [job["order_id"] for job in jobs if job["order_id"] in found]
    chosen_before: set[object] = set()  # a courier is chosen in one round at most: reserved, or not to be had
    offers: list[_Offer] = []
    for _ in range(RESERVATION_ROUNDS):
        units: dict = {}
        chosen: list[_Offer] = []
        for oid in pending:
            for choice in found[oid].ranked:
                c = choice.candidate
                if c.courier_id not in chosen_before and c.capacity - c.load - units.get(c.courier_id, 0) > 0:
                    units[c.courier_id] = units.get(c.courier_id, 0) + 1
                    chosen.append(_Offer(oid, choice, found[oid]))
                    break
        if not chosen:
            break
        nth: dict = {}
        rows = []
        for o in chosen:
            courier = o.choice.candidate.courier_id
            rows.append((o.order_id, courier, expires_at, o.choice.distance_m, o.choice.travel_s,
                         nth.setdefault(courier, 0), len(o.found.ranked), o.found.step.rings,
                         g.resolution(o.found.step)))
            nth[courier] += 1
        events = event_columns(
            [(DeliveryOffered, str(o.order_id), DeliveryOfferedData(
                order_id=o.order_id, courier_id=o.choice.candidate.courier_id, expires_at=expires_at))
             for o in chosen], source=SOURCE, topic=lambda cls: settings.topic(cls.topic))
        reserved = await store.offer(conn, rows, events)
        chosen_before |= set(units)
        offers += [o for o in chosen if o.choice.candidate.courier_id in reserved]
        pending = [o.order_id for o in chosen if o.choice.candidate.courier_id not in reserved]
        if not pending:
            break
    return offers


# --- the expirer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryResult:
    orders_expired: int
    offers_expired: int


async def expire_due(conn: asyncpg.Connection, settings: DispatchSettings, limit: int = 500) -> ExpiryResult:
    """Orders past the dispatch window become `expired` (an open offer is withdrawn); offers
    past their time close and their orders go back to the matcher. Jobs are claimed with
    SKIP LOCKED (never waiting behind a courier's answer), couriers released in id order."""
    late = await store.claim_past_deadline(conn, limit)
    late_ids = [r["order_id"] for r in late]
    await store.end_jobs(conn, late_ids, status=domain.EXPIRED)
    stale = await store.claim_expired_offers(conn, limit)
    stale_ids = [r["order_id"] for r in stale]
    await store.reopen_jobs(conn, stale_ids, offer_state="expired")
    await store.release_couriers(conn, [r["courier_id"] for r in late if r["status"] == domain.OFFERED]
                                 + [r["courier_id"] for r in stale])
    await _emit_many(conn, settings, [(DeliveryExpired, oid, _step(oid)) for oid in late_ids])
    return ExpiryResult(len(late_ids), len(stale_ids))
