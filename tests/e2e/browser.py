"""The browser tests' harness: Debian's Chromium (never a downloaded browser) driven by
Playwright. A `Phone` is a courier's phone (360x640, the geolocation permission, a position the
test moves); a `Visitor` is a customer, a merchant or an operator at a phone or a desk, whose
every response body and Server-Sent Event is kept for privacy scans. Both record every request
and every error or Content-Security-Policy violation their pages report, so a test can say that
nothing left for another origin and that the strict CSP refused nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, Request, Response, Route, async_playwright
from playwright.async_api import Error as PlaywrightError

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by deploy/local/tools.sh
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PHONE = {"width": 360, "height": 640}
SCREEN = PHONE  # a courier's phone
DESKTOP = {"width": 1280, "height": 800}
MIN_TOUCH_PX = 48
# WebPageTest's "3G Slow": 400 ms round trips, 400 kbit/s each way.
SLOW_3G = {"offline": False, "latency": 400, "downloadThroughput": 400_000 / 8, "uploadThroughput": 400_000 / 8}
# GIAO_SCREENSHOTS=docs/screenshots writes the screens the tests pass through there.
SCREENSHOTS = os.environ.get("GIAO_SCREENSHOTS")

# Reports each violation to the test (an init script runs before the page's own and is not
# itself subject to the page's CSP).
_WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


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
    require_chromium()
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
        return await layout_problems(self.page)

    async def screen(self, name: str) -> None:
        """Checks the screen is usable; with GIAO_SCREENSHOTS set, keeps a picture of it there."""
        assert await self.layout_problems() == []
        if SCREENSHOTS:
            # Playwright makes the directory when needed.
            await self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


async def _body(response: Response) -> bytes | None:
    """The body, or None when Chromium dropped it: a page navigated away before it arrived."""
    try:
        return await response.body()
    except PlaywrightError:
        return None


# The controls a finger must hit: buttons, fields, links made buttons, a disclosure's summary
# and the maps' zoom buttons and the markers one taps.
_CONTROLS = (
    "button, input:not([type=hidden]), select, a[href], summary, .leaflet-control-zoom a,"
    " .leaflet-marker-icon.leaflet-interactive"
)


async def layout_problems(page: Page) -> list[str]:
    """What makes the screen hard to use: a horizontal scroll, or a control smaller than 48 px."""
    return await page.evaluate(
        """([minPx, selector]) => {
        const problems = [];
        const root = document.scrollingElement;
        if (root.scrollWidth > root.clientWidth) problems.push(`scrolls sideways: ${root.scrollWidth}px`);
        for (const node of document.querySelectorAll(selector)) {
            const box = node.getBoundingClientRect();
            if (box.width === 0 && box.height === 0) continue;  // not shown
            const name = node.dataset.testid || node.title || node.textContent.trim();
            if (box.height < minPx || box.width < minPx) problems.push(`${name}: ${box.width}x${box.height}`);
        }
        return problems;
    }""",
        [MIN_TOUCH_PX, _CONTROLS],
    )


class HeldClock:
    """A page's timers run by the test (Playwright's clock), so that a backoff of minutes takes
    seconds; and a route that refuses some calls for now, noting at which step of the clock
    each came. Install it before the page's timers start; `stop` it when the test takes over."""

    def __init__(self, page: Page, step_ms: int) -> None:
        self.page, self.step_ms = page, step_ms
        self.step = 0
        self.calls: list[int] = []  # the step at which each call to the refused URL came
        self.refusing = True

    async def install(self) -> None:
        await self.page.context.clock.install()

    async def refuse(self, url: str, status: int) -> None:
        """Calls to `url` get `status` while `refusing`, and go through after."""

        async def answer(route: Route) -> None:
            self.calls.append(self.step)
            if self.refusing:
                await route.fulfill(
                    status=status, content_type="application/problem+json", body=f'{{"status": {status}}}'
                )
            else:
                await route.continue_()

        await self.page.route(url, answer)

    async def stop(self) -> None:
        """From now on the page's timers run only as `run_to` moves the clock. The clock runs
        until it stops, so it stops a little ahead of now (in seconds), further if it got there
        first (a busy machine)."""
        for ahead in (0.2, 1.0, 5.0):
            try:
                await self.page.clock.pause_at(await self.page.evaluate("Date.now() / 1000") + ahead)
                return
            except PlaywrightError as exc:
                if "to the past" not in str(exc):
                    raise
        raise AssertionError("the page's clock ran past every point it was to stop at")

    async def run_to(self, last: int) -> None:
        """Moves the clock one step at a time up to step `last`. The page may act on a timer a
        step later than it fired (it reads storage or the network first), which tests allow for."""
        while self.step < last:
            self.step += 1
            await self.page.clock.run_for(self.step_ms)
            await self.page.evaluate("0")


class Visitor:
    """One person's browser context and page, and what it did: its requests, the body of every
    response (read as it arrives: Chromium forgets them), and each Server-Sent Event received
    (Chromium keeps no body for a stream; the DevTools protocol reports each message)."""

    def __init__(self, context: BrowserContext, page: Page, origin: str) -> None:
        self.context, self.page, self.origin = context, page, origin
        self.requests: list[Request] = []
        self._bodies: list[tuple[str, asyncio.Task]] = []
        self.stream_messages: list[str] = []
        self.unread: list[str] = []
        self.errors: list[str] = []
        context.on("request", lambda r: self.requests.append(r))
        context.on("response", self._read)
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _read(self, response: Response) -> None:
        # A redirect or a revalidated (304) answer has no body to read.
        if 300 <= response.status < 400:
            return
        if "text/event-stream" not in response.headers.get("content-type", ""):
            self._bodies.append((response.url, asyncio.ensure_future(_body(response))))

    async def bodies(self) -> list[tuple[str, bytes]]:
        """(url, body) of every response but the streams' (see stream_messages) and those the
        browser dropped before they could be read (`unread`)."""
        read = [(url, await task) for url, task in self._bodies]
        self.unread = [url for url, body in read if body is None]
        return [(url, body) for url, body in read if body is not None]

    @classmethod
    async def open(cls, browser: Browser, origin: str, *, viewport: dict = PHONE, scripts: bool = True) -> Visitor:
        phone = viewport["width"] < 600
        context = await browser.new_context(
            viewport=viewport,
            device_scale_factor=1,
            is_mobile=phone,
            has_touch=phone,
            locale="vi-VN",
            timezone_id="Asia/Ho_Chi_Minh",
            java_script_enabled=scripts,
            service_workers="block",
        )
        await context.add_init_script(_WATCH_CSP)
        visitor = cls(context, await context.new_page(), origin)
        devtools = await context.new_cdp_session(visitor.page)
        devtools.on(
            "Network.eventSourceMessageReceived",
            lambda m: visitor.stream_messages.append(f"event: {m['eventName']}\ndata: {m['data']}"),
        )
        await devtools.send("Network.enable")
        return visitor

    async def close(self) -> None:
        await self.context.close()

    def foreign_requests(self) -> list[str]:
        ours = urlsplit(self.origin)
        return [
            r.url
            for r in self.requests
            if (urlsplit(r.url).scheme, urlsplit(r.url).netloc) != (ours.scheme, ours.netloc)
        ]

    async def csp_violations(self) -> list[str]:
        return await self.page.evaluate("window.__cspViolations || []")

    async def layout_problems(self) -> list[str]:
        return await layout_problems(self.page)

    async def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            # Playwright makes the directory when needed.
            await self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))
