// The cash collected on delivery the courier holds until they hand it in at the hub
// (GET /v1/courier/cash): read when the app opens and after a delivery is confirmed, and kept on
// the phone (cleared with the session) so that the app opens with it without network. Hidden
// while nothing is held. A failed read keeps what is shown, silently: the next read tells.
import { api } from "./api.js";
import { formatMoney } from "./format.js";
import { t } from "./messages.js";
import { token } from "./session.js";

const HELD = "giao.cash";  // the last read: {held_vnd, deliveries}

function show(node, held) {
  node.hidden = !(held && held.held_vnd > 0);
  node.dataset.heldVnd = String(held?.held_vnd ?? 0);
  node.textContent = node.hidden ? "" : t("cash_held", { amount: formatMoney(held.held_vnd), n: held.deliveries });
}

/** Shows the last read at once, then reads again. */
export async function readCashHeld(node) {
  show(node, JSON.parse(localStorage.getItem(HELD) || "null"));
  const mine = token();
  if (mine === null) return;
  let held;
  try {
    held = await api.cash();
  } catch {
    return; // no network, a refusal, the rate: what is shown stays
  }
  if (token() !== mine) return; // an answer for the courier who signed out meanwhile
  localStorage.setItem(HELD, JSON.stringify({ held_vnd: held.held_vnd, deliveries: held.deliveries }));
  show(node, held);
}

/** Nothing shown (signed out: the session's storage, this too, is forgotten). */
export function hideCashHeld(node) {
  show(node, null);
}
