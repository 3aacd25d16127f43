// The app shell, kept on the phone so the app opens at once, with no network or a crawling
// one: every file of the shell is answered from the kept copy, and fetched again meanwhile
// to refresh the copy, so a new version is used from the next opening on (all files of one
// opening come from the same copy). The API (/v1/...) is never cached: the app keeps what it
// needs itself.

// A new name for every change to the list below: the old copy is then dropped on activation.
const CACHE = "giao-courier-shell-v3";
// The shell's files of the project's pages every service serves (/web/shared/): outside this
// worker's scope, but fetched by its pages, so they pass through it too.
const SHARED = ["/web/shared/base.css", "/web/shared/ui.js", "/web/shared/api.js", "/web/shared/format.js",
  "/web/shared/messages.js"];
const SHELL = [
  "./", "app.css", "app.js", "alert.js", "api.js", "format.js", "location.js", "messages.js", "outbox.js",
  "problems.js", "session.js", "steps.js", "stream.js", "view.js", "manifest.webmanifest", "icons/icon-192.png",
  "icons/icon-512.png", ...SHARED,
];
const SCOPE = new URL(self.registration.scope);
const INDEX = new URL("./", SCOPE).href;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const inShell = url.pathname.startsWith(SCOPE.pathname) || SHARED.includes(url.pathname);
  if (event.request.method !== "GET" || url.origin !== SCOPE.origin || !inShell) return;
  event.respondWith(shell(event));
});

async function shell(event) {
  const cache = await caches.open(CACHE);
  const key = event.request.mode === "navigate" ? INDEX : event.request;
  const cached = await cache.match(key, { ignoreSearch: true });
  const network = fetch(event.request).then(async (response) => {
    if (response.ok) await cache.put(key, response.clone());
    return response;
  });
  if (!cached) return network;
  event.waitUntil(network.catch(() => {})); // the refresh outlives the answer
  return cached;
}
