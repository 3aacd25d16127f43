"""The operations console (/ops/ on dispatch) in Debian's Chromium, against the services as
real processes: the admin signs in (a wrong token stays on the sign-in), couriers and orders
appear and move on the map as couriers act, an assigned order's explanation names the chosen
courier, and a new courier's QR code, read from a screenshot, signs the courier app in. No
page asks anything of another origin, and the strict CSP refuses nothing."""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
import zxingcpp
from playwright.async_api import expect

from tests.e2e.browser import DESKTOP, PHONE, HeldClock, Visitor, chromium, require_chromium
from tests.e2e.system import start_system, stop_cleanly
from tests.e2e.test_flows import City
from tests.support import eventually
from tools.client import Giao

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

WAIT_MS = 10_000  # the console polls every 1.5 s; a courier's step reaches it on the next poll
COURIER = "Trần Văn Minh"  # City.courier's name
HA_LONG = (20.955, 107.07)


@pytest.fixture(scope="module")
def system(infra):
    require_chromium()
    system = start_system(infra, extra_env={"GIAO_DISPATCH_OFFER_TIMEOUT_S": "30", "GIAO_DISPATCH_WINDOW_S": "300"})
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


async def console(
    browser, city: City, *, viewport: dict = DESKTOP, at: tuple[float, float] | None = None, zoom: int = 15
) -> Visitor:
    """A signed-in console looking at `at` (the city's corner by default)."""
    lat, lng = at or (city.lat, city.lng)
    visitor = await Visitor.open(browser, city.system.url_of("dispatch"), viewport=viewport)
    await visitor.page.goto(f"{visitor.origin}/ops/#map={lat},{lng},{zoom}")
    await visitor.page.get_by_test_id("ops-token").fill(city.system.admin_token)
    await visitor.page.get_by_test_id("ops-sign-in").click()
    await expect(visitor.page.get_by_test_id("ops-map")).to_be_visible()
    await expect(visitor.page.get_by_test_id("counter-waiting")).to_have_text(re.compile(r"^\d+$"), timeout=WAIT_MS)
    return visitor


async def clean(visitor: Visitor, *, expected_errors: str | None = None) -> None:
    """Nothing went to another origin, the CSP refused nothing, no script failed."""
    assert visitor.foreign_requests() == []
    assert await visitor.csp_violations() == []
    errors = [e for e in visitor.errors if not (expected_errors and expected_errors in e)]
    assert errors == []


async def test_sign_in_keeps_the_token_in_the_session_and_a_wrong_one_stays_on_sign_in(browser, city):
    visitor = await Visitor.open(browser, city.system.url_of("dispatch"), viewport=DESKTOP)
    page = visitor.page
    await page.goto(f"{visitor.origin}/ops/")
    await expect(page.get_by_test_id("ops-login")).to_be_visible()
    await expect(page.get_by_test_id("ops-map")).to_be_hidden()

    await page.get_by_test_id("ops-sign-in").click()  # empty: the console says so, not the browser
    await expect(page.get_by_test_id("login-error")).to_have_text("Hãy nhập mã quản trị.")
    await page.get_by_test_id("ops-token").fill("not-the-admin-token")
    await page.get_by_test_id("ops-sign-in").click()
    await expect(page.get_by_test_id("login-error")).to_have_text("Mã quản trị không đúng.")
    await expect(page.get_by_test_id("ops-login")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0

    signed_in_from = len(visitor.requests)
    await page.get_by_test_id("ops-token").fill(city.system.admin_token)
    await page.get_by_test_id("ops-sign-in").click()
    await expect(page.get_by_test_id("ops-map")).to_be_visible()
    await expect(page.get_by_test_id("ops-login")).to_be_hidden()
    await expect(page.get_by_test_id("counter-offers")).to_have_text(re.compile(r"^\d+$"), timeout=WAIT_MS)
    # held for this tab only, sent as a bearer, never in an address
    assert await page.evaluate("Object.values(sessionStorage)") == [city.system.admin_token]
    assert await page.evaluate("localStorage.length") == 0
    admin_calls = [r for r in visitor.requests[signed_in_from:] if "/v1/admin/" in r.url]
    assert admin_calls and all(city.system.admin_token not in r.url for r in visitor.requests)
    for call in admin_calls:
        assert (await call.all_headers())["authorization"] == f"Bearer {city.system.admin_token}"

    await page.reload()  # the session survives a reload ...
    await expect(page.get_by_test_id("ops-map")).to_be_visible()
    # ... and a token that stops working sends the admin back to sign in
    await page.evaluate("sessionStorage.setItem('giao.ops.token', 'revoked')")
    await expect(page.get_by_test_id("ops-login")).to_be_visible(timeout=WAIT_MS)
    await expect(page.get_by_test_id("login-error")).to_contain_text("đăng nhập lại")
    await clean(visitor, expected_errors="401")
    await visitor.close()


def marker_position(box: dict | None) -> tuple[float, float]:
    assert box is not None
    return box["x"], box["y"]


async def test_couriers_and_orders_appear_and_move_and_an_assigned_order_names_its_courier(browser, city):
    visitor = await console(browser, city)
    page = visitor.page
    created = await city.client.create_courier(COURIER, "0987654321", "motorbike")
    token, courier_id = created["token"], str(created["id"])
    await city.client.set_status(token, True, city.lat + 0.002, city.lng)

    marker = page.locator(f'[data-testid="courier-marker"][data-courier-id="{courier_id}"]')
    await expect(marker).to_have_attribute("data-vehicle", "motorbike", timeout=WAIT_MS)
    await expect(marker).to_have_attribute("data-load", "0")
    before = marker_position(await marker.bounding_box())

    order = await city.order()
    order_marker = page.locator(f'[data-testid="order-marker"][data-order-id="{order["id"]}"]')
    await expect(order_marker).to_have_attribute("data-status", re.compile("waiting|offered"), timeout=WAIT_MS)
    await city.offer_for(token, order["id"])
    await expect(order_marker).to_have_attribute("data-status", "offered", timeout=WAIT_MS)
    await expect(marker).to_have_attribute("data-load", "1", timeout=WAIT_MS)
    await expect(page.get_by_test_id("counter-offers")).not_to_have_text("0", timeout=WAIT_MS)

    await city.client.job_action(token, order["id"], "accept")
    await expect(order_marker).to_have_attribute("data-status", "assigned", timeout=WAIT_MS)
    await expect(page.get_by_test_id("counter-in-progress")).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=WAIT_MS)

    await order_marker.click()
    explain = page.get_by_test_id("job-explain")
    await expect(explain).to_be_visible()
    await expect(explain.get_by_test_id("chosen-courier")).to_have_text(f"Tài xế được chọn: {COURIER}")
    await expect(explain.get_by_test_id("offer")).to_have_attribute("data-state", "accepted")
    await expect(explain.get_by_test_id("offer")).to_contain_text(COURIER)

    # the courier drives east: the marker follows
    await city.client.set_status(token, True, city.lat + 0.002, city.lng + 0.004)

    async def moved() -> bool:
        return await _moved(marker, before) > 50

    await eventually(moved, timeout=WAIT_MS / 1000, what="the courier's marker to move")
    await city.client.job_action(token, order["id"], "pickup")
    await expect(order_marker).to_have_attribute("data-status", "picked_up", timeout=WAIT_MS)

    await marker.click()
    jobs = page.get_by_test_id("courier-jobs")
    await expect(jobs.locator(f'[data-order-id="{order["id"]}"]')).to_have_attribute("data-status", "picked_up")
    await clean(visitor)
    await visitor.close()


async def test_a_tap_where_markers_lie_on_one_another_lists_them_all_to_open(browser, city):
    """Two orders of one shop and a courier standing at the shop are drawn on one spot, where a
    tap reaches only the topmost marker: the console lists all three, and each one opens."""
    first, second = await city.order(), await city.order()  # the same pickup
    created = await city.client.create_courier("Phạm Thị Lan", "0987654321", "motorbike")
    await city.client.set_status(created["token"], True, city.lat, city.lng)
    courier_id = str(created["id"])
    visitor = await console(browser, city)
    page = visitor.page
    for one in (first, second):
        marker = page.locator(f'[data-testid="order-marker"][data-order-id="{one["id"]}"]')
        await expect(marker).to_have_attribute("data-status", re.compile("waiting|offered"), timeout=WAIT_MS)
    courier = page.locator(f'[data-testid="courier-marker"][data-courier-id="{courier_id}"]')
    await expect(courier).to_be_visible(timeout=WAIT_MS)
    x, y = marker_position(await courier.bounding_box())
    spot = (x + 24, y + 24)  # the markers' common centre: a thumb there

    details, choices = page.get_by_test_id("job-explain"), page.get_by_test_id("marker-choice")
    for pick, opened in (
        (f'[data-order-id="{second["id"]}"]', details.get_by_test_id("offer").or_(details.get_by_text("Chưa mời ai."))),
        (f'[data-courier-id="{courier_id}"]', details.get_by_test_id("courier-jobs")),
    ):
        await page.mouse.click(*spot)
        await expect(choices).to_have_count(3)
        assert await visitor.layout_problems() == []  # each choice a 48 px target
        await choices.and_(page.locator(pick)).click()
        await expect(opened.first).to_be_visible(timeout=WAIT_MS)
        await expect(choices).to_have_count(0)
        if "order-id" in pick:
            await expect(details).to_have_attribute("data-order-id", second["id"])
    await clean(visitor)
    await visitor.close()


async def test_a_flagged_courier_shows_the_flag_and_the_admin_clears_it(browser, city):
    created = await city.client.create_courier("Đỗ Văn Nhảy", "0987654321", "motorbike")
    token, courier_id = created["token"], str(created["id"])
    await city.client.set_status(token, True, city.lat + 0.002, city.lng)
    start = datetime.now(UTC) - timedelta(seconds=10)
    east = city.lng + 0.015  # 1.5 km in a second, three times: no motorbike does that
    points = [(0, city.lng)] + [(s, east) for s in (1, 2, 3)]
    for seconds, lng in points:
        at = (start + timedelta(seconds=seconds)).isoformat()
        await city.client.send_locations(token, [{"lat": city.lat + 0.002, "lng": lng, "at": at}])
    admin = f"{city.system.url_of('dispatch')}/v1/admin/couriers/{courier_id}"
    flag = (await city.client.call("admin_courier", "GET", admin, token=city.system.admin_token))["flag"]
    assert flag["reason"] == "impossible_speed"

    visitor = await console(browser, city, at=(city.lat, city.lng + 0.008))
    page = visitor.page
    marker = page.locator(f'[data-testid="courier-marker"][data-courier-id="{courier_id}"]')
    await expect(marker).to_have_attribute("data-flagged", "true", timeout=WAIT_MS)
    await marker.click()
    shown = page.get_by_test_id("courier-flag")
    await expect(shown).to_have_attribute("data-reason", "impossible_speed")
    await expect(shown.get_by_test_id("courier-flag-reason")).to_contain_text("Vị trí nhảy xa bất thường")
    await expect(shown.get_by_test_id("courier-flag-since")).to_contain_text("Từ ")
    await expect(page.get_by_test_id("job-explain")).to_contain_text("Tạm dừng nhận đơn mới")
    assert await shown.get_attribute("data-at") == flag["at"]

    await page.get_by_test_id("courier-flag-clear").click()
    await expect(page.get_by_test_id("courier-flag")).to_have_count(0, timeout=WAIT_MS)
    await expect(page.get_by_test_id("job-explain")).to_contain_text("Còn nhận được")  # the courier, drawn again
    await expect(marker).to_have_attribute("data-flagged", "false", timeout=WAIT_MS)
    assert (await city.client.call("admin_courier", "GET", admin, token=city.system.admin_token))["flag"] is None
    await clean(visitor)
    await visitor.close()


async def deliver_cod(city, token: str, cod: int) -> None:
    """The courier (on shift near the city's shop) takes a new order with `cod` to delivered."""
    order = await city.order(cod=cod)
    await city.offer_for(token, order["id"])
    for action in ("accept", "pickup"):
        await city.client.job_action(token, order["id"], action)
    body = {"delivery_code": order["delivery_code"], "cod_collected_vnd": cod}
    await city.client.job_action(token, order["id"], "deliver", body)


async def test_a_couriers_cash_shows_in_their_panel_and_the_admin_receives_it(browser, city):
    """A courier delivers a COD order: their panel shows the cash held; the admin receives it
    (a second tap confirms the amount) and the API shows nothing held and one hand-in. Then a
    hand-in recorded elsewhere while the console asks to confirm: its 409 reads again, says so."""
    created = await city.client.create_courier("Vũ Văn Tiền", "0987654321", "motorbike")
    token, courier_id = created["token"], str(created["id"])
    await city.client.set_status(token, True, city.lat + 0.002, city.lng)
    admin = f"{city.system.url_of('dispatch')}/v1/admin/couriers/{courier_id}"

    await deliver_cod(city, token, 150_000)
    visitor = await console(browser, city)
    page = visitor.page
    marker = page.locator(f'[data-testid="courier-marker"][data-courier-id="{courier_id}"]')
    await expect(marker).to_be_visible(timeout=WAIT_MS)
    await marker.click()
    cash = page.get_by_test_id("courier-cash")
    await expect(cash).to_have_attribute("data-held-vnd", "150000", timeout=WAIT_MS)
    await expect(cash).to_have_text(re.compile(r"^150\.000\s₫ của 1 đơn đã giao$"))
    await expect(page.get_by_test_id("cash-confirm")).to_be_hidden()
    await page.get_by_test_id("cash-receive").click()
    confirm = page.get_by_test_id("cash-confirm")
    await expect(confirm).to_have_text(re.compile(r"^Xác nhận đã nhận 150\.000\s₫$"))
    assert await visitor.layout_problems() == []  # each a 48 px target
    await confirm.click()
    await expect(page.get_by_test_id("cash-result")).to_have_text(re.compile(r"^Đã ghi nhận nộp 150\.000\s₫ của 1 đơn"))
    await expect(cash).to_have_attribute("data-held-vnd", "0")
    await expect(page.get_by_test_id("cash-receive")).to_have_count(0)
    held = await city.client.call("admin_cash", "GET", f"{admin}/cash", token=city.system.admin_token)
    assert held["held_vnd"] == 0 and held["deliveries"] == []
    assert [(h["amount_vnd"], h["deliveries"]) for h in held["handins"]] == [(150_000, 1)]

    await deliver_cod(city, token, 200_000)
    await marker.click()  # read again
    await expect(cash).to_have_attribute("data-held-vnd", "200000", timeout=WAIT_MS)
    await page.get_by_test_id("cash-receive").click()
    await city.client.call(  # another admin records the same cash meanwhile
        "admin_cash", "POST", f"{admin}/cash-handins", token=city.system.admin_token, json={"amount_vnd": 200_000}
    )
    await page.get_by_test_id("cash-confirm").click()
    await expect(page.get_by_test_id("cash-result")).to_contain_text("vừa thay đổi", timeout=WAIT_MS)
    await expect(cash).to_have_attribute("data-held-vnd", "0")
    held = await city.client.call("admin_cash", "GET", f"{admin}/cash", token=city.system.admin_token)
    assert [h["amount_vnd"] for h in held["handins"]] == [200_000, 150_000]
    await clean(visitor, expected_errors="409")
    await visitor.close()


async def test_the_couriers_holding_cash_are_listed_longest_held_first_and_open_their_panel(browser, city):
    """Two couriers deliver COD orders (the first then goes off shift, off the map): the list
    shows both, the one holding cash longest first, with the total and how long it has been
    held; a page of one brings the other with "more"; a tap opens the courier's panel, where
    the admin receives the cash, and the list opened again shows only the other courier."""
    dispatch = city.system.url_of("dispatch")
    before = await city.client.call("admin_cash", "GET", f"{dispatch}/v1/admin/cash", token=city.system.admin_token)
    assert before["items"] == [], "another test left cash held: the cash test hands in all it delivers"

    async def delivered_by(name: str, cod: int) -> str:
        created = await city.client.create_courier(name, "0987654321", "motorbike")
        token = created["token"]
        await city.client.set_status(token, True, city.lat + 0.002, city.lng)
        await deliver_cod(city, token, cod)
        await city.client.set_status(token, False, city.lat + 0.002, city.lng)  # off shift, cash in pocket
        return str(created["id"])

    first = await delivered_by("Lý Văn Giữ", 150_000)
    second = await delivered_by("Hà Thị Cầm", 220_000)
    visitor = await console(browser, city)
    page = visitor.page
    await expect(page.get_by_test_id("counter-couriers")).to_have_text(re.compile(r"^\d+$"), timeout=WAIT_MS)
    for courier_id in (first, second):  # off shift: not on the map
        await expect(page.locator(f'[data-testid="courier-marker"][data-courier-id="{courier_id}"]')).to_have_count(0)
    await page.clock.set_fixed_time(datetime.now(UTC) + timedelta(hours=3, minutes=5))

    await page.get_by_test_id("cash-list-open").click()
    total, rows = page.get_by_test_id("cash-total"), page.get_by_test_id("cash-courier")
    await expect(total).to_have_attribute("data-total-vnd", "370000", timeout=WAIT_MS)
    await expect(total).to_have_text(re.compile(r"^Tổng đang giữ: 370\.000\s₫$"))
    await expect(rows).to_have_count(2)
    assert [await r.get_attribute("data-courier-id") for r in await rows.all()] == [first, second]
    assert [await r.get_attribute("data-held-vnd") for r in await rows.all()] == ["150000", "220000"]
    await expect(rows.first).to_contain_text("Giữ L.")
    await expect(rows.first).to_contain_text(re.compile(r"150\.000\s₫ của 1 đơn đã giao"))
    await expect(rows.first).to_contain_text("giữ từ 3 giờ trước")
    await expect(rows.nth(1)).to_contain_text("Cầm H.")
    await expect(page.get_by_test_id("cash-more")).to_be_hidden()
    await expect(page.get_by_test_id("cash-list-empty")).to_have_count(0)
    assert await visitor.layout_problems() == []  # each row a 48 px target

    # a page of one: "more" brings the next, in the same order
    async def one_a_page(route) -> None:
        await route.continue_(url=re.sub(r"limit=\d+", "limit=1", route.request.url))

    await page.route("**/v1/admin/cash?*", one_a_page)
    await page.get_by_test_id("cash-list-open").click()
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await expect(rows).to_have_attribute("data-courier-id", first)
    await expect(total).to_have_attribute("data-total-vnd", "370000")
    await page.get_by_test_id("cash-more").click()
    await expect(rows).to_have_count(2, timeout=WAIT_MS)
    await expect(rows.nth(1)).to_have_attribute("data-courier-id", second)
    await expect(page.get_by_test_id("cash-more")).to_be_hidden()
    await page.unroute("**/v1/admin/cash?*", one_a_page)

    await rows.first.click()  # the courier's panel, where the hand-in is done
    cash = page.get_by_test_id("courier-cash")
    await expect(cash).to_have_attribute("data-held-vnd", "150000", timeout=WAIT_MS)
    await page.get_by_test_id("cash-receive").click()
    await page.get_by_test_id("cash-confirm").click()
    await expect(page.get_by_test_id("cash-result")).to_contain_text("Đã ghi nhận nộp", timeout=WAIT_MS)

    await page.get_by_test_id("cash-list-open").click()  # read afresh
    await expect(total).to_have_attribute("data-total-vnd", "220000", timeout=WAIT_MS)
    await expect(rows).to_have_count(1)
    await expect(rows).to_have_attribute("data-courier-id", second)
    await expect(rows).to_have_attribute("data-held-vnd", "220000")

    await city.client.call(
        "admin_cash",
        "POST",
        f"{dispatch}/v1/admin/couriers/{second}/cash-handins",
        token=city.system.admin_token,
        json={"amount_vnd": 220_000},
    )
    await page.get_by_test_id("cash-list-open").click()
    await expect(page.get_by_test_id("cash-list-empty")).to_have_text(
        "Không tài xế nào đang giữ tiền thu hộ.", timeout=WAIT_MS
    )
    await expect(total).to_have_attribute("data-total-vnd", "0")
    await expect(rows).to_have_count(0)
    await clean(visitor)
    await visitor.close()


async def _moved(marker, before: tuple[float, float]) -> float:
    x, y = marker_position(await marker.bounding_box())
    return abs(x - before[0]) + abs(y - before[1])


async def test_a_new_couriers_qr_code_signs_the_courier_app_in(browser, city):
    visitor = await console(browser, city)
    page = visitor.page
    await page.get_by_test_id("courier-create-open").click()
    form = page.get_by_test_id("courier-create")
    await form.get_by_test_id("courier-name-input").fill("Lê Thị Hoa")
    # A phone the API refuses (422): the console says which field, in its own words.
    await form.get_by_test_id("courier-phone-input").fill("12345")
    await form.get_by_test_id("courier-create-submit").click()
    await expect(page.get_by_test_id("create-error")).to_have_text(
        "Không tạo được tài xế: kiểm tra lại Số điện thoại", timeout=WAIT_MS
    )
    await form.get_by_test_id("courier-phone-input").fill("0912 888 777")
    await form.get_by_test_id("courier-vehicle-input").select_option("bicycle")
    await form.get_by_test_id("courier-create-submit").click()
    qr = page.get_by_test_id("signin-qr")
    await expect(qr).to_be_visible(timeout=WAIT_MS)

    link = decode_qr(await qr.screenshot())
    assert link.startswith(f"{visitor.origin}/app/#t=")
    assert await page.get_by_test_id("signin-link").get_attribute("href") == link
    assert await visitor.layout_problems() == []  # the link too is a 48 px target

    app = await visitor.context.new_page()
    await app.goto(link)
    await expect(app.get_by_test_id("login-status")).to_contain_text("Đã đăng nhập", timeout=WAIT_MS)
    assert "#t=" not in app.url  # the app takes the token out of the address at once
    await clean(visitor, expected_errors="status of 422")
    await visitor.close()


async def test_the_console_shows_a_busy_city(browser, city):
    """Couriers of each vehicle and orders in each status around Hạ Long; pictures of it with
    GIAO_SCREENSHOTS set (docs/screenshots/ops-1280x800.png, ops-360x640.png)."""
    city.lat, city.lng = HA_LONG
    tokens = []
    for i, vehicle in enumerate(["motorbike", "bicycle", "car", "van", "motorbike", "motorbike"]):
        created = await city.client.create_courier(f"Nguyễn Văn {chr(65 + i)}", "0987654321", vehicle)
        await city.client.set_status(
            created["token"], True, HA_LONG[0] + 0.007 * (i % 3) - 0.007, HA_LONG[1] + 0.012 * (i // 3) - 0.006
        )
        tokens.append(created["token"])
    orders = []
    for i in range(4):  # four shops
        city.lat, city.lng = HA_LONG[0] + 0.003 * (i % 2), HA_LONG[1] - 0.008 + 0.005 * i
        orders.append(await city.order())
    visitor = await console(browser, city, at=HA_LONG, zoom=14)
    page = visitor.page
    await expect(page.get_by_test_id("courier-marker")).to_have_count(6, timeout=WAIT_MS)
    await expect(page.get_by_test_id("order-marker")).to_have_count(4, timeout=WAIT_MS)
    for order in orders:  # whoever got an offer accepts it
        for token in tokens:
            if any(j["order_id"] == order["id"] and j["status"] == "offered" for j in await city.client.jobs(token)):
                await city.client.job_action(token, order["id"], "accept")
                break
    await expect(page.locator('[data-testid="order-marker"][data-status="assigned"]').first).to_be_visible(
        timeout=WAIT_MS
    )
    await page.locator('[data-testid="order-marker"][data-status="assigned"]').first.click()
    await expect(page.get_by_test_id("chosen-courier")).to_contain_text("Nguyễn Văn")
    await visitor.screenshot("ops-1280x800")  # with GIAO_SCREENSHOTS set
    await clean(visitor)
    await visitor.close()

    phone = await console(browser, city, viewport=PHONE, at=HA_LONG, zoom=13)
    await expect(phone.page.get_by_test_id("courier-marker")).to_have_count(6, timeout=WAIT_MS)
    assert await phone.layout_problems() == []
    await phone.screenshot("ops-360x640")
    await clean(phone)
    await phone.close()


# --- reading a QR code from a screenshot --------------------------------------------------------


def decode_qr(png: bytes) -> str:
    width, height, gray = png_to_gray(png)
    found = zxingcpp.read_barcodes(memoryview(gray).cast("B", (height, width)))
    assert len(found) == 1, f"{len(found)} QR codes in the screenshot"
    return found[0].text


def png_to_gray(png: bytes) -> tuple[int, int, bytes]:
    """A screenshot's pixels as 8-bit gray (Chromium's PNGs: 8-bit RGB or RGBA, not interlaced)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], b""
    while pos < len(png):
        (length,), kind = struct.unpack(">I", png[pos : pos + 4]), png[pos + 4 : pos + 8]
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            chunks.append(data)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(line)
        previous = line
    return (
        width,
        height,
        bytes((r[i] * 299 + r[i + 1] * 587 + r[i + 2] * 114) // 1000 for r in rows for i in range(0, stride, channels)),
    )


async def test_polls_that_fail_in_a_row_space_out_and_come_back_when_dispatch_answers(browser, city):
    """Dispatch answers the console's polls 503: the console asks again after 3, 6, 12, 24, then
    every 30 s, not every 1.5 s, and says so; once dispatch answers, the counters come back. The
    page's clock is Playwright's, moved 1 s at a time by the test; a poll may be seen a second
    or two late, which the bounds allow for."""
    visitor = await Visitor.open(browser, city.system.url_of("dispatch"), viewport=DESKTOP)
    page, clock = visitor.page, HeldClock(visitor.page, step_ms=1000)
    await clock.install()
    await page.goto(f"{visitor.origin}/ops/")
    await page.get_by_test_id("ops-token").fill(city.system.admin_token)
    await page.get_by_test_id("ops-sign-in").click()
    await expect(page.get_by_test_id("counter-waiting")).to_have_text(re.compile(r"^\d+$"), timeout=WAIT_MS)
    await clock.refuse("**/v1/admin/overview", 503)
    await clock.stop()

    await clock.run_to(120)
    failed_before = clock.calls.count(0)  # one or two polls failed before the clock stopped
    gaps = [b - a for a, b in itertools.pairwise([0, *(s for s in clock.calls if s > 0)])]
    assert 4 <= len(gaps) <= 7, clock.calls  # every 1.5 s would be 80
    for i, gap in enumerate(gaps, start=failed_before):
        wait = min(30, 3 * 2 ** (i - 1))
        assert wait - 2 <= gap <= wait + 3, clock.calls
    await expect(page.get_by_test_id("updated")).to_contain_text("Chưa cập nhật được")

    clock.refusing = False
    await clock.run_to(120 + 32)  # the next poll, within 30 s, is answered
    await expect(page.get_by_test_id("updated")).to_have_text(re.compile(r"^Cập nhật \d"))
    await visitor.close()
