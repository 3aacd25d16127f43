"""HTTP route of the customer's tracking page: `GET /t/{tracking_code}`, the link a merchant
sends over Zalo or SMS.

The page is the API's answer as HTML (page.py renders it): the same lookup, the same work
and the same response floor for an unknown code (404, "không tìm thấy"), the same rate
limit (deps.rate_limit). The code in the URL is a secret: no-referrer, no-store, noindex.
Its scripts and styles come from this origin only (shared.pages' CSP; a tile server
configured with GIAO_MAP_TILE_URL is the one other origin its images may come from).
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.tracking import deps, domain, page
from services.tracking.service_layer import lookup
from shared import maps
from shared.http import problem_responses
from shared.pages import security_headers

# A plain router, not shared.http.api_router(): links shared in chat apps come back with
# query parameters added (?zarsrc=..., ?fbclid=...), and the page must still open.
router = APIRouter()

_NOWHERE = domain.Point(0.0, 0.0)  # an unknown code's area is computed too (the same work), then dropped


def page_headers(tile_url: str) -> dict[str, str]:
    return {
        **security_headers(maps.tile_origin(tile_url)),
        "cache-control": "no-store",
        "x-robots-tag": "noindex",
    }


@router.get(
    "/t/{tracking_code}",
    response_class=HTMLResponse,
    tags=["tracking"],
    summary="The tracking page (HTML, Vietnamese), live while it is open",
    description=(
        "What `GET /v1/tracking/{tracking_code}` answers, as a page for people, then live "
        "over its event stream; while the parcel is on its way, a map with the courier and the "
        "destination's area (never its point). An unknown code is a 404 page."
    ),
    responses={200: {"content": {"text/html": {}}}, 404: {"content": {"text/html": {}}}, **problem_responses(429)},
)
async def tracking_page(tracking_code: str, request: Request, _client: str = Depends(deps.rate_limit)) -> Response:
    started = time.perf_counter()
    settings = deps.settings(request)
    parcel, view = await lookup(deps.pool(request), tracking_code)
    subject = parcel or domain.DECOY
    area = maps.area_of(*_point(subject.dropoff))
    shows_area = parcel is not None and parcel.dropoff is not None and not parcel.final
    headers = page_headers(settings.map_tile_url)
    # Both pages are built before the floor, so the time after it is the same too.
    found = HTMLResponse(
        page.render(view, area=area if shows_area else None, tile_url=settings.map_tile_url), headers=headers
    )
    not_found = HTMLResponse(page.render_not_found(), status_code=404, headers=headers)
    await asyncio.sleep(max(0.0, settings.response_floor_ms / 1000 - (time.perf_counter() - started)))
    return found if parcel is not None else not_found


def _point(point: domain.Point | None) -> tuple[float, float]:
    point = point or _NOWHERE
    return point.lat, point.lng
