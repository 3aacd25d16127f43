// Amounts in đồng ("120.000 ₫"), distances and times in Vietnam's time zone, whatever the
// phone's own zone is set to.
import { LOCALE } from "./messages.js";

const money = new Intl.NumberFormat(LOCALE, { style: "currency", currency: "VND", maximumFractionDigits: 0 });
const kilometres = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 1 });
const clock = new Intl.DateTimeFormat(LOCALE, { timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit" });

export function formatMoney(vnd) {
  return money.format(vnd);
}

export function formatDistance(metres) {
  return metres < 1000 ? `${Math.round(metres)} m` : `${kilometres.format(metres / 1000)} km`;
}

export function formatKg(grams) {
  return kilometres.format(grams / 1000);
}

export function formatTime(iso) {
  return clock.format(new Date(iso));
}

// What the courier typed as an amount ("250.000", "250 000 ₫"): its digits, or null.
export function parseAmount(text) {
  const digits = String(text).replace(/[^0-9]/g, "");
  return digits === "" ? null : Number(digits);
}
