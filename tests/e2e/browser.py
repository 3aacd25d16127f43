"""A courier's phone for the browser tests: Debian's Chromium (never a downloaded browser)
driven by Playwright, with a 360x640 screen, the geolocation permission and a position the
test moves. Each phone records every request it makes and every error its pages report, so a
test can say that nothing left for another origin and that the strict CSP refused nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, Request, async_playwright

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by deploy/local/tools.sh
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREEN = {"width": 360, "height": 640}
MIN_TOUCH_PX = 48
# WebPageTest's "3G Slow": 400 ms round trips, 400 kbit/s each way.
SLOW_3G = {"offline": False, "latency": 400, "downloadThroughput": 400_000 / 8, "uploadThroughput": 400_000 / 8}
# GIAO_SCREENSHOTS=docs/screenshots writes the screens the tests pass through there.
SCREENSHOTS = os.environ.get("GIAO_SCREENSHOTS")


def require_chromium() -> None:
    """Skip without Chromium on a developer's machine; in CI (CI set) a missing browser fails."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: deploy/local/tools.sh installs Debian's chromium package"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Phone:
    """One courier's phone: a browser context (its own storage) and the app's page."""

    def __init__(self, context: BrowserContext, page: Page, origin: str) -> None:
        self.context = context
        self.page = page
        self.origin = origin
        self.requests: list[Request] = []
        self.errors: list[str] = []
        context.on("request", lambda r: self.requests.append(r))
        # Answers the app handles (401, 422, no network) are logged as errors too; not those.
        page.on(
            "console",
            lambda m: (
                m.type == "error" and not m.text.startswith("Failed to load resource") and self.errors.append(m.text)
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    @classmethod
    async def open(
        cls, browser: Browser, origin: str, lat: float, lng: float, *, service_workers: str = "allow"
    ) -> Phone:
        context = await browser.new_context(
            viewport=SCREEN,
            device_scale_factor=1,
            is_mobile=True,
            has_touch=True,
            locale="vi-VN",
            timezone_id="Asia/Ho_Chi_Minh",
            geolocation={"latitude": lat, "longitude": lng},
            permissions=["geolocation"],
            service_workers=service_workers,
        )
        return cls(context, await context.new_page(), origin)

    async def close(self) -> None:
        await self.context.close()

    async def sign_in(self, signin_link: str) -> Any:
        """Opens the link from the admin's courier creation (relative to dispatch, or absolute)."""
        return await self.page.goto(urljoin(self.origin + "/", signin_link))

    async def move(self, lat: float, lng: float) -> None:
        await self.context.set_geolocation({"latitude": lat, "longitude": lng})

    async def throttle(self, conditions: dict[str, Any]) -> None:
        """Network conditions of the page's requests (Chrome DevTools' emulation)."""
        cdp = await self.context.new_cdp_session(self.page)
        await cdp.send("Network.enable")
        await cdp.send("Network.emulateNetworkConditions", conditions)

    async def network(self, up: bool) -> None:
        await self.context.set_offline(not up)

    def testid(self, name: str) -> Locator:
        return self.page.get_by_test_id(name)

    def offer(self, order_id: str) -> Locator:
        return self.page.locator(f"[data-testid=offer][data-order-id='{order_id}']")

    def job(self, order_id: str) -> Locator:
        return self.page.locator(f"[data-testid=job][data-order-id='{order_id}']")

    def foreign_requests(self) -> list[str]:
        """Requests to any origin other than the app's (its API is on the same origin)."""
        ours = urlsplit(self.origin)
        return [
            r.url
            for r in self.requests
            if (urlsplit(r.url).scheme, urlsplit(r.url).netloc) != (ours.scheme, ours.netloc)
        ]

    async def layout_problems(self) -> list[str]:
        """What makes the screen hard to use: a horizontal scroll, or a control smaller than 48 px."""
        return await self.page.evaluate(
            """(minPx) => {
            const problems = [];
            const root = document.scrollingElement;
            if (root.scrollWidth > root.clientWidth) problems.push(`scrolls sideways: ${root.scrollWidth}px`);
            for (const node of document.querySelectorAll('button, input, select, a.button')) {
                const box = node.getBoundingClientRect();
                if (box.width === 0 && box.height === 0) continue;  // not shown
                if (box.height < minPx || box.width < minPx)
                    problems.push(`${node.dataset.testid || node.textContent.trim()}: ${box.width}x${box.height}`);
            }
            return problems;
        }""",
            MIN_TOUCH_PX,
        )

    async def screen(self, name: str) -> None:
        """Checks the screen is usable; with GIAO_SCREENSHOTS set, keeps a picture of it there."""
        assert await self.layout_problems() == []
        if SCREENSHOTS:
            # Playwright makes the directory when needed.
            await self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))
