// Amounts in đồng ("120.000 ₫") and distances, written the way `locale` writes numbers; what
// was typed as an amount.

export function numberFormats(locale) {
  const money = new Intl.NumberFormat(locale, { style: "currency", currency: "VND", maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
  return {
    formatMoney: (vnd) => money.format(vnd),
    formatDistance: (metres) => (metres < 1000 ? `${Math.round(metres)} m` : `${decimal.format(metres / 1000)} km`),
    formatKg: (grams) => decimal.format(grams / 1000),
  };
}

// What was typed as an amount ("250.000", "250 000 ₫"): its digits as a number, or null.
export function parseAmount(text) {
  const digits = String(text).replace(/[^0-9]/g, "");
  return digits === "" ? null : Number(digits);
}
