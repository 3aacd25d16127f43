"""Dispatch's rules without I/O: the state machine, the cancel decision, choosing a courier,
the delivery-code limit, names."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from h3.api import basic_int as h3

from services.dispatch import domain
from services.dispatch.cells import Grid, SearchStep, disk, rings_covering
from services.dispatch.domain import Action, Candidate, CodeVerdict
from shared import geo
from shared.contract import VEHICLES

ALL_STATUSES = (
    "waiting",
    "offered",
    "assigned",
    "picked_up",
    "delivered",
    "delivery_failed",
    "returned",
    "cancelled",
    "expired",
)


# --- the state machine ----------------------------------------------------------------------------


def test_the_happy_path_and_the_failed_path():
    s = "offered"
    for action in (Action.ACCEPT, Action.PICKUP, Action.DELIVER):
        s = domain.next_status(action, s)
    assert s == "delivered"
    s = domain.next_status(Action.FAIL, "picked_up")
    assert (s, domain.next_status(Action.RETURN, s)) == ("delivery_failed", "returned")


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("status", ALL_STATUSES)
def test_each_action_is_allowed_from_exactly_one_status(action, status):
    start, end = domain.TRANSITIONS[action]
    if status == start:
        assert domain.next_status(action, status) == end
    else:
        with pytest.raises(domain.TransitionNotAllowed):
            domain.next_status(action, status)


def test_final_statuses_allow_nothing():
    for status in domain.FINAL:
        for action in Action:
            with pytest.raises(domain.TransitionNotAllowed):
                domain.next_status(action, status)


def test_capacity_is_given_back_when_a_job_ends_but_not_when_it_moves_on():
    assert domain.frees_capacity("picked_up", "delivered")
    assert domain.frees_capacity("delivery_failed", "returned")
    assert domain.frees_capacity("offered", "waiting")  # declined or expired offer
    assert domain.frees_capacity("assigned", "cancelled")
    assert not domain.frees_capacity("offered", "assigned")
    assert not domain.frees_capacity("picked_up", "delivery_failed")  # the parcel is still with them
    assert not domain.frees_capacity("waiting", "cancelled")


# --- the cancel saga ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status,frees", [("waiting", False), ("offered", True), ("assigned", True)])
def test_cancel_before_pickup_is_confirmed(status, frees):
    assert domain.decide_cancel(status) == domain.CancelConfirmed(frees_courier=frees)


@pytest.mark.parametrize("status", ["picked_up", "delivery_failed", "delivered", "returned", "expired"])
def test_cancel_after_pickup_or_at_the_end_is_refused_with_a_reason(status):
    decision = domain.decide_cancel(status)
    assert isinstance(decision, domain.CancelRefused) and decision.reason


def test_a_repeated_cancel_is_confirmed_again_without_freeing_anyone_twice():
    assert domain.decide_cancel("cancelled") == domain.CancelConfirmed(frees_courier=False, already_cancelled=True)


# --- choosing a courier ---------------------------------------------------------------------------------

PICKUP = (20.9516, 107.0801)


def _at(
    metres_east: float, vehicle: str = "motorbike", load: int = 0, capacity: int = 3, cid: object = "c"
) -> Candidate:
    dlng = metres_east / (111_320 * math.cos(math.radians(PICKUP[0])))
    return Candidate(cid, vehicle, PICKUP[0], PICKUP[1] + dlng, load, capacity)


def test_the_nearest_by_travel_estimate_comes_first():
    ranked = domain.rank_candidates(*PICKUP, [_at(900, cid="far"), _at(300, cid="near"), _at(600, cid="mid")])
    assert [r.candidate.courier_id for r in ranked] == ["near", "mid", "far"]
    assert ranked[0].distance_m == pytest.approx(300 * 1.3, rel=0.02)


def test_a_faster_vehicle_a_little_further_beats_a_bicycle():
    ranked = domain.rank_candidates(*PICKUP, [_at(500, "bicycle", cid="bike"), _at(800, "motorbike", cid="moto")])
    assert ranked[0].candidate.courier_id == "moto"  # 800/7 s < 500/3.5 s


def test_a_courier_without_free_capacity_is_never_chosen():
    ranked = domain.rank_candidates(*PICKUP, [_at(100, load=3, capacity=3, cid="full"), _at(2000, cid="free")])
    assert [r.candidate.courier_id for r in ranked] == ["free"]


def test_equal_travel_times_prefer_the_lighter_load():
    ranked = domain.rank_candidates(*PICKUP, [_at(400, load=2, cid="busy"), _at(400, load=0, cid="idle")])
    assert ranked[0].candidate.courier_id == "idle"


def test_equal_travel_and_load_go_by_courier_id_as_its_text_orders_them():
    ids = [uuid.UUID(int=n) for n in (0xF0, 0xA, 0xF << 124, 0x1 << 64, 0xB0)]
    ranked = domain.rank_candidates(*PICKUP, [_at(400, cid=i) for i in ids])
    assert [r.candidate.courier_id for r in ranked] == sorted(ids, key=str)


def test_the_search_widens_by_doubling_up_to_its_limit():
    assert domain.ring_steps(48) == [1, 2, 4, 8, 16, 32, 48]
    assert domain.ring_steps(1) == [1]


def test_the_reach_radius_covers_the_fastest_vehicle():
    # a motorbike (the fastest) with a 100 s estimate is 100 * 7 / 1.3 m away in a straight line
    assert domain.reach_radius_m(100) == pytest.approx(700 / 1.3)


def _points_around(radius_m: float):
    dlat = radius_m / 111_320
    dlng = radius_m / (111_320 * math.cos(math.radians(PICKUP[0])))
    for angle in range(0, 360, 15):
        a = math.radians(angle)
        yield PICKUP[0] + dlat * math.sin(a), PICKUP[1] + dlng * math.cos(a)


@pytest.mark.parametrize("resolution", [7, 8, 9])
@pytest.mark.parametrize("radius_m", [50, 400, 1500, 5000])
def test_rings_covering_reach_every_point_within_the_radius(resolution, radius_m):
    origin = h3.latlng_to_cell(*PICKUP, resolution)
    cells = set(disk(origin, rings_covering(radius_m, resolution)))
    for lat, lng in _points_around(radius_m):
        assert h3.latlng_to_cell(lat, lng, resolution) in cells


def test_the_search_goes_from_fine_to_coarse_cells():
    grid = Grid(fine_resolution=9, coarse_resolution=7, fine_rings=4, coarse_rings=8)
    assert [(s.coarse, s.rings) for s in grid.plan()] == [
        (False, 1),
        (False, 2),
        (False, 4),
        (True, 2),
        (True, 4),
        (True, 8),
    ]
    covered = [grid.covered_m(s) for s in grid.plan()]
    assert covered == sorted(covered) and covered[-1] > 14_000
    assert len(grid.cells(grid.cell(*PICKUP), grid.plan()[-1])) == 217  # 14 km and more in 217 cells


@pytest.mark.parametrize("radius_m", [100, 1000, 3000, 12_000])
def test_the_step_covering_a_radius_holds_every_point_of_it(radius_m):
    grid = Grid()
    step = grid.step_covering(radius_m)
    assert grid.covered_m(step) >= radius_m or step == SearchStep(True, grid.coarse_rings) or step.rings <= 2
    cells = set(grid.cells(grid.cell(*PICKUP), step))
    for lat, lng in _points_around(radius_m):
        cell = grid.cell(lat, lng)
        assert (grid.coarse(cell) if step.coarse else cell) in cells


def test_a_waiting_job_backs_off_up_to_a_cap():
    delays = [domain.match_retry_delay(n, 0.5, 5) for n in range(6)]
    assert delays == [0.5, 1, 2, 4, 5, 5]


# --- delivery codes -------------------------------------------------------------------------------------

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


LIMITS = domain.CodeLimits(
    max_failures=5, lockout=timedelta(minutes=15), growth=4, lockout_max=timedelta(hours=24), max_per_job=20
)


def _check(code_matches=True, cod=100, state=domain.CodeState(), now=NOW):  # noqa: B008 (frozen)
    return domain.check_delivery(
        code_matches=code_matches, cod_collected_vnd=cod, cod_amount_vnd=100, state=state, now=now, limits=LIMITS
    )


def test_the_right_code_and_amount_deliver():
    assert _check().verdict is CodeVerdict.OK


def test_a_wrong_cod_amount_is_refused_but_not_counted_as_a_guess():
    check = _check(cod=99, state=domain.CodeState(failures=2, total=2))
    assert (check.verdict, check.state.failures, check.state.total) == (CodeVerdict.WRONG_COD, 2, 2)


def test_five_wrong_codes_lock_the_job_and_a_lock_holds_even_for_the_right_code():
    state = domain.CodeState()
    for _ in range(4):
        check = _check(code_matches=False, state=state)
        state = check.state
        assert check.verdict is CodeVerdict.WRONG_CODE and check.locked_until is None
    fifth = _check(code_matches=False, state=state)
    assert fifth.verdict is CodeVerdict.WRONG_CODE and fifth.locked_until == NOW + timedelta(minutes=15)
    assert _check(state=fifth.state, now=NOW + timedelta(minutes=14)).verdict is CodeVerdict.LOCKED
    after = _check(code_matches=False, state=fifth.state, now=NOW + timedelta(minutes=15))
    assert (after.verdict, after.state.failures, after.state.total) == (CodeVerdict.WRONG_CODE, 1, 6)
    assert domain.retry_after_s(fifth.locked_until, NOW + timedelta(seconds=0.5)) == 900


def test_each_lockout_is_longer_until_the_cap_holds_the_job_for_good():
    """15 min, 1 h, 4 h, then the 20th wrong code holds the job: time no longer unlocks it."""
    state, now, lengths = domain.CodeState(), NOW, []
    for _ in range(19):
        check = _check(code_matches=False, state=state, now=now)
        if check.state.lockouts > state.lockouts:
            lengths.append(check.locked_until - now)
            now = check.locked_until  # wait it out
        state = check.state
    assert lengths == [timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4)]
    twentieth = _check(code_matches=False, state=state, now=now)
    assert twentieth.verdict is CodeVerdict.WRONG_CODE and domain.code_held(twentieth.state, LIMITS)
    assert domain.attempts_left(twentieth.state, LIMITS, now) == 0
    later = now + timedelta(days=30)
    assert _check(state=twentieth.state, now=later).verdict is CodeVerdict.HELD  # even the right code
    assert domain.lockout_length(9, LIMITS) == timedelta(hours=24)  # growth stops at the max


def test_a_courier_is_locked_out_at_their_limit_of_wrong_codes_across_jobs():
    assert not domain.courier_code_locked(14, 15) and domain.courier_code_locked(15, 15)


def test_every_vehicle_has_a_speed_no_courier_on_it_reaches():
    assert set(domain.MAX_SPEED_MPS) == set(VEHICLES)
    assert all(domain.MAX_SPEED_MPS[v] > 3 * geo.SPEED_MPS[v] for v in VEHICLES)  # far above a usual pace


# --- couriers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,short",
    [
        ("Trần Văn Minh", "Minh T."),
        ("Nguyễn Thị Ánh Tuyết", "Tuyết N."),
        ("  Lê   Hoa ", "Hoa L."),
        ("Minh", "Minh"),
        ("đặng lâm", "lâm Đ."),
    ],
)
def test_display_name_is_the_given_name_and_the_family_initial(name, short):
    assert domain.display_name(name) == short


def test_locations_from_the_future_beyond_the_clock_skew_are_implausible():
    skew = timedelta(seconds=30)
    assert domain.location_is_plausible(NOW + timedelta(seconds=29), NOW, skew)
    assert not domain.location_is_plausible(NOW + timedelta(seconds=31), NOW, skew)
    assert domain.location_is_plausible(NOW - timedelta(hours=1), NOW, skew)


# --- what a courier sees, and repeated steps ---------------------------------------------------


@pytest.mark.parametrize(
    "address,area",
    [
        ("45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh", "Bãi Cháy, Hạ Long, Quảng Ninh"),
        ("Số 12 Cao Xanh,Hạ Long", "Hạ Long"),
        ("1 Lê Lợi", ""),  # one part may be the street itself: nothing is shown
        ("", ""),
    ],
)
def test_the_dropoff_area_leaves_the_street_out(address, area):
    shown = domain.dropoff_area(address, 20.95551, 107.04529)
    assert (shown.area, shown.lat, shown.lng) == (area, 20.96, 107.05)


def test_the_recipient_is_shown_from_acceptance_on():
    assert not domain.shows_recipient(domain.OFFERED) and not domain.shows_recipient(domain.WAITING)
    for status in (domain.ASSIGNED, domain.PICKED_UP, domain.DELIVERY_FAILED, domain.DELIVERED, domain.RETURNED):
        assert domain.shows_recipient(status)


def test_a_step_is_already_done_only_in_the_status_it_leads_to():
    assert domain.already_done(Action.ACCEPT, domain.ASSIGNED)
    assert domain.already_done(Action.DELIVER, domain.DELIVERED)
    assert not domain.already_done(Action.ACCEPT, domain.PICKED_UP)
    assert not domain.already_done(Action.PICKUP, domain.ASSIGNED)
    assert set(domain.JOB_STATUSES) >= {end for _, end in domain.TRANSITIONS.values()}


@pytest.mark.parametrize(
    ("cash", "amount", "expected"),
    [
        ([100, 200, 300], 100, (1, False)),
        ([100, 200, 300], 300, (2, False)),
        ([100, 200, 300], 600, (3, False)),
        ([100, 200, 300], 200, (None, False)),  # the second alone is not a run of the oldest
        ([100, 200, 300], 150, (None, False)),  # part of a delivery's cash settles nothing
        ([100, 200, 300], 700, (None, True)),  # more deliveries than these may reach it
        ([], 100, (None, True)),
    ],
)
def test_a_hand_in_settles_the_oldest_deliveries_adding_up_to_it(cash, amount, expected):
    assert domain.handin_count(cash, amount) == expected
