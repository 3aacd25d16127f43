// A courier's cash in the console's courier panel: the cash collected on delivery they hold (of
// how many deliveries, GET /v1/admin/couriers/{id}/cash) and the admin's record of its hand-in at
// the hub. A first tap asks to confirm, naming the amount; the second records a hand-in of
// everything held (POST /v1/admin/couriers/{id}/cash-handins), which settles the deliveries.
import { numberFormats } from "/web/shared/format.js";
import { LOCALE, t } from "./messages.js";

const { formatMoney } = numberFormats(LOCALE);
const when = new Intl.DateTimeFormat(LOCALE, { dateStyle: "short", timeStyle: "short" });

/** The panel's nodes for a courier's `cash`. `element` builds a node as the console does;
 * `receive(amount)` records the hand-in and shows the courier again; `outcome` is what the last
 * hand-in came to: `{ handin }` (recorded) or `{ changed: true }` (refused: what the courier
 * holds changed meanwhile, read again). */
export function cashSection(cash, { element, receive, outcome = null }) {
  const held = element("p", { className: "cash-held", testid: "courier-cash",
    data: { heldVnd: String(cash.held_vnd), deliveries: String(cash.held_deliveries) },
    text: cash.held_vnd ? t("cash_held", { amount: formatMoney(cash.held_vnd), n: cash.held_deliveries }) : t("cash_none") });
  const nodes = [element("h3", { text: t("cash_title") }), held];
  if (outcome) {
    const text = outcome.handin
      ? t("cash_received", { amount: formatMoney(outcome.handin.amount_vnd), n: outcome.handin.deliveries })
      : t("cash_changed");
    const result = element("p", { className: outcome.handin ? "cash-result" : "cash-result changed", testid: "cash-result", text });
    result.setAttribute("role", "status");
    nodes.push(result);
  }
  if (cash.held_vnd > 0) nodes.push(receiveControls(cash.held_vnd, { element, receive }));
  const last = cash.handins[0];
  if (last) {
    nodes.push(element("p", { className: "help", testid: "cash-last-handin", text: t("cash_last_handin",
      { amount: formatMoney(last.amount_vnd), n: last.deliveries, time: when.format(new Date(last.received_at)) }) }));
  }
  return [element("section", { className: "cash" }, ...nodes)];
}

/** The receive button, and in its place once tapped, the confirmation naming the amount and a
 * way back: a hand-in is recorded only by a second, deliberate tap. */
function receiveControls(amount, { element, receive }) {
  const button = (text, className, testid) => {
    const node = element("button", { text, className, testid });
    node.type = "button";
    return node;
  };
  const start = button(t("cash_receive"), "cash-receive", "cash-receive");
  const confirm = button(t("cash_confirm", { amount: formatMoney(amount) }), "cash-confirm", "cash-confirm");
  const cancel = button(t("cash_cancel"), "link", "cash-cancel");
  const asking = element("div", { className: "cash-asking" }, confirm, cancel);
  asking.hidden = true;
  start.addEventListener("click", () => { start.hidden = true; asking.hidden = false; confirm.focus(); });
  cancel.addEventListener("click", () => { asking.hidden = true; start.hidden = false; });
  confirm.addEventListener("click", () => {
    confirm.disabled = true;  // one hand-in per confirmation; the panel is drawn again after it
    cancel.disabled = true;
    receive(amount);
  });
  return element("div", { className: "cash-actions" }, start, asking);
}
