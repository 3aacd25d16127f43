// The courier's token, kept on the device. It arrives in the sign-in link's fragment
// (/app/#t=<token>): browsers never send a fragment to a server, and the app takes it out of
// the address bar at once so it does not stay in the history or get shared with a screenshot.

const TOKEN = "giao.token";
const NAME = "giao.name";

// The link's token, if the address carries one (null otherwise).
export function tokenInLink() {
  return new URLSearchParams(location.hash.slice(1)).get("t");
}

// Takes the link's token out of the address bar without using it.
export function dropLink() {
  history.replaceState(null, "", location.pathname + location.search);
}

// Takes the link's token out of the address bar and keeps it: "new" when it is another token
// than the one kept (everything the device held for the token before is forgotten first: the
// next courier starts clean), "same" when it is the one kept, null without one.
export function takeTokenFromLink() {
  const token = tokenInLink();
  if (token === null) return null;
  dropLink();
  if (token === "") return null;
  if (token === localStorage.getItem(TOKEN)) return "same";
  forget();
  localStorage.setItem(TOKEN, token);
  return "new";
}

export function token() {
  return localStorage.getItem(TOKEN);
}

export function courierName() {
  return localStorage.getItem(NAME);
}

export function rememberName(name) {
  localStorage.setItem(NAME, name);
}

// Everything the device holds for this courier goes with the token.
export function forget() {
  for (const key of Object.keys(localStorage)) {
    if (key.startsWith("giao.") && key !== "giao.lang") localStorage.removeItem(key);
  }
}
