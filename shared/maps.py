"""What the pages' maps draw besides the world's land: the service area, and a place shown as
an area instead of a point. Computed here, on the server, from the project's own data with H3.

    routers=[..., maps.router, pages_router(maps.WEB_PATH, maps.WEB)]

- `GET /map/service-area.geojson`: the H3 cells around Hạ Long's neighbourhoods as one outline
  (GeoJSON, lng/lat), which shared/web/map.js draws on the base layer;
- `area_of(lat, lng)`: the H3 cell of a point at a coarse resolution (~0.7 km², edges ~530 m),
  as a ring of [lat, lng] points: a recipient's street is not in it, their neighbourhood is;
- `tile_origin(url)`: the origin a configured tile server (GIAO_MAP_TILE_URL) adds to a page's
  Content-Security-Policy `img-src`; empty when the map draws its own base layer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit

import h3
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

# Static files every service with pages serves, from this one directory, under this one path:
# the map's (Leaflet, world-atlas, topojson-client, map.js) and what the pages have alike
# (base.css, and ui.js, api.js, format.js, messages.js: the modules their scripts import).
WEB = Path(__file__).parent / "web"
WEB_PATH = "/web/shared"

# Hạ Long (Quảng Ninh): its neighbourhoods' rough centres, the city the project serves first.
NEIGHBOURHOODS = {
    "Bãi Cháy": (20.9560, 107.0450),
    "Hồng Gai": (20.9515, 107.0815),
    "Bạch Đằng": (20.9490, 107.0740),
    "Cao Xanh": (20.9650, 107.0950),
    "Cao Thắng": (20.9600, 107.0760),
    "Hà Khánh": (20.9740, 107.1130),
    "Giếng Đáy": (20.9650, 107.0210),
    "Hùng Thắng": (20.9470, 107.0130),
    "Hà Lầm": (20.9610, 107.1010),
    "Trần Hưng Đạo": (20.9555, 107.0870),
}
SERVICE_AREA_RESOLUTION = 8
SERVICE_AREA_RINGS = 2  # cells around each neighbourhood's centre (~2 km across)
AREA_RESOLUTION = 8  # a destination is shown as its cell at this resolution, never as a point
_DIGITS = 5  # ~1 m: more says nothing on a city map


@lru_cache(maxsize=1)
def service_area_geojson() -> bytes:
    cells: set[str] = set()
    for lat, lng in NEIGHBOURHOODS.values():
        cells.update(h3.grid_disk(h3.latlng_to_cell(lat, lng, SERVICE_AREA_RESOLUTION), SERVICE_AREA_RINGS))
    outline = h3.cells_to_geo(sorted(cells))
    outline["coordinates"] = _rounded(outline["coordinates"])
    return orjson.dumps(
        {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": {"name": "Hạ Long"}, "geometry": outline}],
        }
    )


def area_of(lat: float, lng: float) -> list[list[float]]:
    """The ring of [lat, lng] corners of the coarse H3 cell holding the point."""
    cell = h3.latlng_to_cell(lat, lng, AREA_RESOLUTION)
    return [[round(a, _DIGITS), round(b, _DIGITS)] for a, b in h3.cell_to_boundary(cell)]


def tile_origin(tile_url: str) -> str:
    """`https://tiles.example.org` of `https://tiles.example.org/{z}/{x}/{y}.png` (`{s}.` becomes `*.`,
    which CSP understands); "" for none."""
    if not tile_url:
        return ""
    parts = urlsplit(tile_url.replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


# GeoJSON coordinates: a position's numbers, nested in lists (a ring, a polygon, ...).
Coordinates: TypeAlias = float | list["Coordinates"] | tuple["Coordinates", ...]


def _rounded(value: Coordinates) -> Coordinates:
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return round(value, _DIGITS)


router = APIRouter(tags=["map"])


@router.get(
    "/map/service-area.geojson",
    summary="The service area's outline (GeoJSON), for the pages' maps",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {"schema": {"type": "object"}}}}},
)
async def service_area() -> Response:
    return Response(
        service_area_geojson(), media_type="application/geo+json", headers={"Cache-Control": "public, max-age=3600"}
    )


@router.get("/map/config.json", summary="How the pages draw their maps: a tile server's URL template, or none")
async def map_config(request: Request) -> dict[str, str]:
    """For static pages (the operations console), which cannot be rendered with the setting."""
    return {"tile_url": getattr(request.app.state.settings, "map_tile_url", "")}
