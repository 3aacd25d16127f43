// Who holds cash: the couriers holding cash collected on delivery, the one holding it longest
// first (GET /v1/admin/cash, a page at a time), and what they all hold. It is read when the
// operator opens it, never polled: its total sums every delivery not yet handed in, which
// costs more than a poll every 1.5 s should. A row opens the courier's panel, where the
// hand-in is recorded (cash.js); the list is read again when opened again.
import { numberFormats } from "/web/shared/format.js";
import { LOCALE, t } from "./messages.js";

const { formatMoney } = numberFormats(LOCALE);
const HOUR_S = 3600;
const DAY_S = 24 * HOUR_S;

/** How long ago cash was collected: as the console's ages below 2 hours, then in hours, then days. */
function heldFor(seconds, age) {
  if (seconds < 2 * HOUR_S) return age(seconds);
  return seconds < 2 * DAY_S ? t("hours", { n: Math.floor(seconds / HOUR_S) }) : t("days", { n: Math.floor(seconds / DAY_S) });
}

/** The list's nodes for the first `page` of GET /v1/admin/cash. `element` and `age` are the
 * console's; `open(courierId)` shows a courier's panel; `more(cursor, add)` reads the page after
 * `cursor` and hands it to `add`, which appends its rows (on a failure the console says so). */
export function cashListSection(page, { element, age, open, more }) {
  const total = element("p", { className: "cash-total", testid: "cash-total", data: { totalVnd: String(page.total_held_vnd) },
    text: t("cash_list_total", { amount: formatMoney(page.total_held_vnd) }) });
  if (!page.items.length) return [total, element("p", { text: t("cash_list_empty"), testid: "cash-list-empty" })];
  const list = element("ul", { className: "cash-couriers" });
  const next = element("button", { text: t("cash_list_more"), className: "link cash-more", testid: "cash-more" });
  next.type = "button";
  const add = ({ items, next_cursor: cursor }) => {
    const now = Date.now();
    for (const c of items) {
      const heldS = Math.max(0, Math.round((now - Date.parse(c.oldest_delivered_at)) / 1000));
      const row = element("button", { className: "link", testid: "cash-courier",
        data: { courierId: c.courier_id, heldVnd: String(c.held_vnd), deliveries: String(c.deliveries) } },
      element("strong", { text: c.display_name }),
      element("span", { className: "cash-amount", text: t("cash_held", { amount: formatMoney(c.held_vnd), n: c.deliveries }) }),
      element("span", { className: "help", text: t("cash_held_since", { age: heldFor(heldS, age) }) }));
      row.type = "button";
      row.addEventListener("click", () => open(c.courier_id));
      list.append(element("li", {}, row));
    }
    next.hidden = !cursor;
    next.onclick = () => {
      next.disabled = true;  // one read per tap; enabled again with the page it brings
      more(cursor, add).finally(() => { next.disabled = false; });
    };
  };
  add(page);
  return [total, list, next];
}
