// The operations console: a live map of couriers and open orders, the counters, why an order
// went to whom, a flagged courier's flag and its clear (flag.js), the cash a courier holds and
// its hand-in (cash.js), who holds cash (cash-list.js), and creating couriers with their
// sign-in QR code.
//
// The admin token is typed once and kept in sessionStorage only (gone with the tab, never in
// a URL); every call sends it as a bearer, and a 401 brings the sign-in form back. The page
// polls the admin views (GET /v1/admin/overview, /couriers, /jobs) every POLL_MS for what the
// map shows; it loads nothing from another origin.
import { retryDelayMs } from "/web/shared/retry.js";
import { cashSection } from "./cash.js";
import { cashListSection } from "./cash-list.js";
import { flagSection } from "./flag.js";
import { MESSAGES, LOCALE, t } from "./messages.js";

const TOKEN = "giao.ops.token";
const POLL_MS = 1500;  // the counters are at most 2 s old
const POLL_MAX_MS = 30_000;  // after failures in a row the polls space out up to this
const REQUEST_TIMEOUT_MS = 20_000;  // a call that hangs (a laptop waking up) fails, and the poll goes on
const PAGE = 500;  // the API's largest page
const MAX_PAGES = 10;  // a map shows at most this many pages of couriers (and of orders)
const CASH_PAGE = 50;  // couriers holding cash a page: the operator reads them, "more" brings the next
const MAP_MODULE = "/web/shared/map.js";
const REACH_PX = 16;  // a tap this near a marker's centre may have meant it: its dot (22 px, map.css) and a little

const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

// --- the API -----------------------------------------------------------------------------

async function api(path, { method = "GET", body } = {}) {
  const token = sessionStorage.getItem(TOKEN);
  if (!token) throw new Unauthorized();
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  if (response.status === 401) throw new Unauthorized();
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(`${path}: ${response.status}`);
    error.status = response.status;
    error.retryAfterS = Number(response.headers.get("Retry-After")) || 0;
    error.fields = ((data && data.errors) || []).map((e) => String((e.loc || []).at(-1)));
    throw error;
  }
  return data;
}

/** What went wrong, in the console's words (the API's own details are English). */
function failureText(error) {
  if (!error.status) return t("failed_network");
  if (error.status === 422 && error.fields.length) {
    const label = (name) => (`field_${name}` in MESSAGES.vi ? t(`field_${name}`) : name);  // a field the form lacks
    return t("invalid_fields", { fields: error.fields.map(label).join(", ") });
  }
  const key = `failed_${error.status}`;
  return t(key in MESSAGES.vi ? key : error.status >= 500 ? "failed_server" : "failed_other");
}

/** Every page of a paged view (up to MAX_PAGES), following next_cursor. */
async function allPages(path, params) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ ...params, limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    const body = await api(`${path}?${query}`);
    items.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  return items;
}

// --- texts -------------------------------------------------------------------------------

function age(seconds) {
  if (seconds === null || seconds === undefined) return t("none");
  return seconds < 120 ? t("seconds", { n: seconds }) : t("minutes", { n: Math.floor(seconds / 60) });
}

const number = new Intl.NumberFormat(LOCALE);
const clock = new Intl.DateTimeFormat(LOCALE, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function element(tag, { text = "", className = "", testid = "", data = {} } = {}, ...children) {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  if (className) node.className = className;
  if (testid) node.dataset.testid = testid;
  Object.assign(node.dataset, data);
  node.append(...children);
  return node;
}

// --- sign-in -----------------------------------------------------------------------------

// The poll loop that may run: a new sign-in starts another and the old one, if still waiting
// on a call or its pause, ends when it wakes (never two loops at once).
let loop = 0;

function showLogin(message = "") {
  loop += 1;
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").value = "";
  $("token").focus();
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN);
  showLogin(message);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!$("token").value.trim()) { $("login-error").textContent = t("token_missing"); return; }
  sessionStorage.setItem(TOKEN, $("token").value.trim());
  try {
    await api("/v1/admin/overview");
  } catch (error) {
    if (error instanceof Unauthorized) signOut(t("wrong_token"));
    else { sessionStorage.removeItem(TOKEN); $("login-error").textContent = t("network_error"); }
    return;
  }
  start();
});

$("sign-out").addEventListener("click", () => signOut());

// --- the map -----------------------------------------------------------------------------

let mapKit = null;  // map.js's exports
let map = null;
const couriers = new Map();  // id -> { marker, item }
const orders = new Map();  // order id -> { marker, item }
let offerLines = null;

// The view is kept in the address's fragment (#map=lat,lng,zoom): a reload or a shared link
// shows the same place. (The fragment holds the view only, never the token.)
function viewFromAddress() {
  const match = /(?:^#|&)map=(-?[\d.]+),(-?[\d.]+),(\d+)/.exec(location.hash);
  return match ? { center: [Number(match[1]), Number(match[2])], zoom: Number(match[3]) } : { zoom: 13 };
}

async function ensureMap() {
  if (map) return;
  mapKit = await import(MAP_MODULE);
  const { tile_url: tileUrl } = await fetch("/map/config.json").then((r) => r.json()).catch(() => ({ tile_url: "" }));
  map = mapKit.createMap($("map"), { ...viewFromAddress(), tileUrl, zoomTexts: { zoomIn: t("zoom_in"), zoomOut: t("zoom_out") } });
  map.on("moveend", () => {
    const c = map.getCenter();
    history.replaceState(null, "", `#map=${c.lat.toFixed(5)},${c.lng.toFixed(5)},${map.getZoom()}`);
  });
  window.addEventListener("hashchange", () => {
    const view = viewFromAddress();
    if (view.center) map.setView(view.center, view.zoom);
  });
  map.getContainer().setAttribute("aria-label", t("app_name"));
  offerLines = mapKit.L.layerGroup().addTo(map);
}

function bbox() {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90), clamp(b.getEast(), -180, 180),
    clamp(b.getNorth(), -90, 90)].map((v) => v.toFixed(5)).join(",");
}

function courierTitle(c) {
  return `${c.display_name} · ${t("vehicle")[c.vehicle] || c.vehicle} · ${c.load}/${c.capacity}`;
}

/** Sets a marker element's data-* and classes (the marker may be drawn later: then on add). */
function dress(marker, apply) {
  const el = marker.getElement();
  if (el) apply(el);
  else marker.once("add", () => apply(marker.getElement()));
}

/** A tap on a marker opens it, unless it may have meant another marker too, one whose dot lies
 * under the thumb as well (orders waiting at one shop, a courier at the pickup): then the
 * console lists them all to choose from, since only the topmost would ever get the tap. */
function tapped(event, open) {
  const at = event.containerPoint;
  const meant = (entry) => map.latLngToContainerPoint(entry.marker.getLatLng()).distanceTo(at) <= REACH_PX;
  const here = [...[...couriers.values()].filter(meant).map(({ item }) => ({ courier: item })),
    ...[...orders.values()].filter(meant).map(({ item }) => ({ order: item }))];
  if (here.length > 1) showChoices(here);
  else open();
}

function drawCouriers(items) {
  const seen = new Set();
  for (const c of items) {
    seen.add(c.id);
    const state = c.busy ? "busy" : "free";
    let entry = couriers.get(c.id);
    if (!entry) {
      const marker = mapKit.markerAt([c.lat, c.lng], { className: "courier-marker", title: courierTitle(c),
        data: { testid: "courier-marker", courierId: c.id } });
      marker.on("click", (event) => tapped(event, () => showCourier(c.id)));
      entry = { marker, item: c };
      couriers.set(c.id, entry);
      marker.addTo(map);
    } else {
      entry.marker.setLatLng([c.lat, c.lng]);
      entry.item = c;
    }
    dress(entry.marker, (el) => {
      Object.assign(el.dataset, { testid: "courier-marker", courierId: c.id, vehicle: c.vehicle,
        load: String(c.load), capacity: String(c.capacity), busy: String(c.busy), flagged: String(Boolean(c.flag)) });
      el.classList.toggle("busy", state === "busy");
      el.classList.toggle("flagged", Boolean(c.flag));
      el.classList.toggle("free", state === "free");
      el.textContent = t("vehicle_letter")[c.vehicle] || "";
      el.title = courierTitle(c);
    });
  }
  for (const [id, entry] of couriers) {
    if (!seen.has(id)) { entry.marker.remove(); couriers.delete(id); }
  }
}

function drawOrders(items) {
  const seen = new Set();
  offerLines.clearLayers();
  for (const o of items) {
    seen.add(o.order_id);
    let entry = orders.get(o.order_id);
    if (!entry) {
      const marker = mapKit.markerAt([o.pickup_lat, o.pickup_lng], { className: "order-marker",
        data: { testid: "order-marker", orderId: o.order_id } });
      marker.on("click", (event) => tapped(event, () => showJob(o.order_id)));
      entry = { marker, item: o };
      orders.set(o.order_id, entry);
      marker.addTo(map);
    } else {
      entry.marker.setLatLng([o.pickup_lat, o.pickup_lng]);
      entry.item = o;
    }
    dress(entry.marker, (el) => {
      el.dataset.status = o.status;
      el.dataset.ageS = String(o.age_s);
      for (const s of Object.keys(MESSAGES.vi.status)) el.classList.toggle(s, s === o.status);
      el.title = t("order_marker", { status: t("status")[o.status], age: age(o.age_s) });
    });
    const holder = o.courier_id && couriers.get(o.courier_id);
    if (holder && (o.status === "offered" || o.status === "assigned")) {  // live offers and who goes to the pickup
      mapKit.L.polyline([holder.marker.getLatLng(), [o.pickup_lat, o.pickup_lng]], {
        className: `offer-line ${o.status}`, weight: 2, interactive: false, dashArray: o.status === "offered" ? "4 4" : null,
      }).addTo(offerLines);
    }
  }
  for (const [id, entry] of orders) {
    if (!seen.has(id)) { entry.marker.remove(); orders.delete(id); }
  }
}

function drawCounters(o) {
  const set = (id, value) => { $(id).textContent = value; };
  set("counter-waiting", number.format(o.waiting));
  set("counter-oldest", age(o.oldest_waiting_s));
  set("counter-offers", number.format(o.offers_out));
  set("counter-in-progress", number.format(o.in_progress));
  set("counter-expired", number.format(o.expired_today));
  set("counter-couriers", number.format(o.couriers_online));
  set("counter-outbox", number.format(o.outbox_backlog));
  set("counter-dead-letters", o.dead_letters === null ? t("none") : number.format(o.dead_letters));
  $("updated").textContent = t("updated_at", { time: clock.format(new Date(o.at)) });
}

// --- the loop ----------------------------------------------------------------------------

async function tick() {
  const area = { bbox: bbox() };
  // couriers first: an order's line to its courier needs the courier's marker
  const [overview, courierItems, orderItems] = await Promise.all([
    api("/v1/admin/overview"), allPages("/v1/admin/couriers", area), allPages("/v1/admin/jobs", area)]);
  drawCounters(overview);
  drawCouriers(courierItems);
  drawOrders(orderItems);
}

async function poll(mine) {
  let failures = 0;
  while (mine === loop) {
    const started = performance.now();
    let pause = POLL_MS;
    try {
      await tick();
      failures = 0;
    } catch (error) {
      if (mine !== loop) return;
      if (error instanceof Unauthorized) { signOut(t("session_ended")); return; }
      $("updated").textContent = error.status ? t("poll_failed", { detail: failureText(error) }) : t("network_error");
      // Failures in a row space the polls out (every open console asks a struggling server
      // less), and a Retry-After is waited at the least.
      failures += 1;
      pause = retryDelayMs(failures, { firstMs: 2 * POLL_MS, maxMs: POLL_MAX_MS, retryAfterS: error.retryAfterS || 0 });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(200, pause - (performance.now() - started))));
  }
}

async function start() {
  $("login").hidden = true;
  $("console").hidden = false;
  $("sign-out").hidden = false;
  await ensureMap();
  map.invalidateSize();
  loop += 1;
  poll(loop);
}

// --- details: an order's explanation, a courier's jobs -------------------------------------

const names = new Map();  // courier id -> full name (admins see it)

async function courierName(id) {
  if (!names.has(id)) names.set(id, (await api(`/v1/admin/couriers/${encodeURIComponent(id)}`)).name);
  return names.get(id);
}

function showPanel(title, ...children) {
  const panel = $("details");
  const close = element("button", { text: t("close"), className: "link close" });
  close.type = "button";
  close.addEventListener("click", () => { panel.hidden = true; });
  panel.replaceChildren(element("div", { className: "details-head" }, element("h2", { text: title }), close), ...children);
  panel.hidden = false;
}

async function guarded(work) {
  try {
    await work();
  } catch (error) {
    if (error instanceof Unauthorized) signOut(t("session_ended"));
    else showPanel(t("open_failed", { detail: failureText(error) }));
  }
}

function showJob(orderId) {
  return guarded(async () => {
    const job = await api(`/v1/admin/jobs/${encodeURIComponent(orderId)}`);
    const ids = [...new Set([job.courier_id, ...job.offers.map((o) => o.courier_id)].filter(Boolean))];
    await Promise.all(ids.map(courierName));
    const ageS = Math.max(0, Math.round((Date.now() - Date.parse(job.placed_at)) / 1000));
    const parts = [
      element("p", { text: t("order_status", { status: t("status")[job.status] || job.status }), data: { status: job.status } }),
      element("p", { text: t("order_age", { age: age(ageS) }) }),
      job.courier_id
        ? element("p", { text: t("chosen_courier", { name: names.get(job.courier_id) }), className: "chosen",
            testid: "chosen-courier", data: { courierId: job.courier_id } })
        : element("p", { text: t("no_courier") }),
      element("h3", { text: t("offers_title") }),
    ];
    const list = element("ol", { className: "offers" });
    for (const offer of job.offers) {
      const why = offer.why;
      list.append(element("li", { data: { courierId: offer.courier_id, state: offer.state }, testid: "offer" },
        element("strong", { text: t("offer_line", { name: names.get(offer.courier_id),
          state: t("offer_state")[offer.state] || offer.state }) }),
        element("span", { className: "why", text: t("offer_why", { distance: number.format(why.distance_m),
          minutes: Math.max(1, Math.ceil(why.travel_estimate_s / 60)), load: why.courier_load,
          capacity: why.courier_capacity, candidates: why.candidates_weighed }) })));
    }
    parts.push(job.offers.length ? list : element("p", { text: t("no_offers") }));
    $("details").dataset.orderId = job.order_id;
    showPanel(t("order_title", { id: job.order_id.slice(0, 8) }), ...parts);
  });
}

function showChoices(here) {
  const list = element("ul", { className: "choices" });
  for (const { courier, order } of here) {
    const choice = courier
      ? element("button", { className: "link", text: courierTitle(courier), testid: "marker-choice",
          data: { courierId: courier.id } })
      : element("button", { className: "link", testid: "marker-choice", data: { orderId: order.order_id, status: order.status },
          text: `${t("order_title", { id: order.order_id.slice(0, 8) })} · ${t("status")[order.status]} · ${age(order.age_s)}` });
    choice.type = "button";
    choice.addEventListener("click", () => (courier ? showCourier(courier.id) : showJob(order.order_id)));
    list.append(element("li", {}, choice));
  }
  delete $("details").dataset.orderId;
  showPanel(t("choices_title", { n: here.length }), list);
}

/** A courier's panel; `cashOutcome` is what the hand-in just recorded there came to (cash.js). */
function showCourier(courierId, cashOutcome = null) {
  return guarded(async () => {
    const path = `/v1/admin/couriers/${encodeURIComponent(courierId)}`;
    const [courier, held, cash] = await Promise.all([api(path), api(`${path}/jobs`), api(`${path}/cash`)]);
    names.set(courier.id, courier.name);
    const list = element("ul", { className: "courier-jobs", testid: "courier-jobs" });
    for (const job of held.items) {
      const open = element("button", { className: "link", text: `${job.order_id.slice(0, 8)} · ${t("status")[job.status]} · ${age(job.age_s)}`,
        data: { orderId: job.order_id, status: job.status } });
      open.type = "button";
      open.addEventListener("click", () => showJob(job.order_id));
      list.append(element("li", {}, open));
    }
    delete $("details").dataset.orderId;
    const clear = (id) => guarded(async () => {
      await api(`/v1/admin/couriers/${encodeURIComponent(id)}/flag/clear`, { method: "POST" });
      await showCourier(id);
    });
    // Everything held is handed in; a 409 means it changed meanwhile (a delivery, another
    // hand-in): the panel reads it again and says so.
    const receive = (amount) => guarded(async () => {
      let outcome;
      try {
        outcome = { handin: await api(`${path}/cash-handins`, { method: "POST", body: { amount_vnd: amount } }) };
      } catch (error) {
        if (error.status !== 409) throw error;
        outcome = { changed: true };
      }
      await showCourier(courierId, outcome);
    });
    showPanel(t("courier_title", { name: courier.name, vehicle: t("vehicle")[courier.vehicle] || courier.vehicle }),
      ...flagSection(courier, { element, clear }),
      element("p", { text: `${t("courier_load", { load: courier.load, capacity: courier.capacity })} · `
        + t(courier.flag ? "courier_paused" : courier.load >= courier.capacity ? "courier_busy" : "courier_free") }),
      ...cashSection(cash, { element, receive, outcome: cashOutcome }),
      element("h3", { text: t("courier_jobs") }),
      held.items.length ? list : element("p", { text: t("courier_no_jobs") }));
  });
}

/** Who holds cash, read now (not polled: GET /v1/admin/cash sums all the cash held). There is
 * no "back" from a courier's panel: the button reads the list afresh, a hand-in included. */
function showCashList() {
  return guarded(async () => {
    const read = (cursor) => api(`/v1/admin/cash?${new URLSearchParams({ limit: String(CASH_PAGE), ...(cursor ? { cursor } : {}) })}`);
    const page = await read(null);
    delete $("details").dataset.orderId;
    showPanel(t("cash_list_title"), ...cashListSection(page, { element, age, open: (id) => showCourier(id),
      more: (cursor, add) => guarded(async () => add(await read(cursor))) }));
  });
}

$("cash-list-open").addEventListener("click", () => showCashList());

// --- creating a courier --------------------------------------------------------------------

for (const [value, label] of Object.entries(t("vehicle"))) {
  const option = element("option", { text: label });
  option.value = value;
  option.defaultSelected = value === "motorbike";
  $("courier-create").elements.vehicle.append(option);
}

$("courier-create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("create-error").textContent = "";
  let created;
  try {
    created = await api("/v1/admin/couriers", { method: "POST", body: {
      name: form.elements.name.value.trim(), phone: form.elements.phone.value.trim(), vehicle: form.elements.vehicle.value } });
  } catch (error) {
    if (error instanceof Unauthorized) { signOut(t("session_ended")); return; }
    $("create-error").textContent = t("create_failed", { detail: failureText(error) });
    return;
  }
  // The link is absolute for a phone's camera; a relative one is made so from this page's origin.
  const link = new URL(created.signin_link, location.origin).href;
  const qr = globalThis.qrcode(0, "M");
  qr.addData(link);
  qr.make();
  $("signin-qr").src = qr.createDataURL(6, 24);
  $("signin-qr").alt = link;
  $("signin-link").href = link;
  $("signin-link").textContent = link;
  $("created-title").textContent = t("created_title", { name: created.name });
  $("created").hidden = false;
  form.reset();
});

// --- start -------------------------------------------------------------------------------

document.title = t("app_name");
for (const node of document.querySelectorAll("[data-text]")) node.textContent = t(node.dataset.text);
if (sessionStorage.getItem(TOKEN)) start();
else showLogin();
