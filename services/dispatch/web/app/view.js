// The cards of offers and jobs, built with DOM calls (text is never parsed as HTML: names and
// addresses come from merchants). A card is rebuilt only when what it shows changes, so a
// delivery code half typed survives the polls.
import { el, fact } from "/web/shared/ui.js";
import { formatDistance, formatKg, formatMoney } from "./format.js";
import { LOCALE, t } from "./messages.js";

export const FAIL_REASONS = ["recipient_unreachable", "address_not_found", "refused", "other"];

function codText(vnd) {
  return vnd > 0 ? formatMoney(vnd) : t("no_cod");
}

function parcelText(parcel) {
  const weight = t("weight", { kg: formatKg(parcel.weight_grams) });
  return parcel.description ? `${parcel.description} · ${weight}` : weight;
}

// --- offers ------------------------------------------------------------------------------------

function stat(label, value) {
  return el("div", { class: "stat" }, el("span", {}, label), el("strong", {}, value));
}

export function offerCard(job, { onAccept, onDecline }) {
  const area = job.dropoff_area?.area;
  return el("article", { class: "card offer", "data-testid": "offer", "data-order-id": job.order_id },
    el("header", { class: "card-head" },
      el("strong", {}, t("offer_new")),
      el("span", { class: "countdown", "data-testid": "offer-countdown", "aria-live": "off" })),
    el("progress", { class: "countdown-bar", max: "1", value: "1" }),
    el("dl", { class: "facts" },
      fact(t("pickup"), [job.pickup.name, el("small", {}, job.pickup.address)]),
      area ? fact(t("dropoff_area"), area) : null,
      fact(t("parcel"), parcelText(job.parcel))),
    el("div", { class: "stats" },
      job.distance_m !== undefined ? stat(t("distance"), formatDistance(job.distance_m)) : null,
      job.fee_vnd !== undefined ? stat(t("fee"), formatMoney(job.fee_vnd)) : null,
      stat(t("cod"), codText(job.cod_amount_vnd))),
    el("div", { class: "actions two" },
      el("button", { type: "button", class: "primary", "data-testid": "offer-accept", onclick: () => onAccept(job) },
        t("accept")),
      el("button", { type: "button", class: "secondary", "data-testid": "offer-decline", onclick: () => onDecline(job) },
        t("decline"))));
}

// Seconds left, on the countdown and its bar; false once the offer has lapsed.
export function tickOffer(card, job, now) {
  const left = Math.max(0, Math.ceil((Date.parse(job.offer_expires_at) - now) / 1000));
  card.querySelector("[data-testid=offer-countdown]").textContent = t("countdown", { s: left });
  const bar = card.querySelector("progress");
  const total = Math.max(1, (Date.parse(job.offer_expires_at) - Date.parse(job.updated_at)) / 1000);
  bar.value = Math.min(1, left / total);
  return left > 0;
}

// --- jobs in hand ----------------------------------------------------------------------------

// The phone's map app (geo:), or a maps site where no app takes geo: links.
function mapLinks(place) {
  const at = `${place.lat},${place.lng}`;
  return [
    el("a", { class: "button secondary", href: `geo:${at}?q=${at}(${encodeURIComponent(place.name)})` }, t("open_map")),
    el("a", { class: "button secondary", href: `https://www.google.com/maps/dir/?api=1&destination=${at}`,
              target: "_blank", rel: "noopener noreferrer" }, t("open_maps_web")),
  ];
}

function callLink(phone, label) {
  return el("a", { class: "button secondary", href: `tel:${phone}` }, label);
}

function numberInput(testid, label, attrs) {
  return el("label", { class: "field" }, el("span", {}, label),
    el("input", { type: "text", inputmode: "numeric", autocomplete: "off", "data-testid": testid, ...attrs }));
}

// What the courier typed in a job's delivery form, kept while its card is rebuilt (a step
// waiting, then refused: the courier corrects the code without typing the amount again).
const drafts = new Map();

function deliverForm(job, onStep) {
  const draft = drafts.get(job.order_id) ?? {};
  // novalidate: the app checks the code itself (app.js) and says so in its own words; the
  // browser's check would answer in its own language, and refuse a code pasted with a space.
  const form = el("form", { class: "step", novalidate: true },
    numberInput("delivery-code", t("delivery_code"),
      { name: "code", pattern: "[0-9]{6}", maxlength: "6", autocomplete: "one-time-code", required: true,
        value: draft.code }),
    job.cod_amount_vnd > 0 ? el("p", { class: "hint" }, t("cod_to_collect", { amount: formatMoney(job.cod_amount_vnd) })) : null,
    job.cod_amount_vnd > 0 ? numberInput("cod-collected", t("cod_collected"), { name: "cod", value: draft.cod }) : null,
    el("button", { type: "submit", class: "primary", "data-testid": "job-deliver" }, t("deliver_button")));
  const cod = form.querySelector("[name=cod]");
  cod?.addEventListener("input", () => {
    const digits = cod.value.replace(/[^0-9]/g, "");
    cod.value = digits === "" ? "" : Number(digits).toLocaleString(LOCALE);
  });
  form.addEventListener("input", () => {
    drafts.set(job.order_id, { code: form.elements.code.value, cod: cod?.value });
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onStep(job, "deliver", { code: form.elements.code.value.trim(), cod: cod ? cod.value : "0" });
  });
  return form;
}

function failForm(job, onStep) {
  const form = el("form", { class: "step" },
    el("label", { class: "field" }, el("span", {}, t("fail_reason")),
      el("select", { name: "reason", "data-testid": "fail-reason" },
        FAIL_REASONS.map((reason) => el("option", { value: reason }, t(`reason_${reason}`))))),
    el("button", { type: "submit", class: "danger", "data-testid": "job-fail" }, t("fail_button")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onStep(job, "fail", { reason: form.elements.reason.value });
  });
  return form;
}

function stepButton(job, action, testid, label, onStep) {
  return el("button", { type: "button", class: "primary", "data-testid": testid, onclick: () => onStep(job, action, {}) },
    label);
}

export function jobKey(job) {
  return `${job.order_id}:${job.status}:${job.pending ? "pending" : "sent"}`;
}

export function jobCard(job, { onStep }) {
  const { pickup, dropoff, status } = job;
  const headingTo = status === "picked_up" ? dropoff : pickup; // back to the shop after a failure
  const actions = job.pending ? null : {
    assigned: () => stepButton(job, "pickup", "job-pickup", t("picked_up_button"), onStep),
    picked_up: () => [deliverForm(job, onStep), failForm(job, onStep)],
    delivery_failed: () => stepButton(job, "return", "job-return", t("return_button"), onStep),
  }[status]?.();
  return el("article", { class: "card job", "data-testid": "job", "data-order-id": job.order_id,
                         "data-status": status, "data-pending": job.pending ? "true" : "false" },
    el("header", { class: "card-head" },
      el("strong", {}, t(`status_${status}`)),
      job.pending ? el("span", { class: "badge" }, t("pending_badge")) : null),
    el("dl", { class: "facts" },
      fact(t("pickup"), [pickup.name, el("small", {}, pickup.address)]),
      dropoff ? fact(t("recipient"), [dropoff.name, el("small", {}, dropoff.address)]) : null,
      job.note ? fact(t("note"), job.note) : null,
      status === "picked_up" && job.cod_amount_vnd > 0 ? null : fact(t("cod"), codText(job.cod_amount_vnd)),
      fact(t("parcel"), parcelText(job.parcel))),
    el("div", { class: "links" },
      headingTo ? mapLinks(headingTo) : null,
      status === "assigned" || status === "delivery_failed" ? callLink(pickup.phone, t("call_shop")) : null,
      dropoff && status !== "delivery_failed" ? callLink(dropoff.phone, t("call_recipient")) : null),
    actions ? el("div", { class: "actions" }, actions) : null);
}
