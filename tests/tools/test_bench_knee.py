"""The knee mode's arithmetic (no servers): a step's figures, the knee over the steps, the ladder
and the disk flushes it watches."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tools.bench.__main__ import parse_args
from tools.bench.knee import DISK_STALL_S, Step, knee, ladder, markdown, p99, step_figures
from tools.bench.load import Bench, Order
from tools.bench.measure import DiskFlushes

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def step(rate: float, p99_ms: float | None = 120.0, delivered: float | None = 1.0, run_again: bool = False) -> Step:
    return Step(
        offered_per_s=rate,
        placed_per_s=rate,
        placed=int(rate * 30),
        refused=0,
        not_offered=0,
        p99_placed_to_offered_ms=p99_ms,
        delivered_share=delivered,
        run_again=run_again,
    )


def test_the_knee_is_the_last_rate_before_the_first_step_that_misses():
    steps = [step(100), step(125), step(150, p99_ms=499.9), step(175, p99_ms=500.0), step(200)]
    # 200 met the target again (noise), but the system already broke at 175: the knee is 150.
    assert knee(steps) == (150, True)


def test_a_step_run_again_counts_only_by_its_last_run():
    steps = [step(25), step(50, p99_ms=999.0, run_again=True), step(50), step(75)]
    assert knee(steps) == (75, False)
    steps = [step(25), step(50, p99_ms=999.0, run_again=True), step(50, p99_ms=880.0), step(75)]
    assert knee(steps) == (25, True)


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
    """What the ladder asks of the bench: orders at a rate for a time (noted; each call places one
    order, offered after the next of `offer_ms`, and none once they run out: a step with no order
    misses)."""

    def __init__(self, offer_ms: list[float] | None = None) -> None:
        self.placed_at: dict = {}
        self.offered_at: dict = {}
        self.calls: list[tuple[float, float, float]] = []  # (rate, seconds, monotonic start)
        self.offer_ms = list(offer_ms or [])

    async def place_orders(self, watchers: set, rate: float, duration: float) -> None:
        self.calls.append((rate, duration, time.monotonic()))
        if self.offer_ms:
            order, at = f"o{len(self.calls)}", datetime.now(UTC)
            self.placed_at[order] = at
            self.offered_at[order] = at + timedelta(milliseconds=self.offer_ms.pop(0))


class DiskStalls:
    """The disk as the ladder sees it: the longest flush of each step in turn (none after those)."""

    def __init__(self, longest_s: list[float | None]) -> None:
        self.longest = list(longest_s)

    def longest_s(self, since: float, until: float) -> float | None:
        return self.longest.pop(0) if self.longest else 0.004


async def test_the_ladder_starts_after_a_warm_up_at_the_first_rate_that_no_step_counts():
    bench = PlacesOrders()
    steps = await ladder(bench, set(), parse_args(["--knee", "--warmup", "7", "--knee-start", "40"]), DiskStalls([]))
    # No order was offered, so the first step missed and ended the ladder.
    assert [(rate, seconds) for rate, seconds, _ in bench.calls] == [(40, 7), (40, 30)]
    assert [a.rate for a in steps] == [40]
    # The step's window opens once the warm-up's orders are placed, as its own begin.
    assert bench.calls[0][2] <= steps[0].start <= bench.calls[1][2]
    bench = PlacesOrders()
    await ladder(bench, set(), parse_args(["--knee", "--warmup", "0"]), DiskStalls([]))
    assert [(rate, seconds) for rate, seconds, _ in bench.calls] == [(25, 30)]


async def test_a_step_that_missed_in_a_disk_stall_runs_again_and_one_that_missed_without_ends_the_ladder():
    args = parse_args(["--knee", "--warmup", "0", "--knee-retries", "2"])
    # 25 meets; 50 misses in a stall and meets when run again; 75 misses in a stall twice and
    # then without one (its third run, the retries spent): the ladder ends there.
    bench = PlacesOrders(offer_ms=[100, 900, 100, 900, 900, 900])
    attempts = await ladder(bench, set(), args, DiskStalls([0.01, 0.7, 0.01, 0.6, DISK_STALL_S, 0.01]))
    assert [(a.rate, a.run_again) for a in attempts] == [
        (25, False),
        (50, True),
        (50, False),
        (75, True),
        (75, True),
        (75, False),
    ]
    assert [a.longest_flush_s for a in attempts] == [0.01, 0.7, 0.01, 0.6, DISK_STALL_S, 0.01]
    # A stall does not excuse a step past its retries, and a miss without a stall is final.
    bench = PlacesOrders(offer_ms=[900, 900])
    attempts = await ladder(
        bench, set(), parse_args(["--knee", "--warmup", "0", "--knee-retries", "1"]), DiskStalls([0.8, 0.8])
    )
    assert [(a.rate, a.run_again) for a in attempts] == [(25, True), (25, False)]
    bench = PlacesOrders(offer_ms=[900])
    attempts = await ladder(bench, set(), args, DiskStalls([DISK_STALL_S - 0.01]))
    assert [(a.rate, a.run_again) for a in attempts] == [(25, False)]
    # Past the knee (--knee-past) the steps are only shown: none is run again.
    bench = PlacesOrders(offer_ms=[100, 900, 900])
    past = parse_args(["--knee", "--warmup", "0", "--knee-past", "1"])
    attempts = await ladder(bench, set(), past, DiskStalls([0.01, 0.01, 0.9]))
    assert [(a.rate, a.run_again) for a in attempts] == [(25, False), (50, False), (75, False)]


def test_the_disk_flushes_are_timed_in_their_own_thread_and_the_longest_of_a_window_found(tmp_path):
    before = time.time()
    with DiskFlushes(tmp_path, interval_s=0.01) as disk:
        deadline = time.monotonic() + 10
        while len(disk.flushes) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(disk.flushes) >= 3
        assert disk.path.stat().st_size == 4096  # one block, written again each time
    assert not disk.path.exists()  # nothing left beside the data
    assert all(before <= at and took > 0 for at, took in disk.flushes)
    assert disk.longest_s(before - 10, before) is None  # before the first flush
    # The longest of those under way in a window, including one that began before it.
    disk.flushes = [(100.0, 0.002), (100.05, 0.8), (100.9, 0.003)]
    assert disk.longest_s(100.0, 100.04) == 0.002
    assert disk.longest_s(100.5, 100.6) == 0.8
    assert disk.longest_s(100.86, 101.0) == 0.003


def knee_results(steps: list[Step], knee_rate: float, reached: bool, **more) -> dict:
    """A knee run's results as the report reads them (30 s steps, 120 couriers, probe 1.1 / 1.3)."""
    return {
        "steps": [{**s.__dict__, "meets": s.meets} for s in steps],
        "knee_orders_per_s": knee_rate,
        "knee_reached": reached,
        "knee_step_s": 30,
        "couriers": 120,
        "machine_probe_s": [1.1, 1.3],
        **more,
    }


def test_the_report_names_the_knee_and_the_probe():
    steps = [step(100), step(125, p99_ms=900.0)]
    md = markdown(knee_results(steps, 100, True, warmup_s=10))
    assert "| 125 | 125 | 0 | 900.0 | 100.0% | 0 | - | no |" in md
    assert "**100 orders/s**" in md and "1.1 / 1.3" in md
    assert "steps of 30 s after a warm-up of 10 s, 120 couriers" in md
    assert "Errors" not in md


def test_the_report_shows_each_run_of_a_step_with_its_longest_flush():
    steps = [
        Step(50, 50, 1500, 0, 0, 910.0, 1.0, longest_flush_ms=730, run_again=True),
        Step(50, 50, 1500, 0, 0, 140.0, 1.0, longest_flush_ms=6),
    ]
    md = markdown(knee_results(steps, 50, False, knee_disk_stall_ms=250, knee_retries=2))
    assert "| 50 | 50 | 0 | 910.0 | 100.0% | 0 | 730 | no, run again (disk stall) |" in md
    assert "| 50 | 50 | 0 | 140.0 | 100.0% | 0 | 6 | yes |" in md
    assert "disk flush took 250 ms or more was run again (up to 2 times)" in md


def test_the_report_shows_the_first_errors_under_the_figures():
    samples = [f"picked_up: POST .../deliver -> 429 #{i}" for i in range(5)]
    results = knee_results([step(100)], 100, False, errors=12, error_samples=samples)
    tail = markdown(results).splitlines()[-4:]
    assert tail == ["Errors: 12; the first 3:", *(f"- {e}" for e in samples[:3])]
