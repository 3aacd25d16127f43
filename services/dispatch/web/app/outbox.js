// What the phone still has to send, kept in IndexedDB so that it survives a closed app or a
// dead battery: the courier's steps (in the order they were taken) and position points (with
// the time each was taken).

const DB_NAME = "giao-courier";
const STEPS = "steps";
const POINTS = "points";

let opened = null;

function database() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(STEPS, { keyPath: "id", autoIncrement: true });
      request.result.createObjectStore(POINTS, { keyPath: "id", autoIncrement: true });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opened;
}

async function run(store, mode, work) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const result = work(tx.objectStore(store));
    tx.oncomplete = () => resolve(result?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

function firstN(store, limit) {
  return new Promise((resolve, reject) => {
    const request = store.getAll(null, limit);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// --- steps: {id, orderId, action, body, takenAt} -------------------------------------------

export function addStep(orderId, action, body) {
  return run(STEPS, "readwrite", (s) => s.add({ orderId, action, body, takenAt: new Date().toISOString() }));
}

export async function steps() {
  const db = await database();
  return firstN(db.transaction(STEPS).objectStore(STEPS));
}

export function removeStep(id) {
  return run(STEPS, "readwrite", (s) => s.delete(id));
}

// --- points: {id, lat, lng, at} ----------------------------------------------------------

export function addPoint(point) {
  return run(POINTS, "readwrite", (s) => s.add(point));
}

export async function oldestPoints(limit) {
  const db = await database();
  return firstN(db.transaction(POINTS).objectStore(POINTS), limit);
}

export function removePoints(ids) {
  return run(POINTS, "readwrite", (s) => { for (const id of ids) s.delete(id); });
}

// A phone offline for hours keeps its newest `keep` points (dispatch keeps only the newest
// position anyway; the older ones only draw the way taken).
export async function keepNewestPoints(keep) {
  const count = await run(POINTS, "readonly", (s) => s.count());
  if (count <= keep) return;
  await run(POINTS, "readwrite", (s) => {
    s.getAllKeys(null, count - keep).onsuccess = (event) => { for (const id of event.target.result) s.delete(id); };
  });
}

export function clear() {
  return Promise.all([run(STEPS, "readwrite", (s) => s.clear()), run(POINTS, "readwrite", (s) => s.clear())]);
}
