// A page's texts by language, from its own table: { vi: { locale: "vi-VN", key: text, ... } }.
// The language is the one chosen on this device (localStorage "giao.lang") when the table has
// it, else the fallback; a key missing from a language falls back too. "{name}" in a text is
// replaced by the value of that name (left as is when no value is given).

export function translator(messages, fallback = "vi") {
  const chosen = globalThis.localStorage?.getItem("giao.lang");
  const lang = chosen && messages[chosen] ? chosen : fallback;
  const t = (key, params = {}) => {
    const text = messages[lang][key] ?? messages[fallback][key] ?? key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  };
  return { lang, locale: messages[lang].locale, t };
}
