"""The knee mode's arithmetic (no servers): a step's figures and the knee over the steps."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tools.bench.__main__ import parse_args
from tools.bench.knee import Step, knee, ladder, markdown, p99, step_figures
from tools.bench.load import Bench, Order

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def step(rate: float, p99_ms: float | None = 120.0, delivered: float | None = 1.0) -> Step:
    return Step(
        offered_per_s=rate,
        placed_per_s=rate,
        placed=int(rate * 30),
        refused=0,
        not_offered=0,
        p99_placed_to_offered_ms=p99_ms,
        delivered_share=delivered,
    )


def test_the_knee_is_the_last_rate_before_the_first_step_that_misses():
    steps = [step(100), step(125), step(150, p99_ms=499.9), step(175, p99_ms=500.0), step(200)]
    # 200 met the target again (noise), but the system already broke at 175: the knee is 150.
    assert knee(steps) == (150, True)


def test_a_step_with_too_few_deliveries_misses_however_fast_its_offers():
    assert knee([step(100), step(125, delivered=0.989)]) == (100, True)
    assert knee([step(100, delivered=0.99)]) == (100, False)


def test_no_knee_below_the_first_step_and_at_least_the_last_when_none_missed():
    assert knee([step(100, p99_ms=None), step(125)]) == (None, True)
    assert knee([step(100), step(125)]) == (125, False)
    assert knee([]) == (None, False)
    assert not step(100, delivered=None).meets


def test_p99_counts_orders_never_offered_as_infinitely_late():
    values = [float(v) for v in range(1, 101)]  # 100 offers, 1..100 ms
    assert p99(values) == 99.0
    assert p99(values, missing=1) == 100.0  # 101 orders: the 100th is the slowest offered one
    assert p99(values, missing=2) is None  # the 101st of 102 is one never offered
    assert p99([]) is None


def test_a_steps_figures_come_from_the_orders_placed_in_it():
    bench = Bench(client=None, args=parse_args([]))
    # Monotonic and wall clocks side by side: monotonic 1000.0 is T0.
    wall0 = T0.timestamp()
    for i in range(200):
        placed = 1000.0 + i * 0.1  # 10 orders/s for 20 s: steps [1000, 1010) and [1010, 1020)
        delivered = placed + (5 if i != 3 else 40)  # order 3 took longer than the step to arrive
        bench.orders[f"o{i}"] = Order(f"o{i}", "C", "123456", 0, placed, False, delivered=delivered)
        at = T0 + timedelta(seconds=i * 0.1)
        bench.placed_at[f"o{i}"] = at
        if i not in (150, 151):  # two orders of the second step never offered
            bench.offered_at[f"o{i}"] = at + timedelta(milliseconds=100 + (i % 10))
    bench.refused = [1011.0, 1012.0, 1025.0]
    first = step_figures(bench, 10, (1000.0, 1010.0), (wall0, wall0 + 10), deliver_within=10)
    assert (first.placed, first.placed_per_s, first.refused, first.not_offered) == (100, 10.0, 0, 0)
    assert first.p99_placed_to_offered_ms == pytest.approx(109, abs=0.1)
    assert first.delivered_share == 0.99 and first.meets
    second = step_figures(bench, 10, (1010.0, 1020.0), (wall0 + 10, wall0 + 20), deliver_within=10)
    assert (second.placed, second.refused, second.not_offered) == (100, 2, 2)
    assert second.p99_placed_to_offered_ms is None and not second.meets


class PlacesOrders:
    """What the ladder asks of the bench: orders at a rate for a time (noted, none placed)."""

    def __init__(self) -> None:
        self.placed_at: dict = {}
        self.offered_at: dict = {}
        self.calls: list[tuple[float, float, float]] = []  # (rate, seconds, monotonic start)

    async def place_orders(self, watchers: set, rate: float, duration: float) -> None:
        self.calls.append((rate, duration, time.monotonic()))


async def test_the_ladder_starts_after_a_warm_up_at_the_first_rate_that_no_step_counts():
    bench = PlacesOrders()
    steps = await ladder(bench, set(), parse_args(["--knee", "--warmup", "7", "--knee-start", "40"]))
    # No order was offered, so the first step missed and ended the ladder.
    assert [(rate, seconds) for rate, seconds, _ in bench.calls] == [(40, 7), (40, 30)]
    assert [rate for rate, _, _ in steps] == [40]
    # The step's window opens once the warm-up's orders are placed, as its own begin.
    assert bench.calls[0][2] <= steps[0][1] <= bench.calls[1][2]
    bench = PlacesOrders()
    await ladder(bench, set(), parse_args(["--knee", "--warmup", "0"]))
    assert [(rate, seconds) for rate, seconds, _ in bench.calls] == [(25, 30)]


def test_the_report_names_the_knee_and_the_probe():
    steps = [step(100), step(125, p99_ms=900.0)]
    results = {
        "steps": [{**s.__dict__, "meets": s.meets} for s in steps],
        "knee_orders_per_s": 100,
        "knee_reached": True,
        "knee_step_s": 30,
        "couriers": 120,
        "machine_probe_s": [1.1, 1.3],
        "warmup_s": 10,
    }
    md = markdown(results)
    assert "| 125 | 125 | 0 | 900.0 | 100.0% | 0 | no |" in md
    assert "**100 orders/s**" in md and "1.1 / 1.3" in md
    assert "steps of 30 s after a warm-up of 10 s, 120 couriers" in md
    assert "Errors" not in md


def test_the_report_shows_the_first_errors_under_the_figures():
    samples = [f"picked_up: POST .../deliver -> 429 #{i}" for i in range(5)]
    results = {
        "steps": [{**step(100).__dict__, "meets": True}],
        "knee_orders_per_s": 100,
        "knee_reached": False,
        "knee_step_s": 30,
        "couriers": 120,
        "machine_probe_s": [1.1, 1.3],
        "errors": 12,
        "error_samples": samples,
    }
    tail = markdown(results).splitlines()[-4:]
    assert tail == ["Errors: 12; the first 3:", *(f"- {e}" for e in samples[:3])]
