"""The bench's knee mode (`python -m tools.bench --knee`): the offered rate steps up (by default
+25 orders/s every 30 s from 25) until a step misses the target, and the knee is the highest
rate before that, the system's measured capacity. The ladder starts after the bench's warm-up
(`--warmup`, 10 s), orders placed at the first step's rate and in no step: a cold start (the
broker's compiler, the services' first statements, the consumers' first fetches) is not capacity.
Without it the first 5 s of a ladder had twice the p99 of the rest of its first step, and on a
slow host a ladder ended at its first step, 25 orders/s (docs/performance.md).

A step meets the target when the p99 of placed -> offered of the orders placed in it is under
500 ms and at least 99% of them are delivered within a step's length of being placed. An order
not offered by the end counts as infinitely late; an order refused at intake (503, admission
control) is not placed: the step's placed rate falls below its offered one and shows it.

A step that misses while the disk took a quarter of a second or more over a flush (measured all
along, tools/bench/measure.py's DiskFlushes) is run again at the same rate, up to
`--knee-retries` times, and its last run stands for the rate: every commit waits for such a
flush, so one stall of the host's disk made a ladder end at 50 orders/s that met 100-200 in the
steps after it (docs/performance.md). A step that misses without one is the knee as before, and
every run of a step is in the report with the longest flush under way in it.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime

from tools.bench.load import Bench
from tools.bench.measure import DiskFlushes
from tools.bench.report import error_lines, ms

P99_MS = 500.0
MIN_DELIVERED = 0.99
# Half the p99 bound: a flush this long, with an offer's usual 100-200 ms and the backlog it
# leaves on top, takes the orders placed across it near or past 500 ms, and a step's p99 is its
# slowest 0.3 s of orders (of 30 s): one such stall may decide a step at any rate.
DISK_STALL_S = 0.25


@dataclass(frozen=True)
class Attempt:
    """One run of a step: its rate, when it began (monotonic and wall clock), the longest disk
    flush under way in it (None: none measured) and whether it missed in a disk stall and was run
    again."""

    rate: float
    start: float
    wall_start: float
    longest_flush_s: float | None
    run_again: bool = False


@dataclass(frozen=True)
class Step:
    offered_per_s: float
    placed_per_s: float
    placed: int
    refused: int
    not_offered: int  # placed in the step and never offered
    p99_placed_to_offered_ms: float | None  # None: no order, or more than 1% never offered
    delivered_share: float | None  # of the orders placed in the step; None: none placed
    longest_flush_ms: float | None = None  # the longest disk flush under way in the step
    run_again: bool = False  # missed in a disk stall: the next step, at the same rate, stands for it

    @property
    def meets(self) -> bool:
        return (
            self.p99_placed_to_offered_ms is not None
            and self.p99_placed_to_offered_ms < P99_MS
            and self.delivered_share is not None
            and self.delivered_share >= MIN_DELIVERED
        )


def p99(values: list[float], missing: int = 0) -> float | None:
    """Nearest-rank p99 of the values and `missing` infinitely large ones; None if there is no
    value, or if the p99 is one of the missing."""
    n = len(values) + missing
    if not values:
        return None
    rank = math.ceil(0.99 * n)
    if rank > len(values):
        return None
    return round(sorted(values)[rank - 1], 1)


def knee(steps: list[Step]) -> tuple[float | None, bool]:
    """The offered rate of the last step before the first that misses the target (None if the
    first one does), and whether a step missed it at all (if not, the knee is at least that). A
    step run again counts only by its last run."""
    best = None
    for step in steps:
        if step.run_again:
            continue
        if not step.meets:
            return best, True
        best = step.offered_per_s
    return best, False


def step_figures(
    bench: Bench,
    offered: float,
    window: tuple[float, float],
    wall_window: tuple[float, float],
    deliver_within: float,
    longest_flush_s: float | None = None,
    run_again: bool = False,
) -> Step:
    """One step's figures from what the bench saw: orders placed in the window (monotonic) and
    their placed and first offered times from the events (wall clock)."""
    since, until = window
    orders = [o for o in bench.orders.values() if since <= o.placed < until]
    placed_at = {
        s: at for s, at in bench.placed_at.items() if wall_window[0] <= at.timestamp() < wall_window[1]
    }  # by the events' clock, the same orders give or take those at the edges
    latencies = [
        (bench.offered_at[s] - at).total_seconds() * 1000 for s, at in placed_at.items() if s in bench.offered_at
    ]
    delivered = sum(1 for o in orders if o.delivered is not None and o.delivered - o.placed <= deliver_within)
    span = until - since
    return Step(
        offered_per_s=offered,
        placed_per_s=round(len(orders) / span, 1),
        placed=len(orders),
        refused=sum(1 for at in bench.refused if since <= at < until),
        not_offered=len(placed_at) - len(latencies),
        p99_placed_to_offered_ms=p99(latencies, len(placed_at) - len(latencies)),
        delivered_share=round(delivered / len(orders), 4) if orders else None,
        longest_flush_ms=ms(longest_flush_s),
        run_again=run_again,
    )


def provisional_p99_ms(bench: Bench, wall_since: float) -> float | None:
    """The p99 of placed -> offered of the orders placed since then, those not offered yet counted
    at their age (less a fetch of the event watcher): at a step's end, whether it already missed."""
    now = time.time()
    values = []
    for s, at in bench.placed_at.items():
        placed = at.timestamp()
        if placed < wall_since:
            continue
        offered: datetime | None = bench.offered_at.get(s)
        values.append(
            (offered - at).total_seconds() * 1000 if offered is not None else max(0.0, now - placed - 0.3) * 1000
        )
    return p99(values)


async def ladder(bench: Bench, watchers: set, args: argparse.Namespace, disk: DiskFlushes) -> list[Attempt]:
    """Place orders step by step; stop after the first step that already missed the latency
    target (and `--knee-past` more) or at --knee-max. A step that missed in a disk stall is run
    again first, up to --knee-retries times, until one has missed for good. Every run of a step,
    in order."""
    attempts: list[Attempt] = []
    rate, missed, retries = args.knee_start, 0, 0
    if args.warmup > 0:
        print(f"knee: warm-up, {rate:g} orders/s for {args.warmup:g}s (in no step) ...", flush=True)
        await bench.place_orders(watchers, rate, args.warmup)
    while rate <= args.knee_max:
        start, wall_start = time.monotonic(), time.time()
        print(f"knee: {rate:g} orders/s for {args.knee_step_s:g}s ...", flush=True)
        await bench.place_orders(watchers, rate, args.knee_step_s)
        flush = disk.longest_s(wall_start, time.time())
        late = provisional_p99_ms(bench, wall_start)
        missed_now = late is None or late >= P99_MS
        # (past the knee, with --knee-past, a step is only shown: the knee is already decided)
        again = (
            missed_now and not missed and flush is not None and flush >= DISK_STALL_S and retries < args.knee_retries
        )
        attempts.append(Attempt(rate, start, wall_start, flush, run_again=again))
        if again:
            retries += 1
            print(f"knee: missed while a disk flush took {ms(flush)} ms: the step again", flush=True)
            continue
        if missed_now:
            missed += 1
            if missed > args.knee_past:
                break
        rate, retries = rate + args.knee_step, 0
    return attempts


def results(bench: Bench, attempts: list[Attempt], args: argparse.Namespace) -> dict:
    figures = [
        step_figures(
            bench,
            a.rate,
            (a.start, a.start + args.knee_step_s),
            (a.wall_start, a.wall_start + args.knee_step_s),
            args.knee_step_s,
            a.longest_flush_s,
            a.run_again,
        )
        for a in attempts
    ]
    rate, reached = knee(figures)
    return {
        "knee_orders_per_s": rate,
        "knee_reached": reached,
        "knee_criteria": {"p99_placed_to_offered_ms_below": P99_MS, "delivered_share_at_least": MIN_DELIVERED},
        "knee_disk_stall_ms": ms(DISK_STALL_S),
        "knee_retries": args.knee_retries,
        "steps": [{**asdict(f), "meets": f.meets} for f in figures],
    }


def markdown(r: dict) -> str:
    lines = [
        "| offered /s | placed /s | refused | p99 placed → offered ms | delivered | not offered "
        "| longest disk flush ms | meets |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in r["steps"]:
        share = "-" if s["delivered_share"] is None else f"{100 * s['delivered_share']:.1f}%"
        p99_ms = "-" if s["p99_placed_to_offered_ms"] is None else s["p99_placed_to_offered_ms"]
        flush = "-" if s.get("longest_flush_ms") is None else s["longest_flush_ms"]
        verdict = "yes" if s["meets"] else "no"
        if s.get("run_again"):
            verdict += ", run again (disk stall)"
        lines.append(
            f"| {s['offered_per_s']:g} | {s['placed_per_s']} | {s['refused']} | {p99_ms} | {share} | "
            f"{s['not_offered']} | {flush} | {verdict} |"
        )
    rate = r["knee_orders_per_s"]
    if rate is None:
        knee_text = "below the first step"
    else:
        knee_text = f"**{rate:g} orders/s**" + ("" if r["knee_reached"] else " at least (no step missed)")
    before, after = r["machine_probe_s"]
    warm_up = f" after a warm-up of {r['warmup_s']:g} s" if r.get("warmup_s") else ""
    lines += [
        "",
        f"Knee (p99 placed → offered < {P99_MS:g} ms and ≥ {100 * MIN_DELIVERED:g}% delivered): {knee_text}; "
        f"steps of {r['knee_step_s']:g} s{warm_up}, {r['couriers']} couriers.",
        f"Machine probe (s to count to 10^7, lower is faster) before / after: {before} / {after}.",
    ]
    if "knee_disk_stall_ms" in r:
        lines.append(
            f"A step that missed while a disk flush took {r['knee_disk_stall_ms']} ms or more was run again "
            f"(up to {r['knee_retries']} times); its last run stands for its rate."
        )
    if "cpu_ms_per_order" in r:
        lines.append(f"CPU ms per order over the ladder (services, Kafka, PostgreSQL): {r['cpu_ms_per_order']}.")
    return "\n".join(lines + error_lines(r)) + "\n"
