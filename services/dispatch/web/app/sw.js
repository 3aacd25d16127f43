// The app shell, kept on the phone so the app opens at once, with no network or a crawling
// one. The shell comes in whole versions, never file by file: a phone on a flaky network that
// caught half of a new version would otherwise open a mix of old and new files, which need
// not work together.
//
// Dispatch writes the shell's version into this script as it serves it (a digest of the
// shell's files), so every change to the shell is a new worker to the browser, which checks
// this script on every opening. The new worker fetches the whole new shell into a copy of its
// own (addAll: every file or none); if the network fails half-way it is dropped and the browser
// tries again at a later opening, while the version in use goes on serving. A whole new copy
// waits until the app is closed, or until the courier taps "update" (the "activate" message),
// and only then replaces the old one. The API (/v1/...) is never cached: the app keeps what it
// needs itself.

const VERSION = "%SHELL_VERSION%";
const PREFIX = "giao-courier-shell-";
const CACHE = `${PREFIX}${VERSION}`;
// The shell's files of the project's pages every service serves (/web/shared/): outside this
// worker's scope, but fetched by its pages, so they pass through it too.
const SHARED = ["/web/shared/base.css", "/web/shared/ui.js", "/web/shared/api.js", "/web/shared/format.js",
  "/web/shared/messages.js", "/web/shared/retry.js"];
const SHELL = [
  "./", "app.css", "app.js", "alert.js", "api.js", "cash.js", "format.js", "location.js", "messages.js", "outbox.js",
  "problems.js", "session.js", "steps.js", "stream.js", "view.js", "manifest.webmanifest", "icons/icon-192.png",
  "icons/icon-512.png", ...SHARED,
];
const SCOPE = new URL(self.registration.scope);
const INDEX = new URL("./", SCOPE).href;

self.addEventListener("install", (event) => event.waitUntil(keepWhole()));

async function keepWhole() {
  // `reload`: past the browser's HTTP cache, which may hold a file of the old version.
  const requests = SHELL.map((path) => new Request(new URL(path, SCOPE), { cache: "reload" }));
  const cache = await caches.open(CACHE);
  // This version kept whole already (the server went back to the version in use, say): it
  // stays as it is, and above all it is not dropped if the network fails now.
  if ((await Promise.all(requests.map((request) => cache.match(request)))).every(Boolean)) return;
  try {
    await cache.addAll(requests);
  } catch (error) {
    await caches.delete(CACHE); // nothing of it in use: a version is used only once kept whole
    throw error; // the install fails; the version in use stays
  }
}

self.addEventListener("message", (event) => {
  if (event.data === "activate") self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const inShell = url.pathname.startsWith(SCOPE.pathname) || SHARED.includes(url.pathname);
  if (event.request.method !== "GET" || url.origin !== SCOPE.origin || !inShell) return;
  event.respondWith(shell(event.request));
});

async function shell(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request.mode === "navigate" ? INDEX : request, { ignoreSearch: true });
  return cached ?? fetch(request);
}
