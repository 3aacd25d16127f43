"""The courier app's updates in a real browser (Debian's Chromium through Playwright): the
app's pages and service worker served as dispatch serves them, by a real server, from a copy of
their files, so that a test can publish a new version of the app under a phone that has the
old one."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from fastapi import FastAPI
from playwright.async_api import Route, expect

from services.dispatch.app import WEB, courier_app_pages
from shared import maps
from shared.pages import pages_router
from tests.e2e.browser import Phone, chromium
from tests.support import eventually, serving

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

WAIT_MS = 15_000
TITLE = 'app_name: "Giao Tài xế"'
NEW_TITLE = 'app_name: "Giao Tài xế mới"'


def courier_app(app_files: Path, shared_files: Path) -> FastAPI:
    """The courier app's part of dispatch (services/dispatch/app.py), over the given files."""
    app = FastAPI()
    for router in (courier_app_pages(app_files, shared_files), pages_router(maps.WEB_PATH, shared_files)):
        app.include_router(router)
    return app


# The browser's update check, asked for now (as on an opening): the new worker's state once its
# install has ended, or "no update" if the browser found none by the deadline.
UPDATE_NOW = """async (deadlineMs) => {
    const registration = await navigator.serviceWorker.getRegistration();
    const found = new Promise((resolve) => registration.addEventListener(
        "updatefound", () => resolve(registration.installing), { once: true }));
    await registration.update();
    const ended = found.then((worker) => new Promise((resolve) => {
        const check = () => {
            if (worker.state === "installed" || worker.state === "redundant") resolve(worker.state);
        };
        worker.addEventListener("statechange", check);
        check();
    }));
    return Promise.race([ended, new Promise((resolve) => setTimeout(() => resolve("no update"), deadlineMs))]);
}"""


@dataclass
class Shelf:
    """A phone that opened the app once (its first version kept), and the app's files."""

    phone: Phone
    messages: Path

    def publish(self, title: str) -> None:
        """A version of the app whose title says `title` (a line of messages.js)."""
        text = self.messages.read_text()
        self.messages.write_text(text.replace(TITLE, title).replace(NEW_TITLE, title))

    async def cut_stylesheet(self) -> list[str]:
        """The network fails whenever the app's stylesheet is fetched; returns the URLs it failed."""
        cut: list[str] = []

        async def cut_off(route: Route) -> None:
            cut.append(route.request.url)
            await route.abort("internetdisconnected")

        await self.phone.context.route("**/app/app.css", cut_off)
        return cut

    async def hold_stylesheet(self) -> tuple[list[str], asyncio.Event]:
        """The app's stylesheet answers only once the returned event is set; returns the URLs
        held so far, and the event."""
        held: list[str] = []
        release = asyncio.Event()

        async def hold(route: Route) -> None:
            held.append(route.request.url)
            await release.wait()
            await route.continue_()

        await self.phone.context.route("**/app/app.css", hold)
        return held, release

    async def mend(self) -> None:
        await self.phone.context.unroute("**/app/app.css")


@pytest_asyncio.fixture
async def shelf(tmp_path) -> AsyncIterator[Shelf]:
    app_files, shared_files = tmp_path / "app", tmp_path / "shared"
    shutil.copytree(WEB / "app", app_files)
    shutil.copytree(maps.WEB, shared_files)
    messages = app_files / "messages.js"
    assert TITLE in messages.read_text()
    async with serving(courier_app(app_files, shared_files)) as http, chromium() as browser:
        phone = await Phone.open(browser, str(http.base_url), 20.95, 107.08)
        await phone.page.goto(f"{phone.origin}/app/")
        await phone.page.wait_for_function(
            "async () => (await navigator.serviceWorker.ready).active.state === 'activated'"
        )
        await expect(phone.page.locator("h1")).to_have_text("Giao Tài xế")
        yield Shelf(phone, messages)
        assert phone.errors == [] and phone.foreign_requests() == []
        await phone.close()


async def test_a_new_version_reaches_the_phone_whole_or_not_at_all_and_waits_for_the_courier(shelf):
    """A new version of the app (here its title changed) arrives whole or not at all: a network
    cut half-way through leaves the version in use as it was, not a mix of old and new files.
    Once it has arrived whole, it waits for the courier's tap."""
    page, title, update = shelf.phone.page, shelf.phone.page.locator("h1"), shelf.phone.testid("app-update")
    shelf.publish(NEW_TITLE)
    cut = await shelf.cut_stylesheet()

    async def cut_reached() -> bool:
        return bool(cut)

    await page.reload()  # the browser checks the worker's script on every opening
    await eventually(cut_reached, timeout=WAIT_MS / 1000, what="the new version's fetch, cut off")
    await page.reload()
    await expect(title).to_have_text("Giao Tài xế")  # the old version, whole
    await expect(update).to_be_hidden()

    # The network is back: the new version arrives whole, and waits for the courier.
    await shelf.mend()
    await page.reload()
    await expect(update).to_be_visible(timeout=WAIT_MS)
    await expect(title).to_have_text("Giao Tài xế")
    await shelf.phone.screen("courier-app-update")
    await update.click()
    await expect(title).to_have_text("Giao Tài xế mới", timeout=WAIT_MS)
    await expect(update).to_be_hidden()


async def test_a_version_rolled_back_to_while_a_newer_one_waits_keeps_opening_without_network(shelf):
    """The server goes back to the version in use while the phone holds a newer one, waiting.
    The browser takes that for a new version, and the network fails as it comes: the copy in
    use must stay, so the app still opens without network."""
    page, title, update = shelf.phone.page, shelf.phone.page.locator("h1"), shelf.phone.testid("app-update")
    shelf.publish(NEW_TITLE)
    await page.reload()
    await expect(update).to_be_visible(timeout=WAIT_MS)  # the newer version, waiting
    shelf.publish(TITLE)  # rolled back
    await shelf.cut_stylesheet()
    # The version in use is kept whole already: it installs without the network.
    assert await page.evaluate(UPDATE_NOW, WAIT_MS) == "installed"
    await shelf.phone.network(up=False)
    await page.reload()
    await expect(title).to_have_text("Giao Tài xế")
    await expect(shelf.phone.page.locator("#offline-banner")).to_be_visible()
    await shelf.phone.network(up=True)


async def test_a_window_opened_during_an_install_offers_the_update_and_every_window_takes_it(shelf):
    """The browser began installing a new version before a window of the app was opened (the
    window cannot hear that install begin): once the install ends, that window offers the update
    too; the courier's tap in one window reloads every window of the app into the new version."""
    first = shelf.phone.page
    shelf.publish(NEW_TITLE)
    held, release = await shelf.hold_stylesheet()
    await first.evaluate("async () => { (await navigator.serviceWorker.getRegistration()).update(); }")

    async def install_begun() -> bool:
        return bool(held)

    await eventually(install_begun, timeout=WAIT_MS / 1000, what="the new version's install, held")
    second = await shelf.phone.context.new_page()
    errors: list[str] = []
    second.on("pageerror", lambda e: errors.append(str(e)))
    await second.goto(f"{shelf.phone.origin}/app/")
    assert await second.evaluate("async () => (await navigator.serviceWorker.getRegistration()).installing !== null")
    await expect(second.locator("h1")).to_have_text("Giao Tài xế")
    await expect(second.get_by_test_id("app-update")).to_be_hidden()

    release.set()
    for window in (first, second):
        await expect(window.get_by_test_id("app-update")).to_be_visible(timeout=WAIT_MS)
    await second.get_by_test_id("app-update").click()
    for window in (first, second):
        await expect(window.locator("h1")).to_have_text("Giao Tài xế mới", timeout=WAIT_MS)
    assert errors == []
