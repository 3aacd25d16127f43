// The pages' base map: Leaflet over the world's land (Natural Earth via world-atlas, drawn
// from TopoJSON here) and the service area's outline (GET /map/service-area.geojson), all
// from the page's own origin. With a tile server configured (GIAO_MAP_TILE_URL) its tiles
// replace the land layer. A page links vendor/leaflet/leaflet.css and map.css itself: no
// inline style anywhere (the pages' CSP refuses them; Leaflet's own el.style writes are
// CSSOM, which CSP allows).
import "./vendor/leaflet/leaflet.js";  // UMD: defines globalThis.L
import "./vendor/topojson-client/topojson-client.min.js";  // UMD: defines globalThis.topojson

export const L = globalThis.L;
const topojson = globalThis.topojson;

const LAND_URL = new URL("./vendor/world-atlas/land-50m.json", import.meta.url);
export const SERVICE_AREA_URL = "/map/service-area.geojson";
export const HA_LONG = [20.958, 107.06];

// The land changes never: one download and one conversion for every map of the page.
let landOnce = null;
function land() {
  landOnce ??= fetch(LAND_URL).then((r) => {
    if (!r.ok) throw new Error(`land: ${r.status}`);
    return r.json();
  }).then((topo) => topojson.feature(topo, topo.objects.land));
  return landOnce;
}

/** A map in `element`. Options: tileUrl ("" draws the land layer), center, zoom, serviceAreaUrl,
 * and zoomTexts: the zoom buttons' titles from the page's message table ({ zoomIn, zoomOut }),
 * which Leaflet would otherwise give in English (also their screen readers' labels). */
export function createMap(element, { tileUrl = "", center = HA_LONG, zoom = 13, serviceAreaUrl = SERVICE_AREA_URL,
  zoomTexts = {} } = {}) {
  const map = L.map(element, { center, zoom, minZoom: 3, maxZoom: 18, worldCopyJump: true, zoomControl: false });
  L.control.zoom({ zoomInTitle: zoomTexts.zoomIn ?? "+", zoomOutTitle: zoomTexts.zoomOut ?? "−" }).addTo(map);
  map.attributionControl.setPrefix("Leaflet");
  if (tileUrl) {
    L.tileLayer(tileUrl, { maxZoom: 19 }).addTo(map);
  } else {
    element.classList.add("giao-map-sea");
    map.attributionControl.addAttribution("Natural Earth");
    // Canvas: one element for the whole coastline instead of thousands of SVG paths.
    land().then((shapes) => L.geoJSON(shapes, { renderer: L.canvas({ padding: 0.5 }), interactive: false,
      style: { className: "giao-land", stroke: true, color: "#b9ad8f", weight: 1, fillColor: "#efe9d9", fillOpacity: 1 } })
      .addTo(map).bringToBack()).catch((error) => console.warn("no land layer:", error));
  }
  if (serviceAreaUrl) {
    fetch(serviceAreaUrl).then((r) => (r.ok ? r.json() : Promise.reject(new Error(`service area: ${r.status}`))))
      .then((area) => L.geoJSON(area, { interactive: false,
        style: { className: "giao-service-area", color: "#1f7a5c", weight: 2, dashArray: "6 4", fill: true, fillOpacity: 0.04 } })
        .addTo(map))
      .catch((error) => console.warn("no service area:", error));
  }
  return map;
}

/** A marker whose element carries `data` as data-* attributes (data-testid and the like): a
 * thumb's target (48 px) around the dot map.css draws. `interactive: false` for a marker that
 * does nothing when tapped: it is then no target at all (no hand cursor; taps go to the map). */
export function markerAt(latlng, { className = "", title = "", data = {}, interactive = true } = {}) {
  const marker = L.marker(latlng, { keyboard: false, title, interactive,
    icon: L.divIcon({ className: `giao-marker ${className}`, iconSize: [48, 48], html: "" }) });
  marker.on("add", () => Object.assign(marker.getElement().dataset, data));
  return marker;
}

/** An area shown instead of a point: a ring of [lat, lng] corners. */
export function areaAt(ring, { className = "giao-area", title = "" } = {}) {
  const area = L.polygon(ring, { className, color: "#c0392b", weight: 2, fillOpacity: 0.15, interactive: Boolean(title) });
  if (title) area.bindTooltip(title);
  return area;
}
