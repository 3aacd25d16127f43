"""The README's quickstart, run as written (its bash blocks, in order) against the services as
real processes: one parcel placed, offered, accepted, picked up and delivered by hand, and the
customer's stream ending on `delivered`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import httpx
import pytest

from tests.docs.readme import quickstart_script
from tests.e2e.system import start_system, stop_cleanly
from tests.infra import need_tool
from tests.support import eventually

pytestmark = pytest.mark.e2e

# The quickstart runs at a person's pace with the services' default timings (an offer waits
# 30 s for an answer), not the short ones the other e2e tests use to see expiries happen.
README_TIMINGS = {"GIAO_DISPATCH_OFFER_TIMEOUT_S": "30", "GIAO_DISPATCH_WINDOW_S": "1800"}
RESULT = "QUICKSTART-RESULT"


@pytest.fixture(scope="module")
def system(infra):
    system = start_system(infra, extra_env=README_TIMINGS)
    yield system
    stop_cleanly(system)


def tracking_events(output: str) -> list[dict]:
    return [
        json.loads(line[len("data:") :])
        for line in output.splitlines()
        if line.startswith("data:") and "tracking_code" in line
    ]


async def test_the_readme_quickstart_takes_one_parcel_to_delivered(system) -> None:
    for tool in ("bash", "curl", "jq"):
        need_tool(tool)
    # Run as written; the trailer only reports what the test checks afterwards.
    script = f'set -euo pipefail\n{quickstart_script()}\necho "{RESULT} $MERCHANT $ORDER_ID $TRACKING_CODE"\n'
    env = {
        **os.environ,
        "ORDERS": system.url_of("orders"),
        "DISPATCH": system.url_of("dispatch"),
        "TRACKING": system.url_of("tracking"),
        "GIAO_ADMIN_TOKEN": system.admin_token,
    }
    # In a thread: the event loop goes on serving the fixtures' tasks meanwhile.
    run = await asyncio.to_thread(
        subprocess.run, ["bash"], input=script, text=True, capture_output=True, env=env, timeout=120
    )
    assert run.returncode == 0, f"the quickstart failed:\n{run.stdout}\n{run.stderr}"
    out = run.stdout

    assert '"assigned"\n"picked_up"\n"delivered"\n' in out, out
    stream = tracking_events(out)
    assert stream and stream[-1]["status"] == "delivered", out
    assert "event: end" in out  # the stream closed itself after the final status

    *_, merchant, order_id, tracking_code = next(line for line in out.splitlines() if line.startswith(RESULT)).split(
        " "
    )
    async with httpx.AsyncClient() as http:

        async def merchant_sees_delivered():
            r = await http.get(
                f"{system.url_of('orders')}/v1/orders/{order_id}", headers={"Authorization": f"Bearer {merchant}"}
            )
            return r.json() if r.json()["status"] == "delivered" else None

        order = await eventually(merchant_sees_delivered, timeout=15, what="the merchant's order delivered")
    assert [h["status"] for h in order["history"]] == ["placed", "assigned", "picked_up", "delivered"]
    assert order["tracking_code"] == tracking_code
