// The tracking page, live: the server rendered the parcel as it was (page.py); this follows
// it over the API's event stream (GET /v1/tracking/{code}/events, `tracking` events carrying
// the public view, then `end`) and draws the map while the parcel is on its way. The map's
// code (Leaflet, the land shapes) is loaded only then. Texts: messages.vi.json, as the server's.
import { retryDelayMs } from "/web/shared/retry.js";

const root = document.getElementById("tracking");
const messages = await fetch(new URL("./messages.vi.json", import.meta.url)).then((r) => r.json());
const $ = (testid) => root.querySelector(`[data-testid="${testid}"]`);
const ON_ITS_WAY = "picked_up";
const RECONNECT_MS = 5000;  // after a refused stream (429, 404): then twice as long each time
const RECONNECT_MAX_MS = 60_000;
let refusals = 0;  // refused streams in a row

function localTime(at) {  // Vietnam's time (UTC+7, no daylight saving), as page.local_time
  const t = new Date(Date.parse(at) + 7 * 3600e3);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(t.getUTCHours())}:${two(t.getUTCMinutes())} · ${two(t.getUTCDate())}/${two(t.getUTCMonth() + 1)}`;
}

function showLive(text) {
  const live = $("live");
  live.textContent = text;
  live.hidden = !text;
}

function show(view) {
  const status = $("status");
  status.textContent = messages.status[view.status] ?? view.status;
  status.dataset.status = view.status;

  const eta = $("eta");
  eta.textContent = view.eta_minutes == null ? "" : messages.eta.replace("{minutes}", view.eta_minutes);
  eta.hidden = view.eta_minutes == null;

  const courier = view.courier;
  $("courier-name").closest(".courier").hidden = !courier;
  $("courier-name").textContent = courier ? courier.display_name : "";
  $("courier-vehicle").textContent = courier ? messages.vehicle[courier.vehicle] ?? "" : "";

  const items = view.timeline.map((step) => {
    const item = document.createElement("li");
    item.dataset.testid = "timeline-item";
    item.dataset.status = step.status;
    const time = document.createElement("time");
    time.dateTime = step.at;
    time.textContent = localTime(step.at);
    const text = document.createElement("span");
    text.textContent = messages.steps[step.status] ?? step.text;
    item.append(time, " ", text);
    return item;
  });
  root.querySelector(".timeline").replaceChildren(...items);

  const location = view.status === ON_ITS_WAY && courier ? courier.location : null;
  if (view.status === ON_ITS_WAY) showMap(location);
  else $("map").hidden = true;
  if (view.status === "assigned") import(root.dataset.map).catch(() => {});  // the map's code, before it is needed
}

// --- the map, while the parcel is on its way ------------------------------------------
let mapReady = null;
let latest = null;

function showMap(location) {
  latest = location;
  // The map's code may not arrive (a flaky network): then no empty box, and the next update
  // tries again (a browser that remembers the failed module fails at once: the box stays
  // hidden). Status and timeline never depended on it.
  mapReady ??= import(root.dataset.map).then(drawMap, (error) => {
    mapReady = null;
    throw error;
  });
  mapReady.then((draw) => draw(latest)).catch((error) => console.warn("no map:", error));
}

function drawMap({ createMap, markerAt, areaAt, L }) {
  const element = $("map");
  element.hidden = false;  // Leaflet measures the element: visible first
  const map = createMap(element, { tileUrl: root.dataset.tileUrl,
    zoomTexts: { zoomIn: messages.zoom_in, zoomOut: messages.zoom_out } });
  const ring = root.dataset.area ? JSON.parse(root.dataset.area) : null;
  if (ring) {
    areaAt(ring, { title: messages.destination_area }).addTo(map);
    map.fitBounds(ring, { padding: [32, 32], maxZoom: 15 });
  }
  let marker = null;
  return (location) => {
    element.hidden = false;
    if (!location) return;
    const point = [location.lat, location.lng];
    if (!marker) {
      marker = markerAt(point, { className: "courier", title: messages.courier_marker, interactive: false,
        data: { testid: "courier-marker" } }).addTo(map);
      map.fitBounds(L.latLngBounds([point, ...(ring ?? [point])]), { padding: [32, 32], maxZoom: 16 });
    } else {
      marker.setLatLng(point);
      if (!map.getBounds().contains(point)) map.panTo(point);
    }
  };
}

// --- the stream ------------------------------------------------------------------------
function follow() {
  const source = new EventSource(root.dataset.events);
  source.addEventListener("open", () => { refusals = 0; showLive(messages.live); });
  source.addEventListener("tracking", (event) => show(JSON.parse(event.data)));
  source.addEventListener("end", () => {
    source.close();  // final: the server asks not to come back
    showLive(messages.ended);
  });
  source.addEventListener("error", () => {
    showLive(messages.reconnecting);
    // EventSource retries by itself unless the server answered an error (429, 404): then later,
    // and later still each time in a row (with a spread, so that pages refused together do not
    // come back together), so that every open page asks a limited server less.
    if (source.readyState !== EventSource.CLOSED) return;
    refusals += 1;
    setTimeout(follow, retryDelayMs(refusals, { firstMs: RECONNECT_MS, maxMs: RECONNECT_MAX_MS, spread: 0.4 }));
  });
}

follow();
