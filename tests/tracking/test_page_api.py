"""GET /t/{code} through the real database: the page shares the API's lookup, response floor and
rate limit, its headers, and a tile server's origin in its CSP when one is configured."""

from __future__ import annotations

import time

import httpx

from shared import maps
from shared.pages import security_headers
from tests.support import eventually
from tests.tracking.stories import Story
from tests.tracking.support import running, send

TILES = "https://{s}.tile.example.org/{z}/{x}/{y}.png"


async def test_the_page_of_a_known_and_an_unknown_code(settings):
    tuned = settings.model_copy(update={"map_tile_url": TILES, "response_floor_ms": 30})
    async with running(tuned) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            s = Story()
            await send(tuned, s.placed())

            async def page():
                r = await client.get(f"/t/{s.code}", params={"zarsrc": "30", "utm_source": "zalo"})
                return r if r.status_code == 200 else None

            r = await eventually(page, what="the parcel's page")
            assert 'data-testid="status" data-status="placed"' in r.text
            assert f'data-tile-url="{TILES}"' in r.text
            for code in (s.code, "ZZZZZZZZZZZZ", "x" * 300, "a%20b"):
                started = time.perf_counter()
                r = await client.get(f"/t/{code}")
                assert (time.perf_counter() - started) * 1000 >= 30, "the API's response floor"
                assert r.status_code == (200 if code == s.code else 404), code
                assert (
                    r.headers["content-security-policy"]
                    == security_headers(maps.tile_origin(TILES))["content-security-policy"]
                )
                assert "https://*.tile.example.org" in r.headers["content-security-policy"]
                assert r.headers["cache-control"] == "no-store" and r.headers["x-robots-tag"] == "noindex"
                assert r.headers["referrer-policy"] == "no-referrer"
                assert ('data-testid="not-found"' in r.text) == (code != s.code)


async def test_the_page_and_the_api_share_one_rate_limit(settings):
    tuned = settings.model_copy(update={"rate_limit_per_s": 1.0, "rate_limit_burst": 4})
    async with running(tuned) as app:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            pages = [(await client.get("/t/ZZZZZZZZZZZZ")).status_code for _ in range(2)]
            api = [(await client.get("/v1/tracking/ZZZZZZZZZZZZ")).status_code for _ in range(2)]
            limited = await client.get("/t/ZZZZZZZZZZZZ")
            assert pages + api == [404] * 4 and limited.status_code == 429
            assert limited.headers["retry-after"]
            # The page's own files are not limited: a page load is one request of the budget.
            assert (await client.get("/web/tracking/tracking.js")).status_code == 200
            assert (await client.get("/map/service-area.geojson")).status_code == 200
