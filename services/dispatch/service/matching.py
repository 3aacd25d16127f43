"""Offering waiting jobs to couriers: a matcher pass claims the due jobs (and those near new
capacity), searches each one's nearest available couriers, ranks them (domain.rank_candidates)
and writes the offers. matcher.py runs the passes; the orders consumer runs one too, in its
own transaction, so a new order is usually offered before the loop hears of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from shared.events import DeliveryOffered, DeliveryOfferedData
from shared.outbox import event_columns

from .. import cells, domain, store_matching
from ..cells import Grid, SearchStep
from ..settings import DispatchSettings
from .common import SOURCE, grid, now_utc


@dataclass(frozen=True)
class MatchResult:
    offered: int
    postponed: int
    claimed: int
    # Jobs wait for want of a courier (postponed by this pass or before), or may: nobody was
    # available to tell.
    waiting_for_capacity: bool


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


async def match_waiting(conn: asyncpg.Connection, settings: DispatchSettings, batch: int | None = None) -> MatchResult:
    """Offer each due waiting job (up to a batch, `match_batch` unless given, claimed with
    SKIP LOCKED so two instances share the queue) to the best available courier; postpone
    those nobody can take.

    Jobs postponed earlier are tried again, before their backoff ends, when capacity appeared
    near them since they were last tried (a unit given back, a courier online or arriving):
    as many of them as there are free units, oldest first. Every job of the pass is served
    oldest order first, so one that waited is not passed over by a newer one.

    The whole batch moves together, so a pass costs a handful of statements whatever its
    size: one candidate search per widening step for every job still looking, one
    postponement of the jobs nobody can take, and last, before the commit, one statement
    that reserves the chosen couriers and writes their offers, events and NOTIFY (_offer_all).
    """
    batch = batch or settings.match_batch
    jobs, available = await store_matching.claim_due_and_capacity(conn, batch)
    if not available:  # nobody is available anywhere: no search would find anyone
        await _postpone(conn, settings, jobs)
        return MatchResult(0, len(jobs), len(jobs), True)
    if available[0]["postponed"]:
        since, units = capacity_news(available)
        jobs += await store_matching.claim_waiting_near_capacity(conn, since, min(batch, units))
        jobs.sort(key=lambda job: job.placed_at)
    offers = await _offer_all(conn, settings, jobs, await search(conn, settings, jobs)) if jobs else []
    postponed = len(jobs) - len(offers)
    return MatchResult(len(offers), postponed, len(jobs), bool(postponed) or available[0]["postponed"])


async def _postpone(
    conn: asyncpg.Connection, settings: DispatchSettings, jobs: list[store_matching.WaitingJob]
) -> None:
    """Nobody could take these jobs now: each is due again after its backoff."""
    await store_matching.postpone_jobs(
        conn,
        [
            (
                job.order_id,
                domain.match_retry_delay(job.match_attempts, settings.match_retry_base_s, settings.match_retry_max_s),
            )
            for job in jobs
        ],
    )


@dataclass(frozen=True)
class _Found:
    step: SearchStep  # the step whose cells were searched last
    ranked: list[domain.RankedCandidate]


async def search(
    conn: asyncpg.Connection, settings: DispatchSettings, jobs: list[store_matching.WaitingJob]
) -> dict[UUID, _Found]:
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
    by_id = {job.order_id: job for job in jobs}
    nearby = await _nearby(conn, settings, g, plan, jobs)
    looking = {oid: plan[0] for oid in by_id}
    final: set[UUID] = set()  # looking at the covering step: what it finds is the answer
    found: dict[UUID, _Found] = {}
    while looking:
        ranked_by_job = await _weigh(
            conn, settings, g, nearby, {oid: (by_id[oid], step) for oid, step in looking.items()}
        )
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


async def _nearby(
    conn: asyncpg.Connection,
    settings: DispatchSettings,
    g: Grid,
    plan: list[SearchStep],
    jobs: list[store_matching.WaitingJob],
) -> dict[UUID, list[asyncpg.Record]]:
    """Each job's available couriers in the widest fine step of the plan, nearest first: what
    every fine step of its search chooses from (one statement for all the jobs)."""
    widest = max((s for s in plan if not s.coarse), key=lambda s: s.rings, default=None)
    if widest is None or not jobs:
        return {}
    results = await store_matching.find_candidates(
        conn,
        coarse=False,
        limit=settings.candidate_limit,
        searches=[
            store_matching.Search(job.order_id, job.pickup_lat, job.pickup_lng, g.cells(job.pickup_cell, widest))
            for job in jobs
        ],
    )
    return {job.order_id: rows for job, rows in zip(jobs, results, strict=True)}


async def _weigh(
    conn: asyncpg.Connection,
    settings: DispatchSettings,
    g: Grid,
    nearby: dict[UUID, list[asyncpg.Record]],
    searches: dict[UUID, tuple[store_matching.WaitingJob, SearchStep]],
) -> dict[UUID, list[domain.RankedCandidate]]:
    """Each search's candidates, ranked: a fine step's from `nearby` (those in its cells), the
    coarse steps' from one statement for all of them."""

    def ranked(job: store_matching.WaitingJob, rows: list[asyncpg.Record]) -> list[domain.RankedCandidate]:
        return domain.rank_candidates(
            job.pickup_lat,
            job.pickup_lng,
            [domain.Candidate(r["id"], r["vehicle"], r["lat"], r["lng"], r["load"], r["capacity"]) for r in rows],
        )

    weighed: dict[UUID, list[domain.RankedCandidate]] = {}
    coarse = []
    for oid, (job, step) in searches.items():
        if step.coarse:
            coarse.append((oid, job, step))
            continue
        cells_of_step = frozenset(g.cells(job.pickup_cell, step))
        weighed[oid] = ranked(job, [r for r in nearby.get(oid, ()) if r["cell"] in cells_of_step])
    if coarse:
        results = await store_matching.find_candidates(
            conn,
            coarse=True,
            limit=settings.candidate_limit,
            searches=[
                store_matching.Search(oid, job.pickup_lat, job.pickup_lng, g.cells(job.pickup_cell, step))
                for oid, job, step in coarse
            ],
        )
        for (oid, job, _), rows in zip(coarse, results, strict=True):
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


async def _offer_all(
    conn: asyncpg.Connection,
    settings: DispatchSettings,
    jobs: list[store_matching.WaitingJob],
    found: dict[UUID, _Found],
) -> list[_Offer]:
    """Give each job (in the order given) its best candidate with capacity left in this pass;
    each round reserves the chosen couriers and records the offers that got theirs, with
    their events, in one statement (store.offer); the jobs left without one are postponed.

    Which jobs the first round cannot serve (no candidate, or none with a unit left) is known
    before any courier is locked, so they are postponed then: the reservation is the pass's
    last statement before its COMMIT, and a courier's delivery, which waits for the lock on
    their row, waits for no further round trip of a pass on a busy event loop. Only jobs whose
    courier another transaction took meanwhile, rare, are postponed after it."""
    g = grid(settings)
    expires_at = now_utc() + timedelta(seconds=settings.offer_timeout_s)
    pending = [job.order_id for job in jobs if job.order_id in found]
    chosen_before: set[object] = set()  # a courier is chosen in one round at most: reserved, or not to be had
    offers: list[_Offer] = []
    postponed_early: set[UUID] = set()
    for round_number in range(RESERVATION_ROUNDS):
        units: dict = {}
        chosen: list[_Offer] = []
        for oid in pending:
            for choice in found[oid].ranked:
                c = choice.candidate
                if c.courier_id not in chosen_before and c.capacity - c.load - units.get(c.courier_id, 0) > 0:
                    units[c.courier_id] = units.get(c.courier_id, 0) + 1
                    chosen.append(_Offer(oid, choice, found[oid]))
                    break
        if round_number == 0:
            served = {o.order_id for o in chosen}
            unserved = [job for job in jobs if job.order_id not in served]
            await _postpone(conn, settings, unserved)
            postponed_early = {job.order_id for job in unserved}
        if not chosen:
            break
        nth: dict = {}
        rows = []
        for o in chosen:
            courier = o.choice.candidate.courier_id
            rows.append(
                (
                    o.order_id,
                    courier,
                    expires_at,
                    o.choice.distance_m,
                    o.choice.travel_s,
                    nth.setdefault(courier, 0),
                    len(o.found.ranked),
                    o.found.step.rings,
                    g.resolution(o.found.step),
                )
            )
            nth[courier] += 1
        events = event_columns(
            [
                (
                    DeliveryOffered,
                    str(o.order_id),
                    DeliveryOfferedData(
                        order_id=o.order_id, courier_id=o.choice.candidate.courier_id, expires_at=expires_at
                    ),
                )
                for o in chosen
            ],
            source=SOURCE,
            topic=lambda cls: settings.topic(cls.topic),
        )
        reserved = await store_matching.offer(conn, rows, events)
        chosen_before |= set(units)
        offers += [o for o in chosen if o.choice.candidate.courier_id in reserved]
        pending = [o.order_id for o in chosen if o.choice.candidate.courier_id not in reserved]
        if not pending:
            break
    offered = {o.order_id for o in offers}
    await _postpone(conn, settings, [job for job in jobs if job.order_id not in offered | postponed_early])
    return offers
