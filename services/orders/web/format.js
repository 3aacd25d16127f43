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
// Today in Vietnam ("2024-05-06"), whatever the device's zone: the statement's days are Vietnam's.
const vietnamDate = new Intl.DateTimeFormat("en-CA", {
  timeZone: "Asia/Ho_Chi_Minh", year: "numeric", month: "2-digit", day: "2-digit",
});
export function vietnamToday(now = new Date()) {
  const part = Object.fromEntries(vietnamDate.formatToParts(now).map((p) => [p.type, p.value]));
  return `${part.year}-${part.month}-${part.day}`;
}
// "06/05/2024" from "2024-05-06": a calendar day, no time zone to apply.
export const formatDay = (day) => day.split("-").reverse().join("/");
// How many days from one "YYYY-MM-DD" to another, both included.
export const daysBetween = (first, last) => Math.round((Date.parse(last) - Date.parse(first)) / 86_400_000) + 1;

export const formatPoint = (p) => `${coordinate.format(p.lat)}, ${coordinate.format(p.lng)}`;

// A weight typed in kilograms ("1,5" or "1.5"): grams, or null.
export function parseKg(text) {
  const kg = Number(String(text).trim().replace(",", "."));
  return Number.isFinite(kg) && kg > 0 ? Math.round(kg * 1000) : null;
}
