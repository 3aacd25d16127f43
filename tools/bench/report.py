"""The bench's figures: percentiles of a list and the Markdown table of a run's results."""

from __future__ import annotations

from tools.sim.run import percentile


def pct(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "count": len(values),
    }


def ms(seconds: float | None) -> int | None:
    """Seconds as whole milliseconds, as the results show them (None stays None)."""
    return None if seconds is None else round(seconds * 1000)


def markdown(r: dict) -> str:
    lines = [
        "| figure | value |",
        "| --- | --- |",
        f"| load | {r['rate']:g} orders/s offered for {r['duration_s']:g}s ({r['warmup_s']:g}s warm-up) |",
        f"| sustained orders/s placed → delivered | **{r['orders_per_s']}** (placed {r['placed_per_s']}/s) |",
        f"| orders placed / delivered / errors | {r['orders_placed']} / {r['orders_delivered']} / {r['errors']} |",
    ]
    for key, label in (
        ("placed_to_offered_ms", "placed → offered"),
        ("accepted_to_tracking_ms", "accepted → in tracking"),
        ("status_call_to_tracking_ms", "pickup call → in tracking"),
        ("location_to_tracking_ms", "location ping → in tracking"),
    ):
        v = r[key]
        lines.append(f"| {label} p50/p95/p99 ms (n) | {v['p50']} / {v['p95']} / {v['p99']} ({v['count']}) |")
    if "longest_disk_flush_ms" in r:  # every commit waits for one: a long one shows in the p99
        lines.append(f"| longest disk flush in the window ms (a commit waits for it) | {r['longest_disk_flush_ms']} |")
    for name, cpu in r["cpu_s"].items():
        lines.append(f"| {name}: CPU s / peak MiB | {cpu} / {r['peak_mem_mib'].get(name, '-')} |")
    if r.get("postgres_cpu_s_by_database"):
        by_database = ", ".join(f"{db} {cpu}" for db, cpu in r["postgres_cpu_s_by_database"].items())
        lines.append(f"| postgres by the database its backends serve: CPU s | {by_database} |")
    if "cpu_ms_per_order" in r:
        lines.append(
            f"| CPU ms per order: services, Kafka, PostgreSQL / load generator | "
            f"{r['cpu_ms_per_order']} / {r['generator_cpu_ms_per_order']} |"
        )
    before, after = r["machine_probe_s"]
    lines.append(f"| machine probe: s to count to 10^7, before / after (lower is faster) | {before} / {after} |")
    if "baseline_kafka_msgs_per_s" in r:
        lines += [
            f"| baseline Kafka produce+consume msgs/s | {r['baseline_kafka_msgs_per_s']} |",
            f"| baseline PostgreSQL single-row commits/s | {r['baseline_pg_commits_per_s']} |",
            f"| Giao's event rate / Kafka baseline | {r['ratio_kafka_events_to_baseline']} |",
            f"| Giao's commit rate (est.) / PostgreSQL baseline | {r['ratio_pg_commits_to_baseline']} |",
        ]
    halves = (
        f"{r['orders_per_s']} orders/s: {'yes' if r['target_throughput_met'] else 'no'}; "
        f"p99 {r['p99_placed_to_offered_ms']} ms: {'yes' if r['target_latency_met'] else 'no'}"
    )
    lines.append(
        f"| target (≥150 orders/s, p99 placed→offered < 500 ms) | "
        f"{'met' if r['target_met'] else 'NOT met'} ({halves}) |"
    )
    return "\n".join(lines + error_lines(r)) + "\n"


def error_lines(r: dict) -> list[str]:
    """The first errors of a run, under its figures: each is an order or a step the bench gave
    up, and a count alone hid for a morning that they were all one courier's 429s."""
    if not r.get("errors"):
        return []
    shown = r.get("error_samples", [])[:3]
    return ["", f"Errors: {r['errors']}; the first {len(shown)}:", *(f"- {e}" for e in shown)]
