// Amounts in đồng ("120.000 ₫"), distances and weights, as the app's language writes numbers.
import { numberFormats } from "/web/shared/format.js";
import { LOCALE } from "./messages.js";

export { parseAmount } from "/web/shared/format.js";
export const { formatMoney, formatDistance, formatKg } = numberFormats(LOCALE);
