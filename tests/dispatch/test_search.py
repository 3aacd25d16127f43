"""The matcher's candidate search against a brute-force oracle, through the database.

The oracle widens as the matcher's docstring says, over every courier in memory: each step's
candidates are the couriers in its cells; once someone is found, the step covering everyone
who could still beat them is the answer. The search must find the same courier at the same
step, reading the fine steps in one statement."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

from services.dispatch import domain, store_matching
from services.dispatch.service.common import grid
from services.dispatch.service.matching import search
from services.dispatch.store_matching import WaitingJob
from tests.dispatch.support import HA_LONG, copy_couriers

VEHICLES = ("bicycle", "motorbike", "car", "van")


def _oracle(g, couriers: list[tuple], lat: float, lng: float) -> tuple[object, object] | None:
    """(step, best courier id) by the widening rule, over every courier; None: nobody found."""
    cell = g.cell(lat, lng)

    def ranked(step):
        cells = set(g.cells(cell, step))
        column = 10 if step.coarse else 9
        return domain.rank_candidates(
            lat, lng, [domain.Candidate(c[0], c[3], c[7], c[8], 0, c[5]) for c in couriers if c[column] in cells]
        )

    plan = g.plan()
    for step in plan:
        found = ranked(step)
        if not found:
            continue
        needed = g.step_covering(domain.reach_radius_m(found[0].travel_s))
        if g.covered_m(needed) > g.covered_m(step):
            step, found = needed, ranked(needed)
        return step, found[0].candidate.courier_id
    return None


async def test_the_search_finds_whom_widening_over_every_courier_finds(dispatch, monkeypatch):
    g = grid(dispatch.settings)
    rng = random.Random(11)
    couriers = []
    for i in range(60):  # sparse: a few in each pickup's fine cells, some only in coarse reach
        lat = HA_LONG[0] + rng.uniform(-0.04, 0.04)
        lng = HA_LONG[1] + rng.uniform(-0.04, 0.04)
        cell = g.cell(lat, lng)
        vehicle = rng.choice(VEHICLES)
        couriers.append(
            (
                uuid.uuid4(),
                f"Tài xế {i}",
                "+84912345678",
                vehicle,
                uuid.uuid4().hex,
                3,
                True,
                lat,
                lng,
                cell,
                g.coarse(cell),
            )
        )
    jobs = []
    for _ in range(40):
        lat = HA_LONG[0] + rng.uniform(-0.05, 0.05)
        lng = HA_LONG[1] + rng.uniform(-0.05, 0.05)
        jobs.append(WaitingJob(uuid.uuid4(), lat, lng, g.cell(lat, lng), 0, datetime.now(UTC)))

    statements: list[bool] = []
    find = store_matching.find_candidates

    async def counted(conn, *, coarse, searches, limit):
        statements.append(coarse)
        return await find(conn, coarse=coarse, searches=searches, limit=limit)

    monkeypatch.setattr(store_matching, "find_candidates", counted)
    await copy_couriers(dispatch.pool, couriers)
    async with dispatch.pool.acquire() as conn:
        found = await search(conn, dispatch.settings, jobs)

    expected = {job.order_id: _oracle(g, couriers, job.pickup_lat, job.pickup_lng) for job in jobs}
    got = {oid: (f.step, f.ranked[0].candidate.courier_id) for oid, f in found.items()}
    assert got == {oid: e for oid, e in expected.items() if e is not None}
    steps = {step for step, _ in got.values()}
    # the layout exercises every kind of outcome: found in fine cells, covering steps, coarse
    assert any(not s.coarse for s in steps) and any(s.coarse for s in steps), steps
    assert any(s.rings not in (1, 2, 4) for s in steps if not s.coarse), "a fine covering step"
    # every fine step came from one statement; the coarse steps each took one for all jobs
    assert statements.count(False) == 1, statements
