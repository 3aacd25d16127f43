"""A service's shutdown ends within its grace as a whole, and what holds it up is named in the log."""

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
    stuck = [r.getMessage() for r in caplog.records if "did not end in time" in r.getMessage()]
    assert len(stuck) == 1, caplog.text
    assert "stubborn-loop" in stuck[0] and "release.wait()" in stuck[0]  # its name and where it waits
    release.set()


async def test_steps_that_hang_share_one_grace_and_the_shutdown_still_ends_within_it(
    infra, database, topic_prefix, caplog, monkeypatch
):
    """Two steps hang (a loop that swallows its cancel, then closing the Kafka clients): the
    second gets what the first left of the grace, not a grace of its own, and the steps after
    it still run (the pool is closed)."""
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap, topic_prefix=topic_prefix, shutdown_grace_s=1
    )
    rt = Runtime(settings, name="probe", database_url=database, migrations=None, relay=False)
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()

    async def kafka_that_never_closes() -> None:
        await release.wait()

    rt.loop("stubborn-loop", stubborn)
    await rt.start()
    pool, close_kafka = rt.pool, rt.kafka.stop
    monkeypatch.setattr(rt.kafka, "stop", kafka_that_never_closes)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="shared.service"):
        await asyncio.wait_for(rt.stop(), 10)
    took = time.monotonic() - started
    release.set()
    await close_kafka()
    assert took < 1 + 2 * Runtime.LAST_STEP_S + 0.3, took  # one grace in all, not one per step
    late = [r.getMessage() for r in caplog.records if "did not end in time" in r.getMessage()]
    assert len(late) == 2, caplog.text
    assert "stubborn-loop" in late[0] and "closing the Kafka clients" in late[1]
    assert "kafka_that_never_closes" in late[1]  # where it waits
    assert pool.is_closing()
