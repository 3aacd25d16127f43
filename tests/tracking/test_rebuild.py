"""`python -m services.tracking rebuild`: the read model again from the topics."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import httpx
import pytest

from services.tracking.rebuild import RebuildRefused, rebuild
from tests.conftest import ROOT
from tests.support import eventually
from tests.tracking.stories import Story
from tests.tracking.support import create_topics, running, send


async def answer(app, code: str, check) -> dict:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:

        async def get():
            r = await client.get(f"/v1/tracking/{code}")
            return r.status_code == 200 and check(r.json()) and r.json()

        return await eventually(get, what=f"tracking {code}")


async def run_command(settings) -> tuple[int, str]:
    env = {
        **os.environ,
        "GIAO_TRACKING_DATABASE_URL": settings.database_url,
        "GIAO_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "GIAO_TOPIC_PREFIX": settings.topic_prefix,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.tracking",
        "rebuild",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode()


async def test_rebuild_from_the_topics(settings):
    await create_topics(settings)
    done, moving = Story(), Story()
    await send(
        settings,
        done.placed(),
        done.assigned(),
        done.picked_up(),
        done.delivered(),
        moving.placed(),
        moving.assigned(),
        moving.picked_up(),
    )
    async with running(settings) as app:
        before = await answer(app, done.code, lambda b: b["status"] == "delivered")
        await answer(app, moving.code, lambda b: b["status"] == "picked_up")
        await send(settings, moving.location(20.9541, 107.0611))
        await answer(app, moving.code, lambda b: b["courier"]["location"])
        with pytest.raises(RebuildRefused, match="stop every tracking instance"):
            await rebuild(settings)
        pool = app.state.runtime.pool
        assert await pool.fetchval("SELECT count(*) FROM parcels") == 2, "a refused rebuild changes nothing"

    code, out = await run_command(settings)
    assert code == 0, out

    async with running(settings) as app:
        pool = app.state.runtime.pool
        after = await answer(app, done.code, lambda b: b["status"] == "delivered")
        assert after == before
        # Old pings are not replayed; the next one shows again.
        on_the_way = await answer(app, moving.code, lambda b: b["status"] == "picked_up")
        assert on_the_way["courier"]["location"] is None
        await send(settings, moving.location(20.9552, 107.0533))
        await answer(app, moving.code, lambda b: (b["courier"]["location"] or {}).get("lat") == 20.9552)
        assert await pool.fetchval("SELECT sum(applied) FROM inbox_applied WHERE consumer = 'tracking'") == 7


async def test_rebuild_empties_the_read_model(settings):
    await create_topics(settings)
    s = Story()
    await send(settings, s.placed())
    async with running(settings) as app:
        await answer(app, s.code, lambda b: True)
    report = await rebuild(settings)
    assert report.replay_from_start == {
        settings.topic("giao.order-tracking.v1"): 1,
        settings.topic("giao.dispatch.v1"): 1,
    }
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM parcels") == 0
        assert await conn.fetchval("SELECT count(*) FROM inbox_positions WHERE consumer = 'tracking'") == 0
    finally:
        await conn.close()
