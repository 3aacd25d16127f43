"""Admission control: the rule on a clock of the test's own, the backlog query and the 503 answer
through the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.orders.admission import AdmissionRule, Backlog
from services.orders.settings import OrdersSettings
from tests.orders.support import new_merchant, order_body
from tests.support import ops_client

CALM = Backlog()


def rule() -> AdmissionRule:
    return AdmissionRule(bound_s=1.0, min_late=5, min_rate=1.0)


def offer(r: AdmissionRule, start: float, seconds: float, rates: dict[str, float]) -> dict[str, int]:
    """Merchants asking at these rates (orders/s) for `seconds` from `start`: the orders admitted by each."""
    admitted = dict.fromkeys(rates, 0)
    step = 0.01
    due = dict.fromkeys(rates, 0.0)
    for i in range(round(seconds / step)):
        now = start + i * step
        for merchant, rate in rates.items():
            due[merchant] += rate * step
            while due[merchant] >= 1:
                due[merchant] -= 1
                admitted[merchant] += r.admit(merchant, now) is None
    return admitted


def limited(r: AdmissionRule, rates: dict[str, float], *, cleared: float) -> float:
    """Merchants ask at these rates for a second while dispatch clears `cleared` orders/s and
    orders are late: the limit the rule sets then (at t = 1)."""
    r.observe(0.0, Backlog(waiting=10))
    admitted = sum(offer(r, 0.0, 1.0, rates).values())
    r.observe(1.0, Backlog(waiting=10 + admitted - round(cleared), late=6))
    assert r.limit is not None
    return r.limit


def test_no_limit_while_few_orders_are_late():
    r = rule()
    r.observe(0.0, CALM)
    assert offer(r, 0.0, 1.0, {"a": 100}) == {"a": 100}
    r.observe(1.0, Backlog(waiting=30, late=4, oldest_s=1.5))  # one short of min_late
    assert r.limit is None and offer(r, 1.0, 1.0, {"a": 100}) == {"a": 100}


def test_late_orders_halve_what_dispatch_clears_and_again_at_most_once_per_bound():
    r = rule()
    assert limited(r, {"a": 40}, cleared=10) == pytest.approx(5)  # half of the 10/s dispatch clears
    r.observe(1.5, Backlog(waiting=40, late=6))  # half a bound later: the queue cannot show the cut yet
    assert r.limit == pytest.approx(5)
    r.observe(2.0, Backlog(waiting=35, late=6))
    assert r.limit == pytest.approx(2.5)
    for t in range(3, 20):
        r.observe(float(t), Backlog(waiting=35, late=6))
    assert r.limit == 1.0  # never below min_rate


def test_a_backlog_draining_is_not_cut_again_and_one_growing_again_is():
    # An overload's leftovers drain after it: cut while they do, the limit would reach the floor
    # and intake stay shut for seconds after dispatch caught up.
    r = rule()
    assert limited(r, {"a": 40}, cleared=10) == pytest.approx(5)
    for t, late in ((2.0, 6), (3.0, 5)):  # as many as at the cut, then fewer
        r.observe(t, Backlog(waiting=40, late=late))
    assert r.limit == pytest.approx(2.5)  # the first was cut, the second is draining
    for t, late in ((4.0, 5), (5.0, 5)):  # no fewer than the fewest since the cut, but fewer than at it
        r.observe(t, Backlog(waiting=40, late=late))
        assert r.limit == pytest.approx(2.5)
    r.observe(6.0, Backlog(waiting=40, late=6))  # growing again
    assert r.limit is not None and r.limit < 2.5


def test_when_dispatch_clears_more_than_was_asked_the_cut_is_from_what_was_admitted():
    assert limited(rule(), {"a": 8}, cleared=12) == pytest.approx(4, abs=0.5)


def test_the_limit_holds_with_a_few_late_orders_grows_without_and_is_lifted_above_the_demand():
    r = rule()
    assert limited(r, {"a": 40}, cleared=20) == pytest.approx(10)
    offer(r, 1.0, 1.0, {"a": 40})
    r.observe(2.0, Backlog(waiting=20, late=2, oldest_s=1.2))
    assert r.limit == pytest.approx(10)
    offer(r, 2.0, 1.0, {"a": 40})
    r.observe(3.0, Backlog(waiting=5))
    assert r.limit == pytest.approx(10 * 1.1 + 0.1)  # 10% and 0.1/s per second
    offer(r, 3.0, 0.5, {"a": 40})
    r.observe(3.5, Backlog(waiting=5))
    assert r.limit == pytest.approx(11.1 * 1.05 + 0.05)
    t = 3.5
    while r.limit is not None:  # demand stays 40/s: lifted once the limit reaches 1.2 x 40
        offer(r, t, 0.5, {"a": 40})
        t += 0.5
        r.observe(t, Backlog(waiting=5))
        assert t < 60
    assert offer(r, t, 1.0, {"a": 40}) == {"a": 40}


def test_a_quiet_moment_does_not_lift_the_limit():
    # Requests come in bursts: a refresh with none asked in it is not a fall in demand.
    r = rule()
    assert limited(r, {"a": 40}, cleared=20) == pytest.approx(10)
    r.observe(1.25, Backlog(waiting=5))
    assert r.limit is not None


def test_under_a_limit_each_active_merchant_gets_an_equal_share():
    r = rule()
    assert limited(r, {"big": 36, "small": 4}, cleared=40) == pytest.approx(20)
    offer(r, 1.0, 0.5, {"big": 36, "small": 4})
    r.observe(1.5, Backlog(waiting=20, late=2))  # a few late: the limit holds
    got = offer(r, 1.5, 10.0, {"big": 36, "small": 4})
    # An equal share is 10/s each: the small shop gets all it asks for, the big one about its share.
    assert got["small"] >= 39
    assert 90 <= got["big"] <= 115


def test_a_refused_order_is_told_when_to_come_back():
    r = rule()
    assert limited(r, {"a": 4}, cleared=4) == pytest.approx(2)
    assert r.admit("a", 1.0) is None  # the bucket starts with one order
    assert r.admit("a", 1.0) == 1  # the next token comes in half a second: at least one second
    for t in range(2, 12):
        r.observe(float(t), Backlog(waiting=20, late=6))
    assert r.limit == 1.0
    r.admit("b", 12.0)  # two merchants now share 1 order/s: one every two seconds each
    r.admit("a", 12.0)
    assert r.admit("a", 12.0) == 2


def test_merchants_that_stopped_asking_give_back_their_share():
    r = rule()
    limited(r, {"a": 20}, cleared=20)
    for merchant in ("b", "c", "d"):
        r.admit(merchant, 1.0)
    assert set(r.buckets) == {"b", "c", "d"}
    r.observe(1.5, Backlog(waiting=10, late=1))
    offer(r, 1.5, 6.0, {"a": 20})
    r.observe(7.5, Backlog(waiting=10, late=1))
    assert set(r.buckets) == {"a"}


def test_the_horizon_must_cover_the_bound():
    with pytest.raises(ValueError, match="HORIZON"):
        OrdersSettings(admission_bound_s=30, admission_horizon_s=10)


async def test_the_backlog_counts_recent_orders_still_waiting(app, client, outbox_kept):
    merchant = await new_merchant(client)
    admission = app.state.admission
    pool = app.state.runtime.pool
    assert await admission.backlog() == Backlog()
    ids = []
    for i in range(3):
        r = await client.post("/v1/orders", json=order_body(external_id=f"w-{i}"), headers=merchant["headers"])
        ids.append(r.json()["id"])
    now = datetime.now(UTC)
    ages = {ids[0]: timedelta(seconds=45), ids[1]: timedelta(hours=2), ids[2]: timedelta(seconds=1)}
    for order_id, age in ages.items():
        await pool.execute("UPDATE orders SET created_at = $2 WHERE id = $1::uuid", order_id, now - age)
    backlog = await admission.backlog()
    # The two-hour-old order is past the horizon (5 min); the 45 s one is late (bound 30 s).
    assert (backlog.waiting, backlog.late) == (2, 1) and 45 <= backlog.oldest_s < 50
    await pool.execute("UPDATE orders SET status = 'assigned' WHERE id = $1::uuid", ids[0])
    backlog = await admission.backlog()
    assert (backlog.waiting, backlog.late) == (1, 0) and backlog.oldest_s < 5


async def test_a_refused_order_is_a_503_with_retry_after_and_creates_nothing(app, client, outbox_kept):
    merchant = await new_merchant(client)
    app.state.admission.rule.limit = 0.2  # as if dispatch were far behind
    r = await client.post("/v1/orders", json=order_body(external_id="first"), headers=merchant["headers"])
    assert r.status_code == 201, r.text
    r = await client.post("/v1/orders", json=order_body(external_id="second"), headers=merchant["headers"])
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "5" and r.json()["title"] == "Overloaded"
    listed = await client.get("/v1/orders", headers=merchant["headers"])
    assert [o["external_id"] for o in listed.json()["items"]] == ["first"]
    async with ops_client(app) as ops:
        metrics = (await ops.get("/metrics")).text
    assert 'orders_admission_total{decision="refused"} 1.0' in metrics
