"""End to end: a merchant's webhook receiver hears a whole lifecycle driven by a courier, even
when the orders process is killed (-9) after the deliveries were committed and before they left."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.system import System, start_system, stop_cleanly
from tests.e2e.test_flows import City
from tests.infra import Infra
from tests.orders.receiver import receiver
from tests.support import eventually
from tools.client import Giao

pytestmark = pytest.mark.e2e

WEBHOOKS = {
    "GIAO_ORDERS_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
    "GIAO_ORDERS_WEBHOOK_POLL_S": "0.1",
    # A delivery claimed by the killed process comes back after 2 x 2 + 5 s.
    "GIAO_ORDERS_WEBHOOK_TIMEOUT_S": "2",
    # Retries every half second for a minute (the endpoint must not be disabled before the kill).
    "GIAO_ORDERS_WEBHOOK_RETRY_SCHEDULE_S": str([0.5] * 120),
}


@pytest.fixture(scope="module")
def system(infra: Infra) -> Iterator[System]:
    system = start_system(infra, dispatch_instances=1, extra_env=WEBHOOKS)
    yield system
    stop_cleanly(system)


async def test_deliveries_committed_before_a_kill_9_still_leave(system):
    up = False  # the receiver answers 503 until the orders process has been killed
    with receiver(answer=lambda _: 200 if up else 503) as hooks:
        async with Giao(system.endpoints()) as client:
            city = City(system, client)
            key = await city.merchant()
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=system.url_of("orders")) as http:
                r = await http.post(
                    "/v1/webhook-endpoints",
                    headers=headers,
                    json={"url": hooks.url, "event_types": ["order.status_changed"]},
                )
                assert r.status_code == 201, r.text
                endpoint = r.json()
            courier = await city.courier()
            order = await city.order(cod=0)
            await city.offer_for(courier, order["id"])
            await city.client.job_action(courier, order["id"], "accept")
            await city.client.job_action(courier, order["id"], "pickup")
            await city.client.job_action(
                courier, order["id"], "deliver", {"delivery_code": order["delivery_code"], "cod_collected_vnd": 0}
            )
            await city.status(order, "delivered")
            # Every delivery is committed (the order shows delivered), none has left: the
            # receiver has refused the first one at least once.
            await eventually(lambda: _async(len(hooks.all()) >= 1), what="a refused first attempt")

        killed = system.procs["orders"].pop()
        killed.kill()
        up = True
        system.add("orders", WEBHOOKS).wait_ready()

        async def all_heard():
            payloads = hooks.unique(endpoint["secret"])
            if len(payloads) == 3:
                return payloads
            async with httpx.AsyncClient(base_url=system.url_of("orders")) as http:
                log = (await http.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=headers)).json()
            raise AssertionError(f"{len(hooks.all())} requests so far; {log}")

        payloads = await eventually(all_heard, timeout=30, what="the three status changes")
    assert [p["data"]["status"] for p in payloads] == ["assigned", "picked_up", "delivered"]
    assert all(p["data"]["order_id"] == order["id"] for p in payloads)
    assert [p["data"]["sequence"] for p in payloads] == sorted(p["data"]["sequence"] for p in payloads)


async def _async(value):
    return value
