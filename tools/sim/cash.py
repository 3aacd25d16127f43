"""Cash on delivery, reconciled at the end of the demo. The cash the couriers collected, by the
simulation's own count of the deliveries it made, must be what dispatch says each courier
holds; the hub then receives it all (each courier's hand-in settles their deliveries, and
nothing stays held); and each shop's statement must count the same deliveries and the same
cash."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.orders.domain import VIETNAM
from tools.sim.run import Simulation


@dataclass
class CashCheck:
    collected_vnd: int = 0  # by the couriers' own deliveries in the run
    held_vnd: int = 0  # what dispatch said the couriers held
    handed_in_vnd: int = 0  # what the hub's hand-ins recorded
    on_statements_vnd: int = 0  # what the shops' statements counted
    mismatches: list[str] = field(default_factory=list)


async def reconcile_cash(sim: Simulation) -> CashCheck:
    delivered = [o for o in sim.orders.values() if o.expected == "delivered"]
    by_courier: Counter[int] = Counter()
    cash_by_shop: Counter[int] = Counter()
    deliveries_by_shop: Counter[int] = Counter()
    for order in delivered:
        if order.courier is not None:  # set by the delivery
            by_courier[order.courier] += order.plan.cod_amount_vnd
        cash_by_shop[order.plan.merchant] += order.plan.cod_amount_vnd
        deliveries_by_shop[order.plan.merchant] += 1
    check = CashCheck(collected_vnd=sum(by_courier.values()))
    client = sim.client

    async def courier(index: int, courier_id: str) -> None:
        held = (await client.courier_cash(courier_id))["held_vnd"]
        check.held_vnd += held
        if held != by_courier[index]:
            check.mismatches.append(f"courier {index}: collected {by_courier[index]} VND, dispatch says {held} held")
        if held:
            handin = await client.receive_cash(courier_id, held)
            check.handed_in_vnd += handin["amount_vnd"]
            if handin["held_vnd"]:
                check.mismatches.append(f"courier {index}: {handin['held_vnd']} VND still held after the hand-in")

    # The run's days in Vietnam: it may cross midnight, and the shops are the run's own.
    today = datetime.now(VIETNAM).date()
    first, last = (today - timedelta(days=1)).isoformat(), today.isoformat()

    async def shop(index: int, api_key: str) -> None:
        statement = await client.statement(api_key, first, last)
        check.on_statements_vnd += statement["cod_collected_vnd"]
        if (statement["delivered"], statement["cod_collected_vnd"]) != (deliveries_by_shop[index], cash_by_shop[index]):
            check.mismatches.append(
                f"shop {index}: delivered {deliveries_by_shop[index]} with {cash_by_shop[index]} VND, its statement "
                f"says {statement['delivered']} with {statement['cod_collected_vnd']} VND"
            )

    await asyncio.gather(*(courier(i, c) for i, c in enumerate(sim.courier_ids)))
    await asyncio.gather(*(shop(i, k) for i, k in enumerate(sim.merchant_keys)))
    return check
