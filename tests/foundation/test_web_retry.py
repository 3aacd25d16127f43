"""The pages' one rule for waiting after failures (shared/web/retry.js), run in a real browser
(Debian's Chromium through Playwright) as the pages load it: served by a real server under
/web/shared/, imported as a module."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from shared import maps
from shared.pages import pages_router
from tests.e2e.browser import chromium
from tests.support import serving

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

# Each case: [failures, options, what Math.random gives] -> the wait in ms.
DELAYS = """async (cases) => {
    const { retryDelayMs } = await import("/web/shared/retry.js");
    const random = Math.random;
    try {
        return cases.map(([failures, options, draw]) => {
            Math.random = () => draw;
            return retryDelayMs(failures, options);
        });
    } finally {
        Math.random = random;
    }
}"""

POSITIONS = {"firstMs": 5000, "maxMs": 60000}  # the courier app's position batches
STREAM = {"firstMs": 1000, "maxMs": 30000, "spread": 0.5}  # its stream of offers


async def test_each_failure_in_a_row_doubles_the_wait_up_to_its_cap_and_never_under_retry_after():
    app = FastAPI()
    app.include_router(pages_router(maps.WEB_PATH, maps.WEB))
    async with serving(app) as http, chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{http.base_url}{maps.WEB_PATH}/base.css")  # any page of the origin
        cases = [[n, POSITIONS, 0.5] for n in range(1, 8)]
        assert await page.evaluate(DELAYS, cases) == [5000, 10000, 20000, 40000, 60000, 60000, 60000]

        # the server's Retry-After is the least wait, above the doubling and above the cap
        retry_after = [[1, {**POSITIONS, "retryAfterS": 30}, 0.5], [6, {**POSITIONS, "retryAfterS": 90}, 0.5]]
        assert await page.evaluate(DELAYS, retry_after) == [30000, 90000]
        assert await page.evaluate(DELAYS, [[3, {**POSITIONS, "retryAfterS": 2}, 0.5]]) == [20000]

        # a spread takes up to its share off the wait, at random, and adds up to half as much to
        # a Retry-After: between 2 and 4 s at the third failure of the stream
        spread = [[3, STREAM, 0], [3, STREAM, 0.5], [3, STREAM, 0.999999], [1, {**STREAM, "retryAfterS": 10}, 0.999999]]
        full, middle, least, after = await page.evaluate(DELAYS, spread)
        assert (full, middle) == (4000, 3000) and 2000 <= least < 2001
        assert 12499 < after <= 12500
