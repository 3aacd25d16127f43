"""A visitor's browser for the page tests: Debian's Chromium (never a downloaded browser)
driven by Playwright, recording every request and response it makes and every error or
Content-Security-Policy violation its pages report, so that a test can say that nothing
left for another origin and that the strict CSP refused nothing.

(Kept minimal: the courier app's tests bring a fuller harness, tests/e2e/browser.py; the two
are to become one.)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, Response, async_playwright

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PHONE = {"width": 360, "height": 640}
DESKTOP = {"width": 1280, "height": 800}
# GIAO_SCREENSHOTS=docs/screenshots keeps pictures of the pages the tests pass through there.
SCREENSHOTS = os.environ.get("GIAO_SCREENSHOTS")

# Reports each violation to the page's console as well as to the test (an init script runs
# before the page's own and is not itself subject to the page's CSP).
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
    reason = f"{CHROMIUM} is missing: install Debian's chromium package (deploy/local/tools.sh)"
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


class Visitor:
    """One person's browser context and page, and what it did: its requests, the body of every
    response (read as it arrives: Chromium forgets them), and each Server-Sent Event received
    (Chromium keeps no body for a stream; the DevTools protocol reports each message)."""

    def __init__(self, context: BrowserContext, page: Page, origin: str) -> None:
        self.context, self.page, self.origin = context, page, origin
        self.requests: list[Request] = []
        self._bodies: list[tuple[str, asyncio.Task]] = []
        self.stream_messages: list[str] = []
        self.errors: list[str] = []
        context.on("request", lambda r: self.requests.append(r))
        context.on("response", self._read)
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _read(self, response: Response) -> None:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            self._bodies.append((response.url, asyncio.ensure_future(response.body())))

    async def bodies(self) -> list[tuple[str, bytes]]:
        """(url, body) of every response but the streams' (see stream_messages)."""
        return [(url, await task) for url, task in self._bodies]

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

    async def scrolls_sideways(self) -> bool:
        return await self.page.evaluate("document.scrollingElement.scrollWidth > document.scrollingElement.clientWidth")

    async def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            # Playwright makes the directory when needed.
            await self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))
