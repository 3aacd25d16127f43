"""The customer's tracking page as HTML, rendered on the server from the public view. No I/O.

The page is useful before any script runs, and with scripts off: the status, the ETA, the
courier's short name and vehicle and the timeline are in the HTML. web/tracking.js then
follows the parcel live over the API's event stream and draws the map once the parcel is on
its way. Every text comes from web/messages.vi.json (services.tracking.messages), the table the script
and the API's timeline texts read too. Every value is escaped.

It shows nothing the tracking API does not show, except the destination's AREA (its coarse
H3 cell, shared.maps.area_of: never the point) for the map. An unknown code gets the same
page shape with "không tìm thấy" and without the code it was asked for.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any

import orjson

from services.tracking.messages import MESSAGES
from services.tracking.messages import WEB as WEB  # the page's files, which app.py serves
from shared.maps import WEB_PATH

PAGE_PATH = "/web/tracking"  # where web/ is served
VIETNAM = timezone(timedelta(hours=7))  # no daylight saving time: no tz database needed

STYLESHEETS = (f"{WEB_PATH}/vendor/leaflet/leaflet.css", f"{WEB_PATH}/map.css", f"{PAGE_PATH}/tracking.css")
SCRIPT = f"{PAGE_PATH}/tracking.js"
MAP_MODULE = f"{WEB_PATH}/map.js"  # imported by the script once there is a map to draw


def local_time(at: str) -> str:
    """`09:15 · 23/11` in Vietnam's time, as web/tracking.js writes it too."""
    t = datetime.fromisoformat(at).astimezone(VIETNAM)
    return f"{t:%H:%M} · {t:%d/%m}"


def eta_text(minutes: int | None, messages: dict[str, Any] = MESSAGES) -> str:
    return "" if minutes is None else messages["eta"].replace("{minutes}", str(minutes))


def render(
    view: dict[str, Any], *, area: list[list[float]] | None, tile_url: str = "", messages: dict[str, Any] = MESSAGES
) -> str:
    """The page of a known parcel: `view` is domain.public_view's document."""
    m = messages
    courier = view["courier"]
    vehicle = m["vehicle"].get(courier["vehicle"], "") if courier else ""
    eta = eta_text(view["eta_minutes"], m)
    code = view["tracking_code"]
    steps = "".join(
        f'<li data-testid="timeline-item" data-status="{escape(step["status"])}">'
        f'<time datetime="{escape(step["at"])}">{escape(local_time(step["at"]))}</time> '
        f"<span>{escape(m['steps'][step['status']])}</span></li>"
        for step in view["timeline"]
    )
    attributes = {
        "data-code": code,
        "data-events": f"/v1/tracking/{code}/events",
        "data-map": MAP_MODULE,
        "data-tile-url": tile_url,
        "data-area": orjson.dumps(area).decode() if area else "",
    }
    main = (
        f'<main id="tracking" {" ".join(f"{k}={_attr(v)}" for k, v in attributes.items())}>'
        '<section class="card summary" aria-live="polite">'
        f'<p class="code">{escape(m["code"])} <strong>{escape(code)}</strong></p>'
        f'<h1 data-testid="status" data-status="{escape(view["status"])}">{escape(m["status"][view["status"]])}</h1>'
        f'<p class="eta" data-testid="eta"{_hidden(not eta)}>{escape(eta)}</p>'
        f'<p class="courier"{_hidden(courier is None)}>{escape(m["courier"])} '
        f'<strong data-testid="courier-name">{escape(courier["display_name"] if courier else "")}</strong> · '
        f'<span data-testid="courier-vehicle">{escape(vehicle)}</span>'
        "</p></section>"
        f'<div class="card map" data-testid="map" role="region" aria-label={_attr(m["map"])} hidden></div>'
        f'<section class="card"><h2>{escape(m["timeline"])}</h2><ol class="timeline">{steps}</ol></section>'
        '<p class="live" data-testid="live" hidden></p>'
        f'<p class="privacy">{escape(m["privacy"])}</p>'
        "</main>"
    )
    return _document(main, m, script=True)


def render_not_found(messages: dict[str, Any] = MESSAGES) -> str:
    """The page of an unknown code: the same shape, nothing of the code it was asked for."""
    m = messages
    main = (
        '<main id="tracking"><section class="card summary">'
        f'<h1 data-testid="not-found">{escape(m["not_found"])}</h1>'
        f"<p>{escape(m['not_found_hint'])}</p></section></main>"
    )
    return _document(main, m, script=False)


def _document(main: str, m: dict[str, Any], *, script: bool) -> str:
    links = "".join(f'<link rel="stylesheet" href={_attr(href)}>' for href in STYLESHEETS)
    module = f'<script type="module" src={_attr(SCRIPT)}></script>' if script else ""
    title = f"{m['title']} · {m['brand']}"
    return (
        f'<!doctype html><html lang={_attr(m["lang"])}><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><meta name="referrer" content="no-referrer">'
        '<link rel="icon" href="data:,">'  # no request for /favicon.ico (a 404)
        f"<title>{escape(title)}</title>"
        f'<meta property="og:title" content={_attr(m["og_title"])}>'
        f'<meta property="og:description" content={_attr(m["og_description"])}>'
        '<meta property="og:type" content="website">'
        f"{links}{module}</head><body>"
        f'<header class="bar"><span class="brand">{escape(m["brand"])}</span> {escape(m["title"])}</header>'
        f"{main}</body></html>"
    )


def _attr(value: str) -> str:
    return f'"{escape(value, quote=True)}"'


def _hidden(hidden: bool) -> str:
    return " hidden" if hidden else ""
