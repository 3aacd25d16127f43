// The phone's position while the courier is on shift: at most one point a second, kept in the
// outbox, and sent in batches at most every 5 s. Points taken without network wait in the
// outbox and go later with the time each was taken.
import { retryDelayMs } from "/web/shared/retry.js";
import { api, ApiError, NetworkError, clockOffsetMs } from "./api.js";
import * as outbox from "./outbox.js";

const MIN_POINT_GAP_MS = 1000;
const SEND_EVERY_MS = 5000;
const BATCH = 100; // the most dispatch takes in one request
const KEEP = 3600; // an hour of points at most waits on the phone
const PAUSE_MAX_MS = 60000; // refused for now again and again: a batch a minute at least

export class Tracker {
  constructor({ onProblem, onUnauthorized }) {
    this.onProblem = onProblem; // (kind: "denied" | "unavailable") => void
    this.onUnauthorized = onUnauthorized;
    this.watch = null;
    this.latest = null; // {lat, lng, at, taken}: the newest position, even one not kept
    this.lastKept = 0; // when the last point was kept (the phone's clock, ms)
    this.later = null;
    this.waiting = [];
    this.sending = false;
    this.refusals = 0; // batches refused for now in a row (429, 5xx, no answer)
    this.pausedUntil = 0; // no batch before this (the phone's clock, ms)
    this.timer = setInterval(() => this.send(), SEND_EVERY_MS);
  }

  start() {
    if (this.watch !== null || !navigator.geolocation) return;
    this.watch = navigator.geolocation.watchPosition(
      (position) => this.take(position),
      (error) => this.failed(error),
      { enableHighAccuracy: true, maximumAge: 5000, timeout: 30000 });
  }

  stop() {
    if (this.watch !== null) navigator.geolocation.clearWatch(this.watch);
    this.watch = null;
    if (this.later !== null) this.keep(this.latest); // the last position, not kept yet
  }

  // Signed out: nothing more is taken or sent.
  dispose() {
    this.stop();
    clearInterval(this.timer);
  }

  // A position no older than `freshMs`, or the next one the phone gives (null if none in time).
  position(timeoutMs = 20000, freshMs = 30000) {
    if (this.latest && Date.now() - this.latest.taken < freshMs) return Promise.resolve(this.latest);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== done);
        resolve(null);
      }, timeoutMs);
      const done = (point) => { clearTimeout(timer); resolve(point); };
      this.waiting.push(done);
    });
  }

  take(position) {
    const { latitude: lat, longitude: lng } = position.coords;
    const taken = position.timestamp || Date.now();
    // Timed by the server's clock, which refuses points from its future.
    this.latest = { lat, lng, at: new Date(taken + clockOffsetMs).toISOString(), taken };
    for (const done of this.waiting.splice(0)) done(this.latest);
    // One point a second at most; one that comes sooner is kept a little later unless a newer
    // one replaces it, so the last position is never lost (the phone may not move again).
    const wait = this.lastKept + MIN_POINT_GAP_MS - Date.now();
    if (wait <= 0) this.keep(this.latest);
    else this.later ??= setTimeout(() => this.keep(this.latest), wait);
  }

  async keep(point) {
    clearTimeout(this.later);
    this.later = null;
    this.lastKept = Date.now();
    await outbox.addPoint({ lat: point.lat, lng: point.lng, at: point.at });
    await outbox.keepNewestPoints(KEEP);
  }

  failed(error) {
    this.onProblem(error.code === error.PERMISSION_DENIED ? "denied" : "unavailable");
  }

  // The oldest waiting points, one batch; called by the timer only, so never more often than every 5 s.
  async send() {
    if (this.sending || !navigator.onLine || Date.now() < this.pausedUntil) return;
    this.sending = true;
    try {
      const points = await outbox.oldestPoints(BATCH);
      if (points.length === 0) return;
      try {
        await api.locations(points.map(({ lat, lng, at }) => ({ lat, lng, at })));
      } catch (error) {
        if (error instanceof NetworkError || error.status === 429 || error.status >= 500) {
          // Later, and later still each time in a row (at least the server's Retry-After), so a
          // struggling server is asked less by every phone on shift: the timer asks every 5 s,
          // and the ticks skipped make the gaps 5, 10, 20, 40, 60 s.
          this.refusals += 1;
          const retryAfterS = error.retryAfterS || 0;
          const gap = retryDelayMs(this.refusals, { firstMs: SEND_EVERY_MS, maxMs: PAUSE_MAX_MS, retryAfterS });
          this.pausedUntil = Date.now() + gap - SEND_EVERY_MS / 2;
          return;
        }
        if (error instanceof ApiError && error.status === 401) return this.onUnauthorized();
        // Refused for good (e.g. a phone clock far ahead): dropping them keeps the newer ones moving.
      }
      this.refusals = 0;
      await outbox.removePoints(points.map((p) => p.id));
    } finally {
      this.sending = false;
    }
  }
}
