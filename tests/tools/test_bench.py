"""The benchmark's own accounting of placed -> offered (no servers: its arithmetic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tools.bench.__main__ import parse_args
from tools.bench.load import Bench

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
