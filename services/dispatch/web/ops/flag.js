// A flagged courier in the console's courier panel: why and since when, and the admin's clear
// (POST /v1/admin/couriers/{id}/flag/clear clears the flag, the run of impossible positions
// and the wrong codes across jobs; the matcher may offer to the courier again at once).
import { LOCALE, t } from "./messages.js";

const when = new Intl.DateTimeFormat(LOCALE, { dateStyle: "short", timeStyle: "medium" });

/** The panel's nodes for `courier`'s flag: none when not flagged. `element` builds a node as
 * the console does; `clear(id)` clears the flag and shows the courier again. */
export function flagSection(courier, { element, clear }) {
  const flag = courier.flag;
  if (!flag) return [];
  const button = element("button", { text: t("flag_clear"), className: "clear-flag", testid: "courier-flag-clear" });
  button.type = "button";
  button.addEventListener("click", () => {
    button.disabled = true;  // one clear per click; the panel is drawn again after it
    clear(courier.id);
  });
  return [element("section", { className: "flag", testid: "courier-flag", data: { reason: flag.reason, at: flag.at } },
    element("h3", { text: t("flag_title") }),
    element("p", { className: "flag-reason", testid: "courier-flag-reason", text: t("flag_reason")[flag.reason] || flag.reason }),
    element("p", { testid: "courier-flag-since", text: t("flag_since", { time: when.format(new Date(flag.at)) }) }),
    element("p", { className: "help", text: t("flag_effect") }),
    button)];
}
