"""The benchmark's own accounting of placed -> offered and its couriers' moves (no servers)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from services.dispatch.settings import DispatchSettings
from shared.geo import haversine_m
from tools.bench.__main__ import parse_args
from tools.bench.load import ORIGIN, Bench
from tools.bench.report import markdown

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _event(kind: str, subject: str, at: datetime) -> dict:
    return {"type": kind, "subject": subject, "occurred_at": at.isoformat()}


def test_an_offer_read_before_its_order_placed_still_counts():
    # The watcher reads the orders' and dispatch's topics side by side: a fast offer often
    # comes out of the same fetch ahead of its order.placed. Dropping those (as the bench once
    # did) leaves out the fastest offers and overstates every percentile.
    bench = Bench(client=None, args=parse_args([]))
    bench.note_event(_event("delivery.offered", "a", T0 + timedelta(milliseconds=40)))
    bench.note_event(_event("order.placed", "a", T0))
    bench.note_event(_event("order.placed", "b", T0 + timedelta(seconds=1)))
    bench.note_event(_event("delivery.offered", "b", T0 + timedelta(seconds=1, milliseconds=300)))
    # a second offer of "b" (after a decline) is not its placed -> offered
    bench.note_event(_event("delivery.offered", "b", T0 + timedelta(seconds=9)))
    assert sorted(bench.placed_to_offered_ms(T0.timestamp(), T0.timestamp() + 60)) == [40.0, 300.0]


def test_only_orders_placed_inside_the_measured_window_count():
    bench = Bench(client=None, args=parse_args([]))
    for i, subject in enumerate("abc"):
        placed = T0 + timedelta(seconds=5 * i)  # 0 s, 5 s, 10 s
        bench.note_event(_event("order.placed", subject, placed))
        bench.note_event(_event("delivery.offered", subject, placed + timedelta(milliseconds=100 * (i + 1))))
    assert bench.placed_to_offered_ms(T0.timestamp() + 5, T0.timestamp() + 10) == [200.0]
    assert bench.placed_to_offered_ms(T0.timestamp() + 20, T0.timestamp() + 30) == []


def test_a_bench_courier_moves_as_a_phone_would_however_soon_it_pings_again():
    # Dispatch ignores a point no vehicle reaches from the last one and flags the courier at
    # the third in a row: the bench's couriers once pinged random points and got flagged by the
    # dozen, which took their capacity out of the bench (the knee read 125 orders/s, not 200+).
    slack_m = DispatchSettings.model_fields["location_jump_slack_m"].default
    bench = Bench(client=None, args=parse_args([]))
    bench.positions = {"t": (ORIGIN[0] + 0.05, ORIGIN[1])}  # 5.5 km north: strayed far
    path = [bench.positions["t"]] + [bench.move("t") for _ in range(2000)]
    steps = [haversine_m(*a, *b) for a, b in itertools.pairwise(path)]
    assert max(steps) < slack_m  # plausible even for two pings in the same second
    assert len(set(path)) == len(path)  # every ping a new point (tracking tells them apart)
    assert haversine_m(*path[-1], *ORIGIN) < 3000  # back near the origin, and it stays there
    assert all(haversine_m(*p, *ORIGIN) < 3000 for p in path[-1000:])


def _steady_results(**figures: object) -> dict:
    """A steady run's results as the bench writes them (its latencies all alike), with these."""
    latencies = {"p50": 100.0, "p95": 200.0, "p99": 640.0, "count": 7600}
    return {
        "rate": 152,
        "duration_s": 60,
        "warmup_s": 10,
        "orders_per_s": 151.8,
        "placed_per_s": 152.0,
        "orders_placed": 9120,
        "orders_delivered": 9120,
        "errors": 0,
        "placed_to_offered_ms": latencies,
        "accepted_to_tracking_ms": latencies,
        "status_call_to_tracking_ms": latencies,
        "location_to_tracking_ms": latencies,
        "cpu_s": {"orders": 10.0},
        "peak_mem_mib": {"orders": 90},
        "machine_probe_s": [0.8, 0.9],
        "p99_placed_to_offered_ms": 640.0,
        "target_met": False,
        "target_throughput_met": True,
        "target_latency_met": False,
        **figures,
    }


def test_the_steady_report_names_the_longest_disk_flush_of_its_window():
    # Every commit waits for a flush: a p99 missed while the disk stalled is told apart by it.
    results = _steady_results(longest_disk_flush_ms=912)
    md = markdown(results)
    assert "| longest disk flush in the window ms (a commit waits for it) | 912 |" in md
    del results["longest_disk_flush_ms"]  # a run of before the flushes were timed
    assert "disk flush" not in markdown(results)


def test_the_report_splits_postgres_by_the_database_its_backends_serve():
    results = _steady_results(postgres_cpu_s_by_database={"giao_dispatch": 15.9, "giao_orders": 6.5, "other": 0.2})
    line = "| postgres by the database its backends serve: CPU s | giao_dispatch 15.9, giao_orders 6.5, other 0.2 |"
    assert line in markdown(results)
    del results["postgres_cpu_s_by_database"]  # a run of before the split
    assert "by the database" not in markdown(results)
