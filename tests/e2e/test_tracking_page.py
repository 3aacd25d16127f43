"""The customer's tracking page (GET /t/{code} on tracking) in Debian's Chromium, against the
services as real processes: what it shows without scripts, how it follows a parcel live, its
404 page and headers, and that across a whole delivery no page, no response and no request
carries anything personal or goes to another origin."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import httpx
import pytest
from playwright.async_api import expect

from shared.pages import CONTENT_SECURITY_POLICY
from tests.e2e.browser import DESKTOP, PHONE, HeldClock, Visitor, chromium
from tests.e2e.test_flows import City
from tests.support import eventually
from tools.client import Giao

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# A change shows on the open page within this, without a reload, once the tracking API shows
# it (how fast events reach tracking is the flows' tests' business, and this machine's load's).
LIVE_S = 2
# What the order holds that the page must never show (City.order and City.courier's data).
RECIPIENT = ("Nguyễn Văn An", "0903123456", "903123456", "0903 123 456", "Số 12 Cao Xanh")
OTHERS = ("Shop Thu Trang", "0912345678", "912345678", "Số 5 Lê Thánh Tông", "Trần Văn Minh", "0987654321", "987654321")
VENDORED = "/web/shared/vendor/"  # third-party files, byte for byte the locked versions (test_web_vendor)


@pytest.fixture
async def city(system):
    async with Giao(system.endpoints()) as client:
        yield City(system, client)


def now() -> str:
    return datetime.now(UTC).isoformat()


async def tracked(city: City, code: str) -> None:
    """Tracking has consumed the order's placement: its page is there."""

    async def known():
        return await city.client.parcel(code)

    await eventually(known, what=f"tracking to know {code}")


def page_url(city: City, code: str) -> str:
    return f"{city.system.url_of('tracking')}/t/{code}"


async def test_without_scripts_the_html_shows_the_status_and_the_timeline(city):
    async with chromium() as browser:
        # The browser first (it takes seconds to start): a placed order expires here in 12 s.
        visitor = await Visitor.open(browser, city.system.url_of("tracking"), scripts=False)
        await city.merchant()
        order = await city.order()
        await tracked(city, order["tracking_code"])
        response = await visitor.page.goto(page_url(city, order["tracking_code"]))
        assert response.status == 200
        status = visitor.page.get_by_test_id("status")
        await expect(status).to_have_text("Đang tìm shipper")
        await expect(status).to_have_attribute("data-status", "placed")
        items = visitor.page.get_by_test_id("timeline-item")
        await expect(items).to_have_count(1)
        await expect(items.first).to_have_attribute("data-status", "placed")
        await expect(items.first).to_contain_text("Đơn hàng đã được tạo")
        await expect(visitor.page.get_by_test_id("map")).to_be_hidden()
        assert visitor.foreign_requests() == [] and await visitor.layout_problems() == []


async def test_an_unknown_code_is_a_404_page_saying_not_found(city):
    async with chromium() as browser:
        visitor = await Visitor.open(browser, city.system.url_of("tracking"))
        response = await visitor.page.goto(page_url(city, "ZZZZZZZZZZZZ"))
        assert response.status == 404
        await expect(visitor.page.get_by_test_id("not-found")).to_have_text("Không tìm thấy đơn hàng")
        assert await visitor.page.get_by_test_id("status").count() == 0
        assert "ZZZZZZZZZZZZ" not in await visitor.page.content()
        assert visitor.foreign_requests() == [] and await visitor.csp_violations() == []


async def test_the_page_headers_keep_the_code_secret_and_the_page_unindexed(city):
    await city.merchant()
    order = await city.order()
    await tracked(city, order["tracking_code"])
    async with httpx.AsyncClient() as http:
        # A link shared over a chat app may come back with parameters added: the page still opens.
        for code, expected in (
            (order["tracking_code"] + "?zarsrc=30&utm_source=zalo", 200),
            ("ZZZZZZZZZZZZ", 404),
            ("not%20a%20code", 404),
        ):
            r = await http.get(page_url(city, code))
            assert r.status_code == expected, code
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert r.headers["cache-control"] == "no-store"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["x-robots-tag"] == "noindex"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert '<meta name="robots" content="noindex">' in r.text
        for path in (
            "/web/shared/map.js",
            "/web/shared/vendor/leaflet/leaflet.js",
            "/web/tracking/tracking.js",
            "/web/tracking/messages.vi.json",
            "/map/service-area.geojson",
        ):
            r = await http.get(city.system.url_of("tracking") + path)
            assert r.status_code == 200, path
        assert r.headers["content-type"] == "application/geo+json"


async def test_the_open_page_follows_a_delivery_live_and_shows_nothing_private(city):
    async with chromium() as browser:
        # The browser first (it takes seconds to start), then the order: its offer lasts 2 s here
        # (GIAO_DISPATCH_OFFER_TIMEOUT_S) and is accepted before the pages open.
        phone = await Visitor.open(browser, city.system.url_of("tracking"), viewport=PHONE)
        desktop = await Visitor.open(browser, city.system.url_of("tracking"), viewport=DESKTOP)
        visitors = (phone, desktop)
        await city.merchant()
        courier = await city.courier()
        order = await city.order()
        code, order_id = order["tracking_code"], order["id"]
        secrets = (*RECIPIENT, *OTHERS, order["delivery_code"])
        await city.offer_for(courier, order_id)
        await city.client.job_action(courier, order_id, "accept")

        async def assigned():
            return (await city.client.parcel(code)).get("status") == "assigned"

        await eventually(assigned, what=f"tracking to show {code} assigned")
        for v in visitors:
            assert (await v.page.goto(page_url(city, code))).status == 200
            await expect(v.page.get_by_test_id("live")).to_have_text("Đang cập nhật trực tiếp")
            await expect(v.page.get_by_test_id("courier-name")).to_have_text("Minh T.")
            await expect(v.page.get_by_test_id("courier-vehicle")).to_have_text("xe máy")
            await expect(v.page.get_by_test_id("timeline-item")).to_have_count(2)
        page = phone.page
        doms: list[str] = [await v.page.content() for v in visitors]
        # A customer whose network lost the map's code: the page shows no empty box for it.
        mapless = await Visitor.open(browser, city.system.url_of("tracking"), viewport=PHONE)
        await mapless.page.route("**/web/shared/map.js", lambda route: route.abort())
        assert (await mapless.page.goto(page_url(city, code))).status == 200
        await expect(mapless.page.get_by_test_id("live")).to_have_text("Đang cập nhật trực tiếp")

        async def within_live_s(api_shows, check) -> None:
            async def shown():
                return api_shows(await city.client.track(code))

            await eventually(shown, what=f"the tracking API to show the change of {code}")
            # Each check first waits, LIVE_S at most, for the last thing the change shows.
            for v in visitors:
                await check(v.page)
            doms.extend([await v.page.content() for v in visitors])

        await city.client.job_action(courier, order_id, "pickup")
        await city.client.send_locations(courier, [{"lat": city.lat + 0.004, "lng": city.lng + 0.004, "at": now()}])

        async def on_its_way(p):
            await expect(p.get_by_test_id("courier-marker")).to_be_visible(timeout=LIVE_S * 1000)
            await expect(p.get_by_test_id("status")).to_have_attribute("data-status", "picked_up")
            await expect(p.get_by_test_id("map")).to_be_visible()
            await expect(p.get_by_test_id("eta")).to_contain_text("phút")

        await within_live_s(lambda t: t["status"] == "picked_up" and t["courier"]["location"], on_its_way)
        await expect(mapless.page.get_by_test_id("status")).to_have_attribute("data-status", "picked_up")
        await expect(mapless.page.get_by_test_id("map")).to_be_hidden()
        await mapless.close()
        await expect(page.locator(".giao-area")).to_have_count(1)  # the destination's area, drawn
        before = await page.get_by_test_id("courier-marker").bounding_box()

        async def moved():
            box = await page.get_by_test_id("courier-marker").bounding_box()
            return box if box and (box["x"], box["y"]) != (before["x"], before["y"]) else None

        async def api_moved():
            # As a phone does, the courier keeps sending its position: dispatch passes a courier's
            # points on at most once a second, so a point sent within a second of the last is kept
            # by dispatch but not published.
            await city.client.send_locations(courier, [{"lat": city.lat + 0.007, "lng": city.lng + 0.008, "at": now()}])
            t = await city.client.track(code)
            return t["courier"]["location"]["lat"] > city.lat + 0.006

        await eventually(api_moved, interval=0.5, what="the tracking API to show the courier's new point")
        await eventually(moved, timeout=LIVE_S, what="the courier's marker to move")
        await phone.screenshot("tracking-360x640")
        await desktop.screenshot("tracking-1280x800")
        for v in visitors:
            assert await v.layout_problems() == []

        await city.client.job_action(
            courier, order_id, "deliver", {"delivery_code": order["delivery_code"], "cod_collected_vnd": 150_000}
        )

        async def delivered(p):
            await expect(p.get_by_test_id("live")).to_have_text("Đơn hàng đã kết thúc", timeout=LIVE_S * 1000)
            await expect(p.get_by_test_id("status")).to_have_attribute("data-status", "delivered")
            await expect(p.get_by_test_id("timeline-item")).to_have_count(4)
            await expect(p.get_by_test_id("map")).to_be_hidden()

        await within_live_s(lambda t: t["status"] == "delivered", delivered)

        for v in visitors:
            assert v.foreign_requests() == []
            assert await v.csp_violations() == []
            assert v.errors == []
        bodies = {
            f"{url} ({i})": body
            for v in visitors
            for i, (url, body) in enumerate(await v.bodies())
            if VENDORED not in url
        }
        # Every answer that can carry the parcel's data was read (only a page's static files may be
        # dropped by the browser when it navigates on).
        assert [u for v in visitors for u in v.unread if "/v1/" in u or "/t/" in u] == []
        streamed = [m for v in visitors for m in v.stream_messages]
        assert [m for m in streamed if m.startswith("event: tracking")] and "event: end\ndata: {}" in streamed
        bodies.update({f"event {i}": m.encode() for i, m in enumerate(streamed)})
        for where, text in [
            *((f"page {i}", d) for i, d in enumerate(doms)),
            *((url, body.decode("utf-8", "replace")) for url, body in bodies.items()),
        ]:
            leaked = [s for s in secrets if s in text]
            assert leaked == [], f"{where} shows {leaked}"
        for v in visitors:
            await v.close()


async def test_a_refused_stream_is_opened_again_later_each_time_in_a_row(city):
    """The tracking API refuses the page's stream (429): the page opens it again after about 5,
    10, 20, 40, then every 60 s (each up to 40% sooner, at random), not every 5 s. The page's
    clock is Playwright's, moved 1 s at a time by the test; a try may be seen a second or two
    late, which the bounds allow for."""
    async with chromium() as browser:
        visitor = await Visitor.open(browser, city.system.url_of("tracking"))  # first: it takes seconds
        await city.merchant()
        order = await city.order()
        await tracked(city, order["tracking_code"])
        page, clock = visitor.page, HeldClock(visitor.page, step_ms=1000)
        await clock.install()
        await clock.stop()  # before the page loads: its timers wait for the test
        await clock.refuse("**/v1/tracking/*/events", 429)
        await page.goto(page_url(city, order["tracking_code"]))
        await expect(page.get_by_test_id("status")).to_have_text("Đang tìm shipper")

        async def refused_once() -> bool:
            return bool(clock.calls)

        await eventually(refused_once, what="the page's first stream, refused")
        await clock.run_to(150)
        gaps = [b - a for a, b in itertools.pairwise(clock.calls)]
        assert 4 <= len(gaps) <= 7, clock.calls  # every 5 s would be 30
        for i, gap in enumerate(gaps):
            wait = min(60, 5 * 2**i)
            assert 0.6 * wait - 2 <= gap <= wait + 2, clock.calls
        await visitor.close()
