"""The courier app's updates in a real browser (Debian's Chromium through Playwright): the
app's pages and service worker served as dispatch serves them, by a real server, from a copy of
their files, so that a test can publish a new version of the app under a phone that has the
old one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.async_api import Route, expect

from services.dispatch.app import WEB
from shared import maps
from shared.pages import ShellWorker, pages_router
from tests.e2e.browser import Phone, chromium
from tests.support import eventually, serving

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

WAIT_MS = 15_000
TITLE = 'app_name: "Giao Tài xế"'


def courier_app(app_files: Path, shared_files: Path) -> FastAPI:
    """The courier app's part of dispatch (services/dispatch/app.py), over the given files."""
    app = FastAPI()
    worker = ShellWorker(app_files / "sw.js", [app_files, shared_files])
    for router in (pages_router("/app", app_files, worker=worker), pages_router(maps.WEB_PATH, shared_files)):
        app.include_router(router)
    return app


async def test_a_new_version_reaches_the_phone_whole_or_not_at_all_and_waits_for_the_courier(tmp_path):
    """A new version of the app (here its title changed) arrives whole or not at all: a network
    cut half-way through leaves the version in use as it was, not a mix of old and new files.
    Once it has arrived whole, it waits for the courier's tap."""
    app_files, shared_files = tmp_path / "app", tmp_path / "shared"
    shutil.copytree(WEB / "app", app_files)
    shutil.copytree(maps.WEB, shared_files)
    messages = app_files / "messages.js"
    assert TITLE in messages.read_text()

    async with serving(courier_app(app_files, shared_files)) as http, chromium() as browser:
        phone = await Phone.open(browser, str(http.base_url), 20.95, 107.08)
        page, title, update = phone.page, phone.page.locator("h1"), phone.testid("app-update")
        await page.goto(f"{phone.origin}/app/")
        await page.wait_for_function("async () => (await navigator.serviceWorker.ready).active.state === 'activated'")
        await expect(title).to_have_text("Giao Tài xế")

        # A new version is published, and the phone's network fails while it fetches it.
        messages.write_text(messages.read_text().replace(TITLE, 'app_name: "Giao Tài xế mới"'))
        cut: list[str] = []

        async def cut_off(route: Route) -> None:
            cut.append(route.request.url)
            await route.abort("internetdisconnected")

        async def cut_reached() -> bool:
            return bool(cut)

        await phone.context.route("**/app/app.css", cut_off)
        await page.reload()  # the browser checks the worker's script on every opening
        await eventually(cut_reached, timeout=WAIT_MS / 1000, what="the new version's fetch, cut off")
        await page.reload()
        await expect(title).to_have_text("Giao Tài xế")  # the old version, whole
        await expect(update).to_be_hidden()

        # The network is back: the new version arrives whole, and waits for the courier.
        await phone.context.unroute("**/app/app.css")
        await page.reload()
        await expect(update).to_be_visible(timeout=WAIT_MS)
        await expect(title).to_have_text("Giao Tài xế")
        await phone.screen("courier-app-update")
        await update.click()
        await expect(title).to_have_text("Giao Tài xế mới", timeout=WAIT_MS)
        await expect(update).to_be_hidden()
        assert phone.errors == [] and phone.foreign_requests() == []
        await phone.close()
