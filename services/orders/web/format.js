// Amounts in đồng ("120.000 ₫"), distances, and times in Vietnam's time zone whatever the
// device's own zone is set to.
import { numberFormats } from "/web/shared/format.js";
import { LOCALE } from "./messages.js";

export { parseAmount } from "/web/shared/format.js";
export const { formatMoney, formatDistance } = numberFormats(LOCALE);

const when = new Intl.DateTimeFormat(LOCALE, {
  timeZone: "Asia/Ho_Chi_Minh", hourCycle: "h23", hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit",
});
const coordinate = new Intl.NumberFormat("en", { minimumFractionDigits: 5, maximumFractionDigits: 5 });

// "09:15 · 06/05": the parts put in this order whatever the locale's own pattern is.
export function formatTime(iso) {
  const part = Object.fromEntries(when.formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return `${part.hour}:${part.minute} · ${part.day}/${part.month}`;
}
export const formatPoint = (p) => `${coordinate.format(p.lat)}, ${coordinate.format(p.lng)}`;

// A weight typed in kilograms ("1,5" or "1.5"): grams, or null.
export function parseKg(text) {
  const kg = Number(String(text).trim().replace(",", "."));
  return Number.isFinite(kg) && kg > 0 ? Math.round(kg * 1000) : null;
}
