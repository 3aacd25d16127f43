// The courier's token, kept on the device. It arrives in the sign-in link's fragment
// (/app/#t=<token>): browsers never send a fragment to a server, and the app takes it out of
// the address bar at once so it does not stay in the history or get shared with a screenshot.

const TOKEN = "giao.token";
const NAME = "giao.name";

export function takeTokenFromLink() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("t");
  if (token === null) return false;
  history.replaceState(null, "", location.pathname + location.search);
  if (token === "") return false;
  localStorage.setItem(TOKEN, token);
  localStorage.removeItem(NAME);
  return true;
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
