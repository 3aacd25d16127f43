// The console's rows and cards, built with DOM calls (text is never parsed as HTML: names and
// addresses are typed by people, delivery errors come from other servers).
import { el, fact } from "/web/shared/ui.js";
import { formatDay, formatDistance, formatMoney, formatTime } from "./format.js";
import { t } from "./messages.js";

export function statusText(order) {
  const status = t(`status_${order.status}`);
  return order.cancellation === "requested" || order.cancellation === "refused"
    ? `${status} · ${t(`cancellation_${order.cancellation}`)}` : status;
}

export const CANCELLABLE = new Set(["placed", "assigned"]);

// --- orders ------------------------------------------------------------------------------------

export function orderKey(order) {
  return `${order.id}:${order.status}:${order.cancellation ?? ""}`;
}

export function orderRow(order, onOpen) {
  return el("button", { type: "button", class: "row order", "data-testid": "order-row", "data-order-id": order.id,
                        "data-status": order.status, onclick: () => onOpen(order.id) },
    el("span", { class: "row-main" }, el("strong", {}, order.dropoff.name), el("small", {}, order.dropoff.address)),
    el("span", { class: "row-side" },
      el("span", { class: `badge s-${order.status}` }, statusText(order)),
      el("small", {}, `${formatMoney(order.fee_vnd)} · ${formatTime(order.created_at)}`)));
}

export function orderDetail(order, trackingUrl, { onShare, onCancel }) {
  const link = `${trackingUrl}/t/${order.tracking_code}`;
  const open = CANCELLABLE.has(order.status) && order.cancellation !== "requested";
  return [
    el("header", { class: "card-head" },
      el("strong", { "data-testid": "detail-status", "data-status": order.status }, statusText(order)),
      el("small", {}, formatTime(order.created_at))),
    el("div", { class: "code-box" },
      el("span", {}, t("delivery_code")),
      el("strong", { class: "code", "data-testid": "delivery-code" }, order.delivery_code),
      el("small", {}, t("delivery_code_help"))),
    el("dl", { class: "facts" },
      fact(t("recipient"), order.dropoff.name, el("small", {}, `${order.dropoff.phone} · ${order.dropoff.address}`)),
      fact(t("pickup"), order.pickup.name, el("small", {}, order.pickup.address)),
      fact(t("fee"), `${formatMoney(order.fee_vnd)} · ${formatDistance(order.distance_m)}`),
      fact(t("cod_short"), order.cod_amount_vnd > 0 ? formatMoney(order.cod_amount_vnd) : t("no_cod")),
      order.courier ? fact(t("courier"), order.courier.name, el("small", {}, order.courier.phone)) : null,
      fact(t("tracking_code"), order.tracking_code),
      fact(t("tracking_link"), el("a", { href: link, "data-testid": "tracking-link", rel: "noopener noreferrer",
                                         target: "_blank" }, link))),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "primary", "data-testid": "share-tracking",
                     onclick: () => onShare(order, link) }, t("share")),
      open ? el("button", { type: "button", class: "danger", "data-testid": "order-cancel",
                            onclick: () => onCancel(order) }, t("cancel")) : null),
    el("h3", {}, t("history")),
    el("ol", { class: "history" }, order.history.map((step) =>
      el("li", { "data-status": step.status }, el("time", { datetime: step.at }, formatTime(step.at)), " ",
        t(`status_${step.status}`)))),
  ];
}

// --- webhooks ---------------------------------------------------------------------------------

function eventText(type) {
  return t(`event_${type.replace(/\./g, "_")}`);
}

export function webhookKey(endpoint) {
  return `${endpoint.id}:${endpoint.enabled}:${endpoint.updated_at}`;
}

export function webhookRow(endpoint, { onLog, onPing, onEnable, onRemove }) {
  const log = el("div", { class: "log", "data-testid": "delivery-log", hidden: true });
  return el("article", { class: "card webhook", "data-testid": "webhook-row", "data-endpoint-id": endpoint.id,
                         "data-enabled": String(endpoint.enabled) },
    el("strong", { class: "url" }, endpoint.url),
    el("p", { class: "small" },
      `${endpoint.enabled ? t("enabled") : t("disabled")} · ${endpoint.event_types.map(eventText).join(", ")}`),
    endpoint.disabled_reason ? el("p", { class: "small error", "data-testid": "webhook-disabled" }, t("auto_disabled")) : null,
    endpoint.enabled ? null : el("div", { class: "actions" },
      el("button", { type: "button", class: "primary", "data-testid": "webhook-enable", onclick: () => onEnable(endpoint) },
        t("enable"))),
    el("div", { class: "actions three" },
      el("button", { type: "button", class: "secondary", "data-testid": "webhook-log", onclick: () => onLog(endpoint, log) },
        t("log")),
      el("button", { type: "button", class: "secondary", "data-testid": "webhook-ping", onclick: () => onPing(endpoint, log) },
        t("ping")),
      el("button", { type: "button", class: "danger", "data-testid": "webhook-remove", onclick: () => onRemove(endpoint) },
        t("remove"))),
    log);
}

export function deliveryRows(deliveries) {
  if (deliveries.length === 0) return [el("p", { class: "empty" }, t("no_deliveries"))];
  return deliveries.map((d) => {
    const last = d.attempts.at(-1);
    const outcome = last ? [last.status_code ?? "—", `${last.latency_ms} ms`, last.error].filter(Boolean).join(" · ") : "";
    return el("div", { class: `delivery d-${d.state}`, "data-testid": "delivery-row", "data-delivery-id": d.id,
                       "data-state": d.state, "data-event-type": d.event_type },
      el("span", {}, el("strong", {}, eventText(d.event_type)), " · ", t(`state_${d.state}`)),
      el("small", {}, [formatTime(d.created_at), t("attempts", { n: d.attempts.length }), outcome]
        .filter(Boolean).join(" · ")));
  });
}

// --- the statement --------------------------------------------------------------------------

function signedMoney(vnd) {
  return el("strong", { class: vnd < 0 ? "owed" : null }, formatMoney(vnd));
}

// A day of the statement: its row (a tap shows or hides its orders), its orders once asked for,
// and a button for more of them past a page.
export function statementDay(day, onOpen) {
  const parts = {
    lines: el("div", { class: "lines", "data-testid": "statement-orders", "data-date": day.date, hidden: true }),
    more: el("button", { type: "button", class: "secondary more", "data-testid": "statement-more", hidden: true },
      t("statement_more")),
  };
  parts.button = el("button", { type: "button", class: "row", "data-testid": "statement-day", "data-date": day.date,
                                "aria-expanded": "false", onclick: () => onOpen(day, parts) },
    el("span", { class: "row-main" },
      el("strong", {}, formatDay(day.date)), el("small", {}, t("statement_day_count", { n: day.delivered }))),
    el("span", { class: "row-side" },
      signedMoney(day.net_vnd),
      el("small", {}, t("statement_day_amounts", { cod: formatMoney(day.cod_collected_vnd), fees: formatMoney(day.fees_vnd) }))));
  return el("div", { class: "day" }, parts.button, parts.lines, parts.more);
}

export function statementLine(line) {
  return el("div", { class: "line", "data-testid": "statement-order", "data-order-id": line.order_id },
    el("span", { class: "row-main" },
      el("strong", {}, line.external_id ?? line.tracking_code), el("small", {}, formatTime(line.delivered_at))),
    el("small", { class: "row-side" },
      t("statement_order_amounts", { cod: formatMoney(line.cod_collected_vnd), fee: formatMoney(line.fee_vnd) })));
}

// --- keys ----------------------------------------------------------------------------------------

export function keyRow(key, current, onRevoke) {
  return el("div", { class: "row key", "data-testid": "key-row", "data-key-id": key.id },
    el("span", { class: "row-main" },
      el("strong", {}, key.prefix ? `${key.prefix}…` : t("key_no_prefix")),
      el("small", {}, formatTime(key.created_at))),
    current ? null : el("button", { type: "button", class: "danger", "data-testid": "key-revoke",
                                    onclick: () => onRevoke(key) }, t("revoke")));
}
