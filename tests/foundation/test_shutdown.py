"""A service's shutdown is bounded at every step, and what holds it up is named in the log."""

from __future__ import annotations

import asyncio
import logging
import time

from shared.service import Runtime
from shared.settings import CommonSettings


async def test_a_loop_that_ignores_its_cancel_is_named_with_where_it_waits_and_shutdown_goes_on(
    infra, database, topic_prefix, caplog
):
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix, shutdown_grace_s=1
    )
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=False)
    release = asyncio.Event()

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await release.wait()  # a clean-up that never ends: the cancel is swallowed
                return

    async def obliging() -> None:
        await asyncio.sleep(3600)

    rt.loop("stubborn-loop", stubborn)
    rt.loop("obliging-loop", obliging)
    await rt.start()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="shared.service"):
        await asyncio.wait_for(rt.stop(), 10)
    assert time.monotonic() - started < 5  # the grace (1 s), not forever
    assert not rt.started
    stuck = [r.getMessage() for r in caplog.records if "did not end when cancelled" in r.getMessage()]
    assert len(stuck) == 1, caplog.text
    assert "stubborn-loop" in stuck[0] and "release.wait()" in stuck[0]  # its name and where it waits
    release.set()
