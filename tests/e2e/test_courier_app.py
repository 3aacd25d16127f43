"""The courier app in a real browser (Debian's Chromium through Playwright) against the real
services: a courier signs in from the link, goes on shift, gets offers, works jobs, and keeps
working without network.

One system and one browser serve the module; every test has its own spot of the map and its
own phone (a browser context: its own storage, position and network).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Locator, Page, Request, Route, expect

from tests.e2e.browser import SLOW_3G, HeldClock, Phone, chromium, require_chromium
from tests.e2e.system import start_system, stop_cleanly
from tests.e2e.test_flows import City
from tests.support import eventually
from tools.client import Giao

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

OFFER_TIMEOUT_S = 10  # long enough for a phone polling every 2.5 s to show the offer and a tap
STREAM_MAX_S = 20  # the server ends a courier's stream of offers after this; the app opens another
WAIT_MS = 15_000
COURIER_CODE_MAX_FAILURES = 6
RECIPIENT = ("Nguyễn Văn An", "903123456", "Cao Xanh")  # what City.order's drop-off says


@pytest.fixture(scope="module")
def system(infra):
    require_chromium()
    system = start_system(
        infra,
        extra_env={
            "GIAO_DISPATCH_OFFER_TIMEOUT_S": str(OFFER_TIMEOUT_S),
            "GIAO_DISPATCH_WINDOW_S": "300",
            "GIAO_DISPATCH_STREAM_MAX_S": str(STREAM_MAX_S),
            # 6 wrong codes across a courier's jobs lock them out of deliveries (a job locks
            # for a while after 5 in a row: the sixth must be on another job).
            "GIAO_DISPATCH_COURIER_CODE_MAX_FAILURES": str(COURIER_CODE_MAX_FAILURES),
        },
    )
    yield system
    stop_cleanly(system)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(system):
    async with chromium() as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def city(system):
    async with Giao(system.endpoints()) as client:
        city = City(system, client)
        await city.merchant()
        yield city


@dataclass
class Courier:
    id: str
    token: str
    signin_link: str
    phone: Phone


@asynccontextmanager
async def courier_phone(city: City, browser, *, service_workers: str = "allow") -> AsyncIterator[Courier]:
    """A new courier and their phone, a little north of the city's pickup point; on leaving,
    the phone must have asked nothing of another origin and its pages reported no error."""
    created = await city.client.create_courier("Trần Văn Minh", "0987654321", "motorbike")
    phone = await Phone.open(
        browser, city.system.url_of("dispatch"), city.lat + 0.002, city.lng, service_workers=service_workers
    )
    try:
        yield Courier(str(created["id"]), created["token"], created["signin_link"], phone)
        assert phone.foreign_requests() == []
        assert phone.errors == []
    finally:
        await phone.close()


async def go_online(courier: Courier) -> None:
    await courier.phone.sign_in(courier.signin_link)
    await courier.phone.testid("online-toggle").click()
    await expect(courier.phone.testid("online-toggle")).to_have_attribute("aria-checked", "true", timeout=WAIT_MS)


@pytest_asyncio.fixture(loop_scope="module")
async def on_shift(city, browser) -> AsyncIterator[Courier]:
    async with courier_phone(city, browser) as courier:
        await go_online(courier)
        yield courier


async def admin_courier(city: City, courier_id: str) -> dict:
    return await city.client.call(
        "admin_courier",
        "GET",
        f"{city.system.url_of('dispatch')}/v1/admin/couriers/{courier_id}",
        token=city.system.admin_token,
    )


async def tracking_timeline(city: City, order: dict) -> list[str]:
    """The statuses tracking shows ([] while it has not consumed the order's first event)."""
    return [step["status"] for step in (await city.client.parcel(order["tracking_code"])).get("timeline", [])]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def is_poll(request: Request) -> bool:
    return request.method == "GET" and urlsplit(request.url).path == "/v1/courier/jobs"


def is_stream(request: Request) -> bool:
    return request.method == "GET" and urlsplit(request.url).path == "/v1/courier/jobs/events"


class Traffic:
    """The page's requests, and the ends of its streams of offers, in the order the browser
    reported them."""

    def __init__(self, page: Page) -> None:
        self.log: list[tuple[str, Request]] = []
        page.on("request", lambda r: self.log.append(("sent", r)))
        # Chromium reports a stream the server ended as failed (net::ERR_ABORTED), not finished.
        page.on("requestfinished", self._ended)
        page.on("requestfailed", self._ended)

    def _ended(self, request: Request) -> None:
        if is_stream(request):
            self.log.append(("ended", request))

    def mark(self) -> int:
        return len(self.log)

    def polls(self, since: int) -> list[str]:
        return [r.url for kind, r in self.log[since:] if kind == "sent" and is_poll(r)]

    def streams(self, since: int = 0) -> list[Request]:
        return [r for kind, r in self.log[since:] if kind == "sent" and is_stream(r)]

    async def stream_ended(self) -> int:
        """Where the log goes on after the first stream's end (0 before that)."""
        return next((i + 1 for i, (kind, _) in enumerate(self.log) if kind == "ended"), 0)


async def stream_up(phone: Phone) -> None:
    """The app holds its stream of offers and its first event has come (polls slowed down)."""
    await expect(phone.page.locator("#offers")).to_have_attribute("data-push", "live", timeout=WAIT_MS)


async def offer_by_push(city: City, phone: Phone, traffic: Traffic, since: int) -> Locator:
    """An order placed now shows as an offer with no poll since `since`: it came by the stream."""
    order = await city.order()
    offer = phone.offer(order["id"])
    await expect(offer).to_be_visible(timeout=WAIT_MS)
    assert traffic.polls(since) == []
    return offer


# --- signing in -------------------------------------------------------------------------------


async def test_the_link_signs_in_and_leaves_the_address_bar(city, browser):
    async with courier_phone(city, browser) as courier:
        page = courier.phone.page
        async with page.expect_request(lambda r: r.url.endswith("/v1/courier/jobs")) as first_poll:
            response = await courier.phone.sign_in(courier.signin_link)
        jobs = await first_poll.value
        assert (await jobs.all_headers())["authorization"] == f"Bearer {courier.token}"
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp

        await expect(courier.phone.testid("login-status")).to_contain_text("Đã đăng nhập")
        assert page.url.endswith("/app/") and courier.token not in page.url
        assert await page.evaluate("localStorage.getItem('giao.token')") == courier.token

        await courier.phone.testid("sign-out").click()
        await expect(courier.phone.testid("login-status")).to_have_text("Chưa đăng nhập")
        await expect(courier.phone.testid("message")).to_have_text("Bạn đã đăng xuất.")
        assert await page.evaluate("localStorage.getItem('giao.token')") is None
        assert not [r.url for r in courier.phone.requests if courier.token in r.url]


async def test_a_refused_token_signs_the_courier_out_and_says_why(city, browser):
    async with courier_phone(city, browser) as courier:
        await courier.phone.sign_in("/app/#t=ct_not-a-token")
        await expect(courier.phone.testid("login-status")).to_have_text("Chưa đăng nhập", timeout=WAIT_MS)
        await expect(courier.phone.testid("message")).to_contain_text("hết hạn hoặc bị thu hồi")
        assert await courier.phone.page.evaluate("localStorage.getItem('giao.token')") is None


def is_job_list(url: str) -> bool:
    """A poll or the stream of offers: the lists of jobs the app is sent."""
    return urlsplit(url).path in ("/v1/courier/jobs", "/v1/courier/jobs/events")


async def test_another_couriers_link_in_the_open_app_starts_clean_and_a_late_answer_is_dropped(city, browser):
    async with courier_phone(city, browser, service_workers="block") as courier:  # routes see no worker's requests
        phone, page = courier.phone, courier.phone.page
        await go_online(courier)
        order = await city.order()
        await phone.offer(order["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
        await expect(phone.job(order["id"])).to_have_attribute("data-status", "assigned", timeout=WAIT_MS)

        # From now on the lists of jobs do not come (then come late): what the app shows is
        # what it kept on the phone.
        cut = {"hold": False}
        held: list[Route] = []
        release = asyncio.Event()

        async def lists(route: Route) -> None:
            if not cut["hold"]:
                await route.abort()
                return
            held.append(route)
            await release.wait()
            await route.continue_()

        await page.route(is_job_list, lists)
        other = await city.client.create_courier("Lê Thị Hoa", "0977000111", "motorbike")
        await phone.sign_in(other["signin_link"])  # the tab is on /app/ already: only the fragment changes
        await expect(phone.testid("login-status")).to_have_text("Đã đăng nhập", timeout=WAIT_MS)
        assert other["token"] not in page.url
        assert await page.evaluate("localStorage.getItem('giao.token')") == other["token"]
        await expect(phone.job(order["id"])).to_have_count(0)  # the first courier's job, recipient and all
        await expect(phone.testid("online-toggle")).to_have_attribute("aria-checked", "false")  # until they tap
        assert await page.evaluate("localStorage.getItem('giao.jobs')") is None
        assert (await admin_courier(city, other["id"]))["online"] is False

        async def first_off_shift() -> bool:  # the courier who handed the phone over
            return (await admin_courier(city, courier.id))["online"] is False

        await eventually(first_off_shift, timeout=WAIT_MS / 1000, what="the first courier off shift")

        # Signed out while a poll is on its way: its answer, when it comes, is not kept.
        cut["hold"] = True
        await page.reload()

        async def poll_held() -> bool:
            return len(held) > 0

        await eventually(poll_held, timeout=10, what="a poll on its way")
        await phone.testid("sign-out").click()
        await expect(phone.testid("login-status")).to_have_text("Chưa đăng nhập")
        async with page.expect_event("requestfinished", lambda r: is_poll(r), timeout=WAIT_MS):
            release.set()
        await page.evaluate("new Promise((done) => setTimeout(done, 200))")  # time to read and handle the answer
        assert await page.evaluate("localStorage.getItem('giao.jobs')") is None


# --- the shift --------------------------------------------------------------------------------


async def test_on_shift_the_position_reaches_dispatch(city, browser):
    async with courier_phone(city, browser) as courier:
        await go_online(courier)
        await courier.phone.screen("1-online")
        status = await admin_courier(city, courier.id)
        assert status["online"] and status["lat"] == pytest.approx(city.lat + 0.002, abs=1e-6)
        await expect(courier.phone.testid("login-status")).to_contain_text("Minh T.")

        sent: list[float] = []
        courier.phone.page.on(
            "request", lambda r: r.url.endswith("/v1/courier/locations") and sent.append(time.monotonic())
        )
        await courier.phone.move(city.lat + 0.004, city.lng + 0.001)

        async def moved():
            c = await admin_courier(city, courier.id)
            return c["lat"] == pytest.approx(city.lat + 0.004, abs=1e-6) and c["lng"] == pytest.approx(
                city.lng + 0.001, abs=1e-6
            )

        await eventually(moved, timeout=15, what="the new position in dispatch")
        await courier.phone.move(city.lat + 0.005, city.lng)

        async def two_batches():
            return len(sent) >= 2

        await eventually(two_batches, timeout=15, what="a second batch of points")
        assert all(b - a >= 4.5 for a, b in itertools.pairwise(sent)), sent  # a batch every 5 s at most

        await courier.phone.testid("online-toggle").click()
        await expect(courier.phone.testid("online-toggle")).to_have_attribute("aria-checked", "false")
        assert (await admin_courier(city, courier.id))["online"] is False


# --- offers and jobs --------------------------------------------------------------------------


async def test_an_offer_shows_no_recipient_then_the_job_is_delivered(city, on_shift):
    phone = on_shift.phone
    order = await city.order(cod=250_000)
    offer = phone.offer(order["id"])
    await expect(offer).to_be_visible(timeout=WAIT_MS)
    await expect(offer.get_by_test_id("offer-countdown")).to_have_text(re.compile(r"Còn \d+ giây"))
    await expect(offer).to_contain_text("250.000\xa0₫")  # the COD, as đồng
    await expect(offer).to_contain_text("Shop Thu Trang")
    text = await phone.page.locator("body").inner_text()
    html = await phone.page.content()
    for secret in RECIPIENT:
        assert secret not in text and secret not in html
    await phone.screen("2-offer")

    await offer.get_by_test_id("offer-accept").click()
    job = phone.job(order["id"])
    await expect(job).to_have_attribute("data-status", "assigned", timeout=WAIT_MS)
    await expect(offer).to_have_count(0)
    await expect(job).to_contain_text("Nguyễn Văn An")  # once accepted, who and where
    await expect(job.locator("a[href^='tel:']").last).to_have_attribute("href", "tel:+84903123456")
    await expect(job.locator("a[href^='geo:']")).to_have_count(1)
    await city.status(order, "assigned")

    await job.get_by_test_id("job-pickup").click()
    await expect(job).to_have_attribute("data-status", "picked_up", timeout=WAIT_MS)
    await expect(job.get_by_test_id("delivery-code")).to_have_attribute("inputmode", "numeric")
    await job.get_by_test_id("cod-collected").fill("250000")
    await expect(job.get_by_test_id("cod-collected")).to_have_value("250.000")
    await job.get_by_test_id("delivery-code").fill("12 34")  # the app says what a code is, in its words
    await job.get_by_test_id("job-deliver").click()
    await expect(phone.testid("message")).to_have_text("Mã giao hàng gồm đúng 6 chữ số.")
    await job.get_by_test_id("delivery-code").fill(wrong(order["delivery_code"]))
    await job.get_by_test_id("job-deliver").scroll_into_view_if_needed()
    await phone.screen("3-job-in-hand")
    # A double tap, its second tap before the app has kept the first's step: one step, one code.
    await job.get_by_test_id("job-deliver").evaluate("(button) => { button.click(); button.click(); }")
    await expect(phone.testid("message")).to_have_text("Sai mã giao hàng. Còn 4 lần thử.", timeout=WAIT_MS)
    await expect(phone.testid("pending-steps")).to_have_text("0")
    await expect(phone.testid("message")).to_have_text("Sai mã giao hàng. Còn 4 lần thử.")
    assert (await city.client.admin_job(order["id"]))["delivery_code"]["wrong_codes"] == 1
    await expect(job).to_have_attribute("data-status", "picked_up")

    await expect(job.get_by_test_id("cod-collected")).to_have_value("250.000")  # kept: only the code was wrong
    await job.get_by_test_id("delivery-code").fill(order["delivery_code"])
    await job.get_by_test_id("job-deliver").click()
    await expect(job).to_have_count(0, timeout=WAIT_MS)
    await expect(phone.testid("message")).to_have_text("Đã giao hàng thành công.")
    done = await city.status(order, "delivered")
    assert [h["status"] for h in done["history"]] == ["placed", "assigned", "picked_up", "delivered"]
    assert (await city.client.admin_job(order["id"]))["cod_collected_vnd"] == 250_000


async def test_the_cash_held_shows_after_each_delivery_and_on_opening(city, on_shift):
    """Hidden while nothing is held; read after a delivery is confirmed (a failed read keeps what
    is shown, silently) and when the app opens; gone once handed in at the hub."""
    phone = on_shift.phone
    held = phone.testid("cash-held")
    await expect(held).to_be_hidden()

    async def delivered_in_the_app(cod: int) -> None:
        order = await city.order(cod=cod)
        await phone.offer(order["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
        job = phone.job(order["id"])
        await job.get_by_test_id("job-pickup").click(timeout=WAIT_MS)
        await expect(job).to_have_attribute("data-status", "picked_up", timeout=WAIT_MS)
        await job.get_by_test_id("cod-collected").fill(str(cod))
        await job.get_by_test_id("delivery-code").fill(order["delivery_code"])
        await job.get_by_test_id("job-deliver").click()
        await expect(job).to_have_count(0, timeout=WAIT_MS)
        await expect(phone.testid("message")).to_have_text("Đã giao hàng thành công.")

    await delivered_in_the_app(250_000)
    await expect(held).to_have_text(re.compile(r"^Tiền thu hộ đang giữ: 250\.000\s₫ \(1 đơn\)"), timeout=WAIT_MS)
    await expect(held).to_have_attribute("data-held-vnd", "250000")

    refused: list[str] = []

    async def unavailable(route: Route) -> None:
        refused.append(route.request.url)
        await route.fulfill(status=503, json={"status": 503}, headers={"Retry-After": "1"})

    await phone.page.route("**/v1/courier/cash", unavailable)
    await delivered_in_the_app(100_000)

    async def read_refused() -> bool:
        return len(refused) == 1

    await eventually(read_refused, timeout=WAIT_MS / 1000, what="the read after the second delivery")
    await expect(held).to_have_attribute("data-held-vnd", "250000")  # kept, and nothing said of it
    await expect(phone.testid("message")).to_have_text("Đã giao hàng thành công.")
    await phone.page.unroute("**/v1/courier/cash")

    await phone.page.reload()  # opening reads it
    await expect(held).to_have_attribute("data-held-vnd", "350000", timeout=WAIT_MS)
    await expect(held).to_contain_text("(2 đơn)")
    assert await phone.layout_problems() == []
    admin = f"{city.system.url_of('dispatch')}/v1/admin/couriers/{on_shift.id}/cash-handins"
    await city.client.call("cash_handin", "POST", admin, token=city.system.admin_token, json={"amount_vnd": 350_000})
    await phone.page.reload()
    await expect(held).to_be_hidden(timeout=WAIT_MS)
    await expect(held).to_have_attribute("data-held-vnd", "0")


async def test_a_failed_delivery_goes_back_to_the_shop(city, on_shift):
    phone = on_shift.phone
    order = await city.order(cod=0)
    await phone.offer(order["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
    job = phone.job(order["id"])
    await job.get_by_test_id("job-pickup").click(timeout=WAIT_MS)
    await expect(job.get_by_test_id("cod-collected")).to_have_count(0)  # nothing to collect
    await job.get_by_test_id("fail-reason").select_option("address_not_found")
    await expect(job.get_by_test_id("fail-reason")).to_contain_text("Không tìm thấy địa chỉ")
    await job.get_by_test_id("job-fail").click()
    await expect(job).to_have_attribute("data-status", "delivery_failed", timeout=WAIT_MS)
    await job.get_by_test_id("job-return").click()
    await expect(job).to_have_count(0, timeout=WAIT_MS)
    await city.status(order, "returned")


async def test_a_courier_locked_out_of_deliveries_is_told_what_to_do_and_why_no_offers_come(city, on_shift):
    phone = on_shift.phone
    orders = [await city.order(cod=0), await city.order(cod=0)]
    for order in orders:
        await phone.offer(order["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
        await phone.job(order["id"]).get_by_test_id("job-pickup").click(timeout=WAIT_MS)
        await expect(phone.job(order["id"])).to_have_attribute("data-status", "picked_up", timeout=WAIT_MS)
        await expect(phone.job(order["id"])).to_have_attribute("data-pending", "false", timeout=WAIT_MS)
    # Wrong codes (given by the API: quicker) on the two jobs lock the courier out of deliveries.
    first, second = orders
    for order in [first] * (COURIER_CODE_MAX_FAILURES - 1) + [second]:
        body = {"delivery_code": wrong(order["delivery_code"]), "cod_collected_vnd": 0}
        await city.client.job_action(on_shift.token, order["id"], "deliver", body, expect=(422,))
    assert (await admin_courier(city, on_shift.id))["flag"]["reason"] == "code_guessing"

    job = phone.job(second["id"])
    await job.get_by_test_id("delivery-code").fill(second["delivery_code"])  # the right code: 403 all the same
    await job.get_by_test_id("job-deliver").click()
    await expect(phone.testid("message")).to_have_text(
        "Bạn đã nhập sai mã giao hàng quá nhiều lần nên tạm thời chưa thể báo giao hàng. Hãy gọi điều phối viên."
        " Bạn vẫn có thể báo giao không thành công và trả hàng cho shop.",
        timeout=WAIT_MS,
    )
    await expect(job).to_have_attribute("data-status", "picked_up")
    await expect(phone.testid("pending-steps")).to_have_text("0")

    await phone.page.reload()  # the shift goes on: the status dispatch answers carries the flag
    await expect(phone.testid("online-toggle")).to_contain_text(
        "Bạn tạm thời không nhận được đơn mới cho đến khi điều phối viên mở khoá.", timeout=WAIT_MS
    )
    await job.get_by_test_id("job-fail").click()  # as the message says
    await expect(job).to_have_attribute("data-status", "delivery_failed", timeout=WAIT_MS)


async def test_an_accept_refused_for_now_keeps_the_offer_to_tap_again(city, browser):
    async with courier_phone(city, browser, service_workers="block") as courier:  # routes see no worker's requests
        phone = courier.phone
        await go_online(courier)
        await stream_up(phone)  # polls every 30 s only
        accepts: list[str] = []

        async def busy_once(route: Route) -> None:
            accepts.append(route.request.url)
            if len(accepts) == 1:
                problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "busy"}
                await route.fulfill(status=503, json=problem)
            else:
                await route.continue_()

        await phone.page.route("**/v1/courier/jobs/*/accept", busy_once)
        order = await city.order()
        offer = phone.offer(order["id"])
        async with phone.page.expect_request(is_poll, timeout=5000):  # what became of it, asked at once
            await offer.get_by_test_id("offer-accept").click(timeout=WAIT_MS)
        await expect(phone.testid("message")).to_have_text(
            "Chưa nhận được đơn do lỗi mạng hoặc máy chủ. Hãy bấm “Nhận đơn” lại."
        )
        await expect(offer).to_be_visible()  # still the courier's to take
        await offer.get_by_test_id("offer-accept").click()
        await expect(phone.job(order["id"])).to_have_attribute("data-status", "assigned", timeout=WAIT_MS)
        assert len(accepts) == 2


async def test_a_declined_offer_leaves_and_goes_to_no_one_else_here(city, on_shift):
    order = await city.order()
    offer = on_shift.phone.offer(order["id"])
    await offer.get_by_test_id("offer-decline").click(timeout=WAIT_MS)
    await expect(offer).to_have_count(0)
    await expect(on_shift.phone.testid("message")).to_have_text("Đã bỏ qua đơn.")
    offers = (await city.client.admin_job(order["id"]))["offers"]
    assert [(o["courier_id"], o["state"]) for o in offers] == [(on_shift.id, "declined")]


async def test_an_offer_left_unanswered_disappears_when_it_expires(city, on_shift):
    order = await city.order()
    offer = on_shift.phone.offer(order["id"])
    await expect(offer).to_be_visible(timeout=WAIT_MS)
    await expect(offer).to_have_count(0, timeout=(OFFER_TIMEOUT_S + 5) * 1000)
    offers = (await city.client.admin_job(order["id"]))["offers"]
    assert [o["state"] for o in offers] == ["expired"]


async def test_on_shift_offers_come_by_push_without_polls_until_the_shift_ends(city, on_shift):
    phone = on_shift.phone
    traffic = Traffic(phone.page)
    await stream_up(phone)
    streams = [r for r in phone.requests if is_stream(r)]
    assert streams and (await streams[0].all_headers())["authorization"] == f"Bearer {on_shift.token}"
    since = traffic.mark()
    offer = await offer_by_push(city, phone, traffic, since)

    # Three more seconds of the offer's countdown and still no poll: the 2.5 s polls stopped.
    countdown = offer.get_by_test_id("offer-countdown")
    left = int(re.findall(r"\d+", await countdown.inner_text())[0])
    assert left > 4
    later = "|".join(str(n) for n in range(left - 2))
    await expect(countdown).to_have_text(re.compile(rf"Còn ({later}) giây"), timeout=WAIT_MS)
    assert traffic.polls(since) == []

    # Off shift the app closes its stream: it ends before the server would have ended it.
    stream = [r for r in phone.requests if is_stream(r)][-1]
    async with phone.page.expect_event("requestfailed", lambda r: r == stream, timeout=WAIT_MS):
        await phone.testid("online-toggle").click()
    assert time.time() * 1000 - stream.timing["startTime"] < STREAM_MAX_S * 1000
    await expect(phone.testid("online-toggle")).to_have_attribute("aria-checked", "false")
    await expect(phone.page.locator("#offers")).not_to_have_attribute("data-push", "live")


async def test_after_the_network_returns_the_stream_is_back_and_pushes_offers(city, on_shift):
    phone = on_shift.phone
    traffic = Traffic(phone.page)
    await stream_up(phone)
    await phone.network(up=False)
    await expect(phone.page.locator("#offline-banner")).to_be_visible()
    await expect(phone.page.locator("#offers")).not_to_have_attribute("data-push", "live")
    await expect(phone.testid("online-toggle")).to_have_attribute("aria-checked", "true")  # still on shift
    await phone.network(up=True)
    await expect(phone.page.locator("#offline-banner")).to_be_hidden(timeout=WAIT_MS)
    await stream_up(phone)
    assert traffic.streams(), "no new stream"
    await offer_by_push(city, phone, traffic, traffic.mark())


async def test_a_stream_the_server_ends_is_opened_again_before_any_poll(city, on_shift):
    phone = on_shift.phone
    traffic = Traffic(phone.page)
    await stream_up(phone)
    ended = await eventually(traffic.stream_ended, timeout=STREAM_MAX_S + 10, what="the server to end the stream")

    async def reopened() -> bool:
        return len(traffic.streams(ended)) > 0

    await eventually(reopened, timeout=5, what="a new stream")
    await stream_up(phone)
    await offer_by_push(city, phone, traffic, ended)  # no fast polls in between either
    assert len(traffic.streams(ended)) == 1


async def test_a_reopened_app_keeps_the_shift_and_the_jobs_in_hand(city, on_shift):
    phone = on_shift.phone
    first = await city.order()
    await phone.offer(first["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
    await expect(phone.job(first["id"])).to_have_attribute("data-status", "assigned", timeout=WAIT_MS)

    await phone.page.reload()  # the phone closed the tab, the courier opens the app again
    await expect(phone.testid("online-toggle")).to_have_attribute("aria-checked", "true")
    await expect(phone.job(first["id"])).to_have_attribute("data-status", "assigned")
    second = await city.order()
    await expect(phone.offer(second["id"])).to_be_visible(timeout=WAIT_MS)
    assert (await admin_courier(city, on_shift.id))["online"] is True


async def test_a_shift_works_over_a_slow_3g_connection(city, browser):
    # Without the service worker, so that every request crosses the throttled network.
    async with courier_phone(city, browser, service_workers="block") as courier:
        phone = courier.phone
        await phone.throttle(SLOW_3G)
        await go_online(courier)
        round_trip_ms = await phone.page.evaluate("""async () => {
            const start = performance.now();
            await fetch('manifest.webmanifest', {cache: 'no-store'});
            return performance.now() - start; }""")
        assert round_trip_ms >= SLOW_3G["latency"]  # the throttle holds
        order = await city.order()
        await phone.offer(order["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
        job = phone.job(order["id"])
        await job.get_by_test_id("job-pickup").click(timeout=WAIT_MS)
        await expect(job).to_have_attribute("data-status", "picked_up", timeout=WAIT_MS)
        await expect(phone.testid("pending-steps")).to_have_text("0")
        await city.status(order, "picked_up")


# --- without network --------------------------------------------------------------------------


async def test_a_step_taken_offline_waits_and_reaches_dispatch_and_tracking_once(city, browser):
    # Without a service worker: Playwright's routes do not see a page's requests through one.
    async with courier_phone(city, browser, service_workers="block") as courier:
        phone = courier.phone
        await go_online(courier)
        order = await city.order()
        await phone.offer(order["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
        job = phone.job(order["id"])
        await expect(job).to_have_attribute("data-status", "assigned", timeout=WAIT_MS)

        await phone.network(up=False)
        await expect(phone.page.locator("#offline-banner")).to_be_visible()
        await job.get_by_test_id("job-pickup").click()
        await expect(phone.testid("pending-steps")).to_have_text("1")
        await expect(job).to_have_attribute("data-pending", "true")
        await expect(job).to_contain_text("chờ gửi")
        await phone.move(city.lat + 0.003, city.lng + 0.003)  # a point taken without network
        offline_at = datetime.now().astimezone()
        await phone.screen("4-offline-queue")
        assert (await city.client.admin_job(order["id"]))["status"] == "assigned"

        # The first answer is lost on the way back: the step reached dispatch, the phone does
        # not know, and sends it again.
        pickups: list[str] = []

        async def lose_first_answer(route):
            pickups.append(route.request.url)
            if len(pickups) == 1:
                await route.fetch()
                await route.abort("connectionreset")
            else:
                await route.continue_()

        await phone.page.route("**/v1/courier/jobs/*/pickup", lose_first_answer)
        locations = []
        phone.page.on("request", lambda r: r.url.endswith("/v1/courier/locations") and locations.append(r))
        await phone.network(up=True)

        await expect(phone.testid("pending-steps")).to_have_text("0", timeout=WAIT_MS * 2)
        await expect(job).to_have_attribute("data-status", "picked_up")
        await expect(job).to_have_attribute("data-pending", "false")
        assert len(pickups) == 2
        assert (await city.client.admin_job(order["id"]))["status"] == "picked_up"

        async def tracking_picked_up():
            timeline = await tracking_timeline(city, order)
            return timeline if timeline[-1:] == ["picked_up"] else None

        assert await eventually(tracking_picked_up, what="tracking to show picked_up") == [
            "placed",
            "assigned",
            "picked_up",
        ]

        async def offline_point_sent():
            points = [p for r in locations for p in r.post_data_json["points"]]
            return [
                p
                for p in points
                if p["lat"] == pytest.approx(city.lat + 0.003) and datetime.fromisoformat(p["at"]) <= offline_at
            ]

        await eventually(offline_point_sent, timeout=15, what="the point taken offline, with its own time")
        await city.services_agree()


async def picked_up_in_the_app(city, courier: Courier, *, cod: int) -> tuple[dict, Locator]:
    """The courier on shift accepts a new order and picks it up in the app, both steps sent."""
    phone = courier.phone
    await go_online(courier)
    order = await city.order(cod=cod)
    await phone.offer(order["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
    job = phone.job(order["id"])
    await job.get_by_test_id("job-pickup").click(timeout=WAIT_MS)
    await expect(job).to_have_attribute("data-status", "picked_up", timeout=WAIT_MS)
    await expect(job).to_have_attribute("data-pending", "false", timeout=WAIT_MS)  # sent
    return order, job


async def test_signing_out_waits_until_the_steps_taken_are_sent(city, browser):
    async with courier_phone(city, browser, service_workers="block") as courier:
        phone = courier.phone
        order, job = await picked_up_in_the_app(city, courier, cod=150_000)

        await phone.network(up=False)  # delivered, cash collected, no network
        await job.get_by_test_id("cod-collected").fill("150000")
        await job.get_by_test_id("delivery-code").fill(order["delivery_code"])
        await job.get_by_test_id("job-deliver").click()
        await expect(phone.testid("pending-steps")).to_have_text("1")
        await phone.testid("sign-out").click()
        await expect(phone.testid("message")).to_have_text(
            "Chưa đăng xuất được: còn bước chờ gửi. Hãy kết nối mạng để gửi xong rồi đăng xuất."
        )
        await expect(phone.testid("login-status")).to_contain_text("đã đăng nhập")
        await expect(phone.testid("pending-steps")).to_have_text("1")

        await phone.network(up=True)
        await expect(phone.testid("pending-steps")).to_have_text("0", timeout=WAIT_MS)
        await city.status(order, "delivered")
        await phone.testid("sign-out").click()
        await expect(phone.testid("login-status")).to_have_text("Chưa đăng nhập")


async def test_another_couriers_link_waits_while_the_phone_holds_steps_not_sent(city, browser):
    """A phone handed over at the end of a shift with a delivery not yet sent: the next courier's
    link would forget it. The link waits until the step is sent, and says so."""
    async with courier_phone(city, browser, service_workers="block") as courier:  # routes see no worker's requests
        phone, page = courier.phone, courier.phone.page
        order, job = await picked_up_in_the_app(city, courier, cod=0)

        async def unreachable(route: Route) -> None:
            await route.abort("internetdisconnected")

        await page.route("**/v1/courier/jobs/*/deliver", unreachable)
        await job.get_by_test_id("delivery-code").fill(order["delivery_code"])
        await job.get_by_test_id("job-deliver").click()
        await expect(phone.testid("pending-steps")).to_have_text("1")
        other = await city.client.create_courier("Lê Thị Hoa", "0977000111", "motorbike")
        await phone.sign_in(other["signin_link"])
        await expect(phone.testid("message")).to_have_text(re.compile("^Chưa đăng nhập tài khoản mới"), timeout=WAIT_MS)
        assert await page.evaluate("localStorage.getItem('giao.token')") == courier.token
        assert other["token"] not in page.url
        await expect(phone.testid("pending-steps")).to_have_text("1")

        await page.unroute("**/v1/courier/jobs/*/deliver")
        await expect(phone.testid("pending-steps")).to_have_text("0", timeout=WAIT_MS)
        await city.status(order, "delivered")
        await phone.sign_in(other["signin_link"])
        await expect(phone.testid("message")).to_have_text(re.compile("^Đăng nhập thành công"), timeout=WAIT_MS)
        assert await page.evaluate("localStorage.getItem('giao.token')") == other["token"]


async def test_a_step_over_the_rate_waits_the_retry_after_and_a_locked_job_does_not(city, browser):
    async with courier_phone(city, browser, service_workers="block") as courier:  # routes see no worker's requests
        phone = courier.phone
        await go_online(courier)
        order = await city.order(cod=0)
        await phone.offer(order["id"]).get_by_test_id("offer-accept").click(timeout=WAIT_MS)
        job = phone.job(order["id"])
        await expect(job).to_have_attribute("data-status", "assigned", timeout=WAIT_MS)

        sent: list[float] = []

        async def too_many_first(route):
            sent.append(time.monotonic())
            if len(sent) == 1:  # longer than the app's own first wait (2 s): only the header explains waiting it
                problem = {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": "slow down"}
                await route.fulfill(status=429, headers={"Retry-After": "4"}, json=problem)
            else:
                await route.continue_()

        await phone.page.route("**/v1/courier/jobs/*/pickup", too_many_first)
        await job.get_by_test_id("job-pickup").click()
        await expect(job).to_have_attribute("data-pending", "true", timeout=WAIT_MS)  # kept, not dropped
        await expect(phone.testid("message")).to_have_text("Máy chủ đang bận: bước này đang chờ và sẽ tự gửi lại.")
        await expect(job).to_have_attribute("data-pending", "false", timeout=WAIT_MS)
        await expect(job).to_have_attribute("data-status", "picked_up")
        assert len(sent) == 2 and sent[1] - sent[0] >= 3.9
        assert (await city.client.admin_job(order["id"]))["status"] == "picked_up"

        # A 429 about the job (locked after 5 wrong codes, for 15 min) is no rate: the step is
        # dropped and said, not kept to send the same code again when the lock ends.
        for left in (4, 3, 2, 1, 0):
            await job.get_by_test_id("delivery-code").fill(wrong(order["delivery_code"]))
            await job.get_by_test_id("job-deliver").click()
            said = f"Sai mã giao hàng. Còn {left} lần thử." if left else "Sai mã giao hàng quá nhiều lần"
            await expect(phone.testid("message")).to_contain_text(said, timeout=WAIT_MS)
        await job.get_by_test_id("delivery-code").fill(order["delivery_code"])
        await job.get_by_test_id("job-deliver").click()
        await expect(phone.testid("message")).to_have_text(
            "Nhập sai quá nhiều lần. Thử lại sau 15 phút.", timeout=WAIT_MS
        )
        await expect(phone.testid("pending-steps")).to_have_text("0")
        await expect(job).to_have_attribute("data-pending", "false")
        await expect(job).to_have_attribute("data-status", "picked_up")


async def test_a_job_whose_code_is_held_is_told_and_can_still_be_failed(city, browser):
    """A deliver's 423 (the job locked after 20 wrong codes, until the admin or the shop clears
    it; dispatch's side is tested in tests/dispatch/test_guards.py) is answered here by a route:
    reaching it for real takes 20 wrong codes with lockouts of 15 minutes and more between."""
    async with courier_phone(city, browser, service_workers="block") as courier:  # routes see no worker's requests
        phone = courier.phone
        order, job = await picked_up_in_the_app(city, courier, cod=0)
        held: list[str] = []

        async def code_held(route: Route) -> None:
            held.append(route.request.url)
            problem = {  # as dispatch answers it (services/dispatch/api.py)
                "type": "https://giao.vn/problems/423",
                "title": "Job locked",
                "status": 423,
                "detail": "Too many wrong delivery codes for this job: it is locked until operations clear it",
            }
            await route.fulfill(status=423, json=problem, headers={"Content-Type": "application/problem+json"})

        await phone.page.route("**/v1/courier/jobs/*/deliver", code_held)
        await job.get_by_test_id("delivery-code").fill(order["delivery_code"])
        await job.get_by_test_id("job-deliver").click()
        await expect(phone.testid("message")).to_have_text(
            "Đơn này bị khoá vì nhập sai mã giao hàng quá nhiều lần. Hãy gọi điều phối viên hoặc shop để mở khoá."
            " Bạn vẫn có thể báo giao không thành công.",
            timeout=WAIT_MS,
        )
        assert len(held) == 1  # dropped, not kept to be sent again
        await expect(phone.testid("pending-steps")).to_have_text("0")
        await expect(job).to_have_attribute("data-pending", "false")
        await expect(job).to_have_attribute("data-status", "picked_up")
        await job.get_by_test_id("job-fail").click()  # as the message says
        await expect(job).to_have_attribute("data-status", "delivery_failed", timeout=WAIT_MS)
        assert len(held) == 1


async def test_the_app_opens_without_network_after_a_first_visit(city, browser):
    async with courier_phone(city, browser) as courier:
        phone = courier.phone
        await phone.sign_in(courier.signin_link)
        await expect(phone.testid("login-status")).to_contain_text("Đã đăng nhập")
        await phone.page.wait_for_function(
            "async () => (await navigator.serviceWorker.ready).active.state === 'activated'"
        )
        manifest = await phone.page.evaluate("fetch('manifest.webmanifest').then((r) => r.json())")
        assert manifest["lang"] == "vi" and manifest["display"] == "standalone"
        assert {"192x192", "512x512"} <= {icon["sizes"] for icon in manifest["icons"]}

        await phone.network(up=False)
        await phone.page.reload()
        await expect(phone.page.locator("#offline-banner")).to_be_visible()
        await expect(phone.page.locator("#offline-banner")).to_contain_text("Không có mạng")
        await expect(phone.testid("login-status")).to_contain_text("Đã đăng nhập")
        await expect(phone.testid("online-toggle")).to_be_visible()
        await phone.network(up=True)
        await expect(phone.page.locator("#offline-banner")).to_be_hidden(timeout=WAIT_MS)


async def test_refused_batches_of_positions_come_back_later_each_time_in_a_row(city, browser):
    """While dispatch refuses positions for now (503), the phone sends its batch again after 5,
    10, 20, 40, then every 60 s, not every 5 s; the first batch that goes through ends that. The
    page's clock is Playwright's: after the first refusal the test moves it 5 s (one tick of the
    send timer) at a time. The page reads its outbox before it sends, while the test's clock may
    move on, so a try may be seen a tick or two late: the test counts the tries and the last
    wait, which leave room for that (a try every 5 s would make 33 tries and waits of 5 s)."""
    async with courier_phone(city, browser, service_workers="block") as courier:
        phone, page = courier.phone, courier.phone.page
        clock = HeldClock(page, step_ms=5000)  # a step: one tick of the send timer
        await clock.install()
        await go_online(courier)
        await clock.refuse("**/v1/courier/locations", 503)
        async with page.expect_request_finished(lambda r: r.url.endswith("/v1/courier/locations"), timeout=WAIT_MS):
            await phone.move(city.lat + 0.003, city.lng)  # a point, sent within 5 s, and refused
        await clock.stop()

        # Tries after 5, 10, 20, 40 and 60 s: at about 1, 3, 7, 15 and 27 (or 2, 6, 14 and 26
        # after two refusals before the clock stopped), then 39; the test stops between them.
        await clock.run_to(33)
        tries = [t for t in clock.calls if t > 0]
        assert 3 <= len(tries) <= 6 and tries[-1] - tries[-2] >= 10, clock.calls  # a minute's wait by then
        clock.refusing = False
        refused = len(clock.calls)
        await clock.run_to(45)  # the next try, within the minute, goes through

        async def one_more() -> bool:
            return len(clock.calls) > refused

        await eventually(one_more, what="a try after dispatch stopped refusing")
        assert len(clock.calls) == refused + 1, clock.calls

        async def in_dispatch() -> bool:
            c = await admin_courier(city, courier.id)
            return c["lat"] == pytest.approx(city.lat + 0.003, abs=1e-6)

        await eventually(in_dispatch, timeout=15, what="the batch in dispatch")
