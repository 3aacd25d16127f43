"""`make demo`: a living city. Merchants in Hạ Long place orders, couriers ride and deliver,
customers watch; a live display while it runs, a summary table and var/demo-summary.json at
the end, after the cash collected on delivery is reconciled (tools/sim/cash.py: what couriers
hold, the hub's hand-ins, the shops' statements). Exits 0 when nothing went wrong, 1 when something did.

    python -m tools.sim --rate 2 --couriers 25 --duration 40 --speedup 60 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from services.orders.webhooks import EVENT_TYPES
from tools.client import Endpoints, Giao
from tools.sim.cash import reconcile_cash
from tools.sim.city import build_script
from tools.sim.run import FINAL, Simulation, percentile
from tools.sim.webhooks import Inbox, drained, receiving

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.sim", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=1.5, help="orders per real second (Poisson)")
    p.add_argument("--merchants", type=int, default=10)
    p.add_argument("--couriers", type=int, default=30)
    p.add_argument("--duration", type=float, default=40, help="real seconds of order placing")
    # The run ends as soon as every order is final; this is the most it waits. An order placed in
    # the last second can need a courier's ride to the shop and 5 km at a bicycle's pace: with the
    # default seed the last order (4.5 km) was still on its way when 35 s ran out, and delivered
    # 50 s after placing ended.
    p.add_argument("--drain", type=float, default=60, help="real seconds, at most, to let orders finish afterwards")
    p.add_argument("--speedup", type=float, default=60, help="city seconds per real second")
    p.add_argument("--follow-share", type=float, default=0.3, help="share of orders a customer follows live")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--summary", type=Path, default=ROOT / "var" / "demo-summary.json")
    local = Endpoints()  # from GIAO_<SERVICE>_PORT and GIAO_ADMIN_TOKEN, as `make up` used them
    p.add_argument("--orders-url", default=local.orders)
    p.add_argument("--dispatch-url", default=local.dispatch)
    p.add_argument("--tracking-url", default=local.tracking)
    p.add_argument("--admin-token", default=local.admin_token)
    p.add_argument("--no-live", action="store_true", help="print a line every few seconds instead")
    p.add_argument("--no-webhooks", action="store_true", help="no webhook receiver for the first shop")
    return p.parse_args(argv)


def absolute(base: str, link: str) -> str:
    """A link a service gave, relative to it unless its public URL is set."""
    return link if "://" in link else base.rstrip("/") + link


def where_to_look(console: Console, sim: Simulation, endpoints: Endpoints) -> None:
    """The pages a person can open while the city runs."""
    courier = sim.script.couriers[0]
    console.print(
        f"Watch [bold]{courier.name}[/bold] work from the courier app (a phone-sized window is best): "
        f"{absolute(endpoints.dispatch, sim.courier_links[0])}"
    )
    console.print(f"Operations console (admin token {endpoints.admin_token!r}): {endpoints.dispatch}/ops/")


def customers_pages(console: Console, sim: Simulation, endpoints: Endpoints, count: int = 3) -> None:
    for order in list(sim.orders.values())[:count]:
        console.print(f"A customer's tracking page: {endpoints.tracking}/t/{order.tracking_code}")


def progress(sim: Simulation, elapsed: float) -> Table:
    counts = sim.status_counts()
    t = Table(title=f"Giao · Hạ Long · {elapsed:5.1f}s (×{sim.speedup:g} city time)", show_lines=False)
    for col in (
        "placed",
        "waiting",
        "on the way",
        "delivered",
        "failed→returned",
        "cancelled",
        "couriers busy",
        "p95 order ms",
        "p95 courier→customer ms",
        "errors",
    ):
        t.add_column(col, justify="right")
    p95_place = percentile(sim.client.stats.latencies_ms.get("place_order", []), 95)
    p95_seen = percentile(sim.action_to_customer_ms(), 95)
    t.add_row(
        str(sim.counters.placed),
        str(counts.get("placed", 0)),
        str(counts.get("assigned", 0) + counts.get("picked_up", 0)),
        str(counts.get("delivered", 0)),
        f"{sim.counters.failed}→{counts.get('returned', 0)}",
        str(counts.get("cancelled", 0)),
        f"{len(sim.courier_busy)}/{len(sim.script.couriers)}",
        str(p95_place or "-"),
        str(p95_seen or "-"),
        str(len(sim.counters.errors) + len(sim.client.stats.errors)),
    )
    return t


async def agreement(sim: Simulation) -> tuple[dict[str, int], list[str]]:
    """Ask orders and tracking for every order: they must agree with each other and with what
    the couriers did."""
    final: dict[str, int] = {}
    mismatches: list[str] = []
    sem = asyncio.Semaphore(20)

    async def check(order) -> None:
        async with sem:
            deadline = time.monotonic() + 10
            while True:
                o = await sim.client.get_order(order.api_key, order.id)
                tracked_status = (await sim.client.parcel(order.tracking_code)).get("status")
                expected_ok = o["status"] == order.expected or (order.expected == "placed" and o["status"] == "expired")
                if o["status"] == tracked_status and expected_ok:
                    final[o["status"]] = final.get(o["status"], 0) + 1
                    return
                if time.monotonic() > deadline:  # they agree within a second when not under load
                    mismatches.append(
                        f"{order.id}: courier drove it to {order.expected}, orders says "
                        f"{o['status']}, tracking says {tracked_status}"
                    )
                    return
                await asyncio.sleep(0.2)

    await asyncio.gather(*(check(o) for o in sim.orders.values()))
    return final, mismatches


async def city(
    console: Console, sim: Simulation, endpoints: Endpoints, args: argparse.Namespace, started: float
) -> tuple[dict[str, int], list[str]]:
    """Run the city with its live display; then orders' and tracking's agreement."""
    where_to_look(console, sim, endpoints)
    run = asyncio.create_task(sim.run(drain_s=args.drain))
    shown_pages = False

    def show_pages_once() -> None:
        nonlocal shown_pages
        if not shown_pages and len(sim.orders) >= 3:
            customers_pages(console, sim, endpoints)
            shown_pages = True

    if args.no_live or not console.is_terminal:
        while not run.done():
            await asyncio.wait([run], timeout=5)
            show_pages_once()
            c = sim.counters
            console.print(
                f"{time.monotonic() - started:5.0f}s placed {c.placed} delivered {c.delivered} "
                f"returned {c.returned} cancelled {c.cancelled} busy {len(sim.courier_busy)} "
                f"errors {len(c.errors)}"
            )
    else:
        with Live(progress(sim, 0), console=console, refresh_per_second=4) as live:
            while not run.done():
                await asyncio.wait([run], timeout=0.25)
                show_pages_once()
                live.update(progress(sim, time.monotonic() - started))
    await run
    final, mismatches = await agreement(sim)
    return final, mismatches


async def main(args: argparse.Namespace) -> int:
    console = Console()
    script = build_script(
        seed=args.seed,
        merchants=args.merchants,
        couriers=args.couriers,
        rate_per_s=args.rate / args.speedup,
        duration_s=args.duration * args.speedup,
        follow_share=args.follow_share,
    )
    endpoints = Endpoints(args.orders_url, args.dispatch_url, args.tracking_url, args.admin_token)
    started = time.monotonic()
    async with Giao(endpoints) as client:
        sim = Simulation(client, script, speedup=args.speedup)
        console.print(
            f"[bold]Giao demo[/bold]: {len(script.merchants)} shops, {len(script.couriers)} couriers, "
            f"{len(script.orders)} orders over {args.duration:g}s (seed {args.seed}, ×{args.speedup:g})"
        )
        await sim.setup()
        async with contextlib.AsyncExitStack() as stack:
            inbox: Inbox | None = None
            # The shop with the most orders in the script hears back through a webhook.
            shop = max(range(len(script.merchants)), key=lambda m: sum(o.merchant == m for o in script.orders))
            if not args.no_webhooks:
                inbox = await stack.enter_async_context(receiving(client, [sim.merchant_keys[shop]], list(EVENT_TYPES)))
                console.print(f"{script.merchants[shop].name} hears back through a signed webhook on 127.0.0.1")
            final, mismatches = await city(console, sim, endpoints, args, started)
            cash = await reconcile_cash(sim)
            webhooks_drained = inbox is None or await drained(client, sim.merchant_keys[shop])

    counts = sim.status_counts()
    errors = sim.counters.errors + client.stats.errors + mismatches + cash.mismatches
    if inbox is not None and (inbox.bad_signatures or inbox.out_of_order or not webhooks_drained):
        errors.append(
            f"webhooks: {inbox.bad_signatures} bad signatures, {inbox.out_of_order} out of order, "
            f"{'all' if webhooks_drained else 'not all'} delivered"
        )
    lat = client.stats.latencies_ms
    summary = {
        "seed": args.seed,
        "speedup": args.speedup,
        "duration_s": round(time.monotonic() - started, 1),
        "merchants": len(script.merchants),
        "couriers": len(script.couriers),
        "orders_placed": sim.counters.placed,
        "orders_delivered": final.get("delivered", 0),
        "orders_returned": final.get("returned", 0),
        "orders_cancelled": final.get("cancelled", 0),
        "orders_expired": final.get("expired", 0),
        "orders_unfinished": sum(v for k, v in counts.items() if k not in FINAL),
        "delivery_failures": sim.counters.failed,
        "offers_declined": sim.counters.declined,
        "cancel_refused": sim.counters.cancel_refused,
        "location_points_sent": sim.counters.locations_sent,
        "status_agreement": {"checked": len(sim.orders), "mismatches": len(mismatches)},
        "latency_ms": {
            name: {"p50": percentile(v, 50), "p95": percentile(v, 95), "p99": percentile(v, 99), "count": len(v)}
            for name, v in sorted(lat.items())
        },
        "courier_action_to_customer_ms": {
            "p50": percentile(sim.action_to_customer_ms(), 50),
            "p95": percentile(sim.action_to_customer_ms(), 95),
        },
        "cash_on_delivery_vnd": {
            "collected": cash.collected_vnd,
            "held_by_couriers": cash.held_vnd,
            "handed_in": cash.handed_in_vnd,
            "on_shop_statements": cash.on_statements_vnd,
            "mismatches": len(cash.mismatches),
        },
        "webhooks": None
        if inbox is None
        else {
            "received": inbox.received,
            "signatures_verified": inbox.verified,
            "bad_signatures": inbox.bad_signatures,
            "repeats_dropped": inbox.repeats,
            "out_of_order": inbox.out_of_order,
            "all_delivered": webhooks_drained,
        },
        "errors": len(errors),
        "error_samples": errors[:20],
    }
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")

    table = Table(title="Giao demo: summary")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "orders_placed",
        "orders_delivered",
        "orders_returned",
        "orders_cancelled",
        "orders_expired",
        "orders_unfinished",
        "delivery_failures",
        "offers_declined",
        "cancel_refused",
        "location_points_sent",
        "errors",
    ):
        table.add_row(key, str(summary[key]))
    for name in ("place_order", "courier_jobs", "job_accept", "track"):
        if name in summary["latency_ms"]:
            latency = summary["latency_ms"][name]
            table.add_row(f"{name} p50/p95/p99 ms", f"{latency['p50']}/{latency['p95']}/{latency['p99']}")
    seen = summary["courier_action_to_customer_ms"]
    table.add_row("courier action → customer sees it p50/p95 ms", f"{seen['p50']}/{seen['p95']}")
    table.add_row("orders and tracking agree", f"{len(sim.orders) - len(mismatches)}/{len(sim.orders)}")
    table.add_row(
        "cash on delivery VND: collected = held = handed in = on statements",
        f"{cash.collected_vnd:,} = {cash.held_vnd:,} = {cash.handed_in_vnd:,} = {cash.on_statements_vnd:,}".replace(
            ",", "."
        ),
    )
    if inbox is not None:
        table.add_row("webhooks received / signatures verified", f"{inbox.received} / {inbox.verified}")
    console.print(table)
    for e in errors[:10]:
        console.print(f"[red]error[/red] {e}")
    console.print(f"summary written to {args.summary}")
    customers_pages(console, sim, endpoints)
    console.print(
        f"The services keep running until `make down`: the pages above stay open, and "
        f"{endpoints.dispatch}/ops/ shows the city."
    )
    ok = not errors and summary["orders_delivered"] > 0
    console.print("[green]clean run[/green]" if ok else "[red]the run had problems[/red]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
