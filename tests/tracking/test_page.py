"""The tracking page's HTML (services.tracking.page), without a server: what it shows, that
everything is escaped, that an unknown code's page says "không tìm thấy" and nothing of the
code, and that the page's texts are the one table the script reads too."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from services.tracking import page
from shared import maps
from shared.pages import CONTENT_SECURITY_POLICY, security_headers

VIEW = {
    "tracking_code": "7KQ2M9XH4TBR",
    "status": "picked_up",
    "timeline": [
        {"status": "placed", "at": "2026-11-23T02:02:11+00:00", "text": "Đơn hàng đã được tạo"},
        {"status": "assigned", "at": "2026-11-23T02:04:37+00:00", "text": "Đã có shipper nhận đơn"},
        {"status": "picked_up", "at": "2026-11-23T02:15:02+00:00", "text": "Shipper đã lấy hàng"},
    ],
    "courier": {
        "display_name": "Minh N.",
        "vehicle": "motorbike",
        "location": {"lat": 20.9532, "lng": 107.0611, "at": "2026-11-23T02:21:40+00:00"},
    },
    "eta_minutes": 6,
}


class Elements(HTMLParser):
    """Every start tag's attributes, and the text under each data-testid."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "link", "br", "img", "input"):
            self._open.append(dict(attrs).get("data-testid"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for testid in filter(None, self._open):
            self.text[testid] = self.text.get(testid, "") + data

    def testids(self) -> list[str]:
        return [a["data-testid"] for _, a in self.tags if a.get("data-testid")]


def test_a_parcel_on_its_way_shows_status_eta_courier_and_the_timeline_in_vietnam_time() -> None:
    html = page.render(VIEW, area=maps.area_of(20.9586, 107.0452))
    doc = Elements(html)
    assert doc.text["status"] == "Đang giao hàng đến bạn"
    assert doc.text["eta"] == "Dự kiến còn khoảng 6 phút"
    assert doc.text["courier-name"] == "Minh N." and doc.text["courier-vehicle"] == "xe máy"
    items = [a for _, a in doc.tags if a.get("data-testid") == "timeline-item"]
    assert [a["data-status"] for a in items] == ["placed", "assigned", "picked_up"]
    assert "09:15 · 23/11" in html and "Shipper đã lấy hàng" in html  # UTC+7
    assert doc.testids().count("map") == 1 and "not-found" not in doc.testids()
    assert '<html lang="vi">' in html and '<meta name="robots" content="noindex">' in html
    assert '<script type="module" src="/web/tracking/tracking.js"></script>' in html


def test_the_page_holds_the_destination_area_never_the_point() -> None:
    dropoff = (20.958612, 107.045234)
    html = page.render(VIEW, area=maps.area_of(*dropoff))
    main = next(a for t, a in Elements(html).tags if t == "main")
    assert main["data-area"].startswith("[[") and len(re.findall(r"\[[\d.]+,[\d.]+\]", main["data-area"])) == 6
    assert "20.9586" not in html and "107.0452" not in html
    assert "20.9532" not in html  # nor the courier's point: the script gets it from the stream


def test_every_value_is_escaped() -> None:
    hostile = "<script>alert(1)</script>\"'&"
    view = {
        **VIEW,
        "tracking_code": hostile,
        "courier": {**VIEW["courier"], "display_name": hostile},
        "timeline": [VIEW["timeline"][0]],
    }
    messages = {**page.MESSAGES, "steps": {**page.MESSAGES["steps"], "placed": hostile}}
    html = page.render(view, area=None, tile_url='x" onload="alert(1)', messages=messages)
    assert "<script>alert" not in html and 'x" onload' not in html
    # the code three times (data-code, data-events, shown), the name, the step text
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;") == 5
    doc = Elements(html)
    assert doc.text["courier-name"] == hostile
    assert [t for t, _ in doc.tags].count("script") == 1


def test_an_unknown_code_gets_the_same_shape_saying_not_found_and_nothing_of_the_code() -> None:
    html = page.render_not_found()
    doc = Elements(html)
    assert doc.text["not-found"] == "Không tìm thấy đơn hàng"
    assert "status" not in doc.testids() and "timeline-item" not in doc.testids()
    assert "<script" not in html  # nothing to follow
    found = page.render(VIEW, area=None)

    def head(html: str) -> str:
        script = '<script type="module" src="/web/tracking/tracking.js"></script>'
        return html[: html.index("<main")].replace(script, "")

    assert head(html) == head(found)


def test_link_previews_and_titles_tell_nothing_of_the_parcel() -> None:
    for html in (page.render(VIEW, area=None), page.render_not_found()):
        metas = {a.get("property"): a.get("content") for t, a in Elements(html).tags if t == "meta"}
        assert metas["og:title"] == page.MESSAGES["og_title"]
        assert metas["og:description"] == page.MESSAGES["og_description"]
        assert "<title>Theo dõi đơn hàng · Giao</title>" in html


def test_the_timeline_speaks_the_pages_language_not_the_apis() -> None:
    """The steps' texts come from the page's table (a page in another language says them in
    its own), not from the API's `text`, which the contract keeps Vietnamese."""
    english = {**page.MESSAGES, "steps": {**page.MESSAGES["steps"], "picked_up": "Picked up by the courier"}}
    html = page.render(VIEW, area=None, messages=english)
    assert "Picked up by the courier" in html and "Shipper đã lấy hàng" not in html


def test_every_status_and_vehicle_has_its_text() -> None:
    from shared.contract import ORDER_STATUSES, VEHICLES

    assert set(page.MESSAGES["status"]) == set(page.MESSAGES["steps"]) == set(ORDER_STATUSES)
    assert set(page.MESSAGES["vehicle"]) == set(VEHICLES)
    script = (page.WEB / "tracking.js").read_text()
    assert 'new URL("./messages.vi.json", import.meta.url)' in script  # the same table


def content_security_policy(tile_url: str) -> str:
    return security_headers(maps.tile_origin(tile_url))["content-security-policy"]


def test_the_policy_lets_images_come_from_a_configured_tile_server_only() -> None:
    assert content_security_policy("") == CONTENT_SECURITY_POLICY
    assert content_security_policy("/tiles/{z}/{x}/{y}.png") == CONTENT_SECURITY_POLICY  # same origin
    policy = content_security_policy("https://{s}.tile.example.org/{z}/{x}/{y}.png")
    assert "img-src 'self' data: blob: https://*.tile.example.org;" in policy
    assert policy.replace(" https://*.tile.example.org", "") == CONTENT_SECURITY_POLICY
