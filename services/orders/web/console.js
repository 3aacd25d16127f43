// The merchant console: sign in with an API key, place orders, follow them (polled), share the
// tracking link, cancel; the statement of delivered orders (COD reconciled); webhook endpoints and
// their delivery log; API keys.
import { el, fillTexts, reconcile, say } from "/web/shared/ui.js";
import { api, ApiError, NetworkError, session } from "./api.js";
import { daysBetween, formatMoney, vietnamToday } from "./format.js";
import { t } from "./messages.js";
import { OrderForm } from "./order-form.js";
import {
  CANCELLABLE, deliveryRows, keyRow, orderDetail, orderKey, orderRow, statementDay, statementLine, webhookKey, webhookRow,
} from "./view.js";

const POLL_MS = 3000;
const STATEMENT_MAX_DAYS = 93; // the API's longest range: said here before asking
const EVENT_TYPES = ["order.status_changed", "order.cancellation_answered", "order.delivery_failed", "order.returned"];

const $ = (id) => document.getElementById(id);
// `orders` is the newest page, polled; `older` the pages the shop asked for beyond it (read once,
// newest first), and `olderCursor` where the next older page starts (null: there is none).
const state = { orders: [], older: [], olderCursor: null, detail: null, trackingUrl: "", tab: "orders", behind: false };
let pollTimer = null;
// Each poll, and a sign-out, starts a new round: an answer of an older round (a poll that was
// under way when the shop signed out, cancelled or placed) is dropped, never drawn over newer state.
let round = 0;
let orderForm = null;
// The statement asked for last: an answer to an earlier one (or one from before a sign-out) is dropped.
let statementRound = 0;

// What a refusal means to the shop owner; a refused key ends the session.
function failed(error) {
  if (error instanceof NetworkError) return say(t("network_error"), "error");
  if (!(error instanceof ApiError)) {
    console.error(error);
    return say(t("unexpected_error"), "error");
  }
  const { status, problem } = error;
  if (status === 401) return signOut(t("session_ended"), "error");
  if (status === 404) return say(t("not_found"), "error");
  if (status === 409) return say(t("conflict"), "error");
  if (status === 422) {
    if ((problem.errors ?? []).some((e) => e.loc?.at(-1) === "url")) return say(t("unsafe_url"), "error");
    if (problem.title === "Outside the service area") {
      const places = (problem.errors ?? []).map((e) => t(e.loc?.at(-1) === "dropoff" ? "pick_dropoff" : "pick_pickup"));
      return say(t("outside_area", { places: places.join(", ") }), "error");
    }
    const fields = [...new Set((problem.errors ?? []).map((e) => fieldText(e.loc ?? [])))].join(", ");
    return say(fields ? t("invalid_input", { fields }) : t("invalid_input_any"), "error");
  }
  return say(t("server_busy"), "error");
}

// A refused field by the form's own labels ("Người nhận · Số điện thoại" for dropoff.phone); a
// field the form does not show keeps its name in the API.
const GROUPS = { pickup: "pickup", dropoff: "recipient", parcel: "parcel" };
const FIELDS = { phone: "phone", address: "address", lat: "points", lng: "points", weight_grams: "weight_kg",
  description: "description", cod_amount_vnd: "cod", note: "note", event_types: "event_types",
  from: "statement_from", to: "statement_to" };

function fieldText(loc) {
  const path = loc.filter((part) => part !== "body");
  const group = GROUPS[path[0]];
  const last = path.at(-1);
  const name = last === "name" ? (path[0] === "dropoff" ? "recipient_name" : "shop_name") : FIELDS[last];
  if (!name) return path.join(".");
  return group && path.length > 1 ? `${t(group)} · ${t(name)}` : t(name);
}

// --- signing in and out ----------------------------------------------------------------------

function showSession() {
  const signedIn = session.key() !== null;
  $("signed-out").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
}

async function signIn(event) {
  event.preventDefault();
  const input = event.target.elements.key;
  const key = input.value.trim();
  if (!key) return say(t("missing_fields", { fields: t("api_key") }), "error");
  try {
    await api.check(key);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return say(t("wrong_key"), "error");
    return failed(error);
  }
  input.value = "";
  session.keep(key);
  say(t("signed_in"));
  start();
}

function signOut(notice, kind = "notice") {
  clearTimeout(pollTimer);
  round += 1;
  session.forget();
  Object.assign(state, { orders: [], older: [], olderCursor: null, detail: null, behind: false });
  statementRound += 1;
  for (const list of ["orders", "webhooks", "keys", "new-key", "webhook-secret", "detail", "statement-days"]) {
    $(list).replaceChildren();
  }
  $("statement-result").hidden = true;
  $("statement-form").reset(); // the next shop starts from its current month
  $("new-key-box").hidden = $("webhook-secret-box").hidden = true;
  showSession();
  say(notice, kind);
}

// --- tabs ---------------------------------------------------------------------------------------

function show(tab) {
  state.tab = tab;
  for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.dataset.panel !== tab;
  for (const button of document.querySelectorAll("[data-tab]")) {
    button.setAttribute("aria-current", String(button.dataset.tab === (tab === "detail" ? "orders" : tab)));
  }
  if (tab === "new") orderForm.shown();
  if (tab === "webhooks") loadWebhooks();
  if (tab === "keys") loadKeys();
  if (tab === "statement") showStatement();
  if (tab !== "detail") state.detail = null;
  window.scrollTo(0, 0);
}

// --- orders -------------------------------------------------------------------------------------

async function poll() {
  clearTimeout(pollTimer);
  if (session.key() === null) return;
  if (document.hidden) return; // polled again when the page is seen (visibilitychange)
  const mine = ++round;
  try {
    const page = await api.orders();
    // An open order beyond the newest page is not in the poll's answer: asked for on its own.
    const open = state.detail && !page.items.some((o) => o.id === state.detail.id) ? await api.order(state.detail.id) : null;
    if (mine !== round) return;
    state.orders = page.items;
    if (state.older.length === 0) state.olderCursor = page.next_cursor;
    if (open) replaceOrder(open);
    renderOrders(open);
    if (state.behind) say(t("orders_current"));
    state.behind = false;
  } catch (error) {
    if (mine !== round) return;
    if (error instanceof ApiError && error.status === 401) return failed(error);
    // Said once, not every 3 s: the list on screen may be old until a poll gets through.
    if (!state.behind) say(t("orders_behind"), "error");
    state.behind = true;
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

function replaceOrder(order) {
  for (const list of ["orders", "older"]) state[list] = state[list].map((o) => (o.id === order.id ? order : o));
}

function shownOrders() {
  const newest = new Set(state.orders.map((o) => o.id));
  return [...state.orders, ...state.older.filter((o) => !newest.has(o.id))];
}

function renderOrders(open = null) {
  const shown = shownOrders();
  reconcile($("orders"), shown, orderKey, (order) => orderRow(order, openOrder));
  $("no-orders").hidden = shown.length > 0;
  $("orders-more").hidden = state.olderCursor === null;
  if (state.detail) {
    const fresh = open ?? shown.find((o) => o.id === state.detail.id);
    if (fresh && orderKey(fresh) !== orderKey(state.detail)) renderDetail(fresh);
  }
}

async function loadOlder() {
  const key = session.key();
  try {
    const page = await api.orders(state.olderCursor);
    if (session.key() !== key) return; // signed out meanwhile
    state.older = [...state.older, ...page.items];
    state.olderCursor = page.next_cursor;
    renderOrders();
  } catch (error) {
    failed(error);
  }
}

function renderDetail(order) {
  state.detail = order;
  $("detail").dataset.orderId = order.id;
  $("detail").replaceChildren(...orderDetail(order, state.trackingUrl, { onShare: share, onCancel: cancel }));
}

async function openOrder(orderId) {
  const known = shownOrders().find((o) => o.id === orderId);
  try {
    renderDetail(known ?? (await api.order(orderId)));
  } catch (error) {
    return failed(error);
  }
  show("detail");
}

// The Web Share API where the device has it (a phone: Zalo, Messenger, SMS), else the clipboard.
async function share(order, link) {
  const text = t("share_text", { code: order.delivery_code });
  try {
    if (navigator.share) {
      await navigator.share({ title: t("tracking_link"), text, url: link });
      return say(t("shared"));
    }
    await navigator.clipboard.writeText(link);
    say(t("copied"));
  } catch (error) {
    if (error?.name !== "AbortError") say(t("share_failed"), "error");
  }
}

async function cancel(order) {
  if (!CANCELLABLE.has(order.status) || !window.confirm(t("cancel_confirm"))) return;
  try {
    const answered = await api.cancel(order.id);
    round += 1; // a poll under way began before the cancel: its status would be the old one
    replaceOrder(answered);
    renderDetail(answered);
    say(t("cancel_sent"));
    poll();
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) return say(t("cancel_refused"), "error");
    failed(error);
  }
}

function placed(order) {
  say(t("placed"));
  round += 1; // a poll under way began before this order: its list would not hold it
  state.orders = [order, ...state.orders.filter((o) => o.id !== order.id)];
  renderOrders();
  renderDetail(order);
  show("detail");
  poll();
}

// --- the statement ----------------------------------------------------------------------------

// The days asked for, checked here first so that the owner hears what is wrong in their words
// (the API's 422 names the same fields). Empty: the current month up to today, in Vietnam.
async function showStatement(event = null) {
  event?.preventDefault();
  const { from, to } = $("statement-form").elements;
  if (!from.value && !to.value && !event) {
    to.value = vietnamToday();
    from.value = `${to.value.slice(0, 8)}01`;
  }
  const missing = [[from, "statement_from"], [to, "statement_to"]].filter(([input]) => !input.value);
  if (missing.length) return say(t("missing_fields", { fields: missing.map(([, name]) => t(name)).join(", ") }), "error");
  if (from.value > to.value) return say(t("statement_reversed"), "error");
  if (daysBetween(from.value, to.value) > STATEMENT_MAX_DAYS) {
    return say(t("statement_too_long", { days: STATEMENT_MAX_DAYS }), "error");
  }
  const mine = ++statementRound;
  try {
    const statement = await api.statement(from.value, to.value);
    if (mine === statementRound) renderStatement(statement);
  } catch (error) {
    if (mine === statementRound) failed(error);
  }
}

function renderStatement(statement) {
  $("statement-delivered").textContent = String(statement.delivered);
  $("statement-cod").textContent = formatMoney(statement.cod_collected_vnd);
  $("statement-fees").textContent = formatMoney(statement.fees_vnd);
  $("statement-net").textContent = formatMoney(statement.net_vnd);
  $("statement-net").classList.toggle("owed", statement.net_vnd < 0);
  $("statement-net-meaning").textContent = t(statement.net_vnd < 0 ? "statement_net_to_giao" : "statement_net_to_shop");
  $("statement-none").hidden = statement.days.length > 0;
  $("statement-days").replaceChildren(...statement.days.map((day) => statementDay(day, openDay)));
  $("statement-result").hidden = false;
}

// A day's orders one by one, on the owner's tap (a page at a time); a second tap hides them.
async function openDay(day, parts, cursor = null) {
  if (cursor === null && parts.button.getAttribute("aria-expanded") === "true") {
    parts.button.setAttribute("aria-expanded", "false");
    parts.lines.hidden = parts.more.hidden = true;
    return;
  }
  const mine = statementRound;
  try {
    const page = await api.statementOrders(day.date, day.date, cursor);
    if (mine !== statementRound) return;
    if (cursor === null) parts.lines.replaceChildren();
    parts.lines.append(...page.items.map(statementLine));
    parts.lines.hidden = false;
    parts.button.setAttribute("aria-expanded", "true");
    parts.more.hidden = page.next_cursor === null;
    parts.more.onclick = () => openDay(day, parts, page.next_cursor);
  } catch (error) {
    failed(error);
  }
}

// --- webhooks -----------------------------------------------------------------------------------

async function loadWebhooks() {
  try {
    const endpoints = await api.webhooks();
    reconcile($("webhooks"), endpoints, webhookKey, (e) => webhookRow(e, { onLog: showLog, onPing: ping, onEnable: enableWebhook, onRemove: removeWebhook }));
    $("no-webhooks").hidden = endpoints.length > 0;
  } catch (error) {
    failed(error);
  }
}

async function showLog(endpoint, log) {
  try {
    log.replaceChildren(...deliveryRows((await api.deliveries(endpoint.id)).items));
    log.hidden = false;
  } catch (error) {
    failed(error);
  }
}

async function ping(endpoint, log) {
  try {
    await api.pingWebhook(endpoint.id);
    say(t("pinged"));
    await showLog(endpoint, log);
  } catch (error) {
    failed(error);
  }
}

async function enableWebhook(endpoint) {
  try {
    await api.enableWebhook(endpoint.id);
    say(t("enabled_again"));
    loadWebhooks();
  } catch (error) {
    failed(error);
  }
}

async function removeWebhook(endpoint) {
  try {
    await api.removeWebhook(endpoint.id);
    say(t("removed"));
    loadWebhooks();
  } catch (error) {
    failed(error);
  }
}

async function addWebhook(event) {
  event.preventDefault();
  const form = event.target;
  const types = [...form.querySelectorAll("[name=event_type]:checked")].map((box) => box.value);
  if (!form.elements.url.value.trim()) return say(t("missing_fields", { fields: t("webhook_url") }), "error");
  try {
    const created = await api.addWebhook(form.elements.url.value.trim(), types);
    $("webhook-secret").textContent = created.secret;
    $("webhook-secret-box").hidden = false;
    form.elements.url.value = "";
    say(t("webhook_added"));
    loadWebhooks();
  } catch (error) {
    failed(error);
  }
}

function eventTypeChecks() {
  return EVENT_TYPES.map((type) => el("label", { class: "check" },
    el("input", { type: "checkbox", name: "event_type", value: type, checked: true,
                  "data-testid": `event-${type}` }),
    el("span", {}, t(`event_${type.replace(/\./g, "_")}`))));
}

// --- keys ---------------------------------------------------------------------------------------

async function loadKeys() {
  try {
    const keys = await api.keys();
    const mine = session.key() ?? "";
    reconcile($("keys"), keys, (k) => k.id, (k) => keyRow(k, Boolean(k.prefix) && mine.startsWith(k.prefix), revokeKey));
  } catch (error) {
    failed(error);
  }
}

async function createKey() {
  try {
    const created = await api.createKey();
    $("new-key").textContent = created.api_key;
    $("new-key-box").hidden = false;
    say(t("key_created"));
    loadKeys();
  } catch (error) {
    failed(error);
  }
}

async function revokeKey(key) {
  if (!window.confirm(t("revoke_confirm"))) return;
  try {
    await api.revokeKey(key.id);
    say(t("revoked"));
    loadKeys();
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) return say(t("last_key"), "error");
    failed(error);
  }
}

// --- start ----------------------------------------------------------------------------------------

function start() {
  showSession();
  show("orders");
  poll();
}

async function main() {
  fillTexts(t);
  $("event-types").replaceChildren(...eventTypeChecks());
  $("login").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(t("signed_out")));
  for (const button of document.querySelectorAll("[data-tab]")) button.addEventListener("click", () => show(button.dataset.tab));
  document.querySelector("[data-testid=detail-back]").addEventListener("click", () => show("orders"));
  $("webhook-form").addEventListener("submit", addWebhook);
  $("key-create").addEventListener("click", createKey);
  $("orders-more").addEventListener("click", loadOlder);
  $("statement-form").addEventListener("submit", showStatement);
  orderForm = new OrderForm($("order-form"), { onPlaced: placed, onError: failed, say });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  const config = await api.config().catch(() => ({}));
  state.trackingUrl = config.tracking_url ?? "";
  orderForm.keepWithin(config.service_area_bounds ?? null);
  if (session.key() === null) return showSession();
  start();
}

main();
