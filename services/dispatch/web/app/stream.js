// Offers pushed by dispatch while the courier is on shift: GET /v1/courier/jobs/events, a
// stream of Server-Sent Events whose `jobs` events carry what GET /v1/courier/jobs answers
// (the list on connect, then each time someone else changed it). The stream is held until
// closed: when it fails it is opened again after a backoff (1 s doubling to 30 s, with
// jitter, or the server's Retry-After); when it ends on its own after a while (the server's
// longest stream) it is opened again at once. Without network nothing is tried: the app
// renews the stream when the network returns.
import { retryDelayMs } from "/web/shared/retry.js";
import { ApiError, jobEvents } from "./api.js";

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;
const STEADY_MS = 10000; // a stream that delivered an event and lasted this long resets the backoff
const SILENCE_MS = 40000; // nothing for this long (the server pings every 15 s): the connection is dead
const MAX_PENDING = 1 << 20; // a line longer than this is not an event of ours

// Server-Sent Events from text chunks (the HTML standard's rules, the fields we use): calls
// onEvent(type, data) for each event; comment lines (": ping") and other fields are skipped.
export function eventParser(onEvent) {
  let pending = "";
  let type = "";
  let data = [];
  return (chunk) => {
    // A line ends at CRLF, LF or CR; a CR last in the chunk waits: its LF may come next.
    const lines = (pending + chunk).split(/\r\n|\r(?!$)|\n/);
    pending = lines.pop();
    if (pending.length > MAX_PENDING) throw new Error("event stream line too long");
    for (const line of lines) {
      if (line === "") {
        if (data.length > 0) onEvent(type || "message", data.join("\n"));
        type = "";
        data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") type = value;
        else if (field === "data") data.push(value);
      }
    }
  };
}

export class JobStream {
  constructor({ onJobs, onLive, onUnauthorized }) {
    this.onJobs = onJobs; // (items) => void: a `jobs` event
    this.onLive = onLive; // (live) => void: events flow (the first one came) or no longer do
    this.onUnauthorized = onUnauthorized;
    this.wanted = false;
    this.live = false;
    this.controller = null; // the open stream's, or null
    this.retryTimer = null;
    this.failures = 0; // streams in a row that failed before proving themselves
  }

  // Holds the stream from now on, until close().
  open() {
    if (this.wanted) return;
    this.wanted = true;
    this.renew();
  }

  close() {
    this.wanted = false;
    this.drop();
  }

  // The network changed (lost or back): the stream in hand is not trusted; a new one at once.
  renew() {
    this.drop();
    this.failures = 0;
    this.connect();
  }

  drop() {
    clearTimeout(this.retryTimer);
    this.controller?.abort();
    this.controller = null;
    this.setLive(false);
  }

  setLive(live) {
    if (this.live === live) return;
    this.live = live;
    this.onLive(live);
  }

  async connect() {
    if (!this.wanted || this.controller !== null || !navigator.onLine) return;
    const controller = new AbortController();
    this.controller = controller;
    const opened = performance.now();
    let events = 0;
    let retryAfterS = 0;
    let silence = null;
    const awake = () => {
      clearTimeout(silence);
      silence = setTimeout(() => controller.abort(), SILENCE_MS);
    };
    const parse = eventParser((type, data) => {
      if (type !== "jobs" || controller !== this.controller) return;
      const { items } = JSON.parse(data); // a garbled event breaks the stream: a new one is opened
      events += 1;
      this.setLive(true);
      try {
        this.onJobs(items);
      } catch (error) {
        setTimeout(() => { throw error; }); // the app's own fault: reported, the stream goes on
      }
    });
    try {
      awake();
      const response = await jobEvents(controller.signal);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        awake();
        parse(decoder.decode(value, { stream: true }));
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && controller === this.controller) {
        this.close();
        return this.onUnauthorized();
      }
      if (error instanceof ApiError) retryAfterS = error.retryAfterS;
    } finally {
      clearTimeout(silence);
      controller.abort(); // however it ended, the connection goes with it
    }
    if (controller !== this.controller) return; // closed or renewed meanwhile
    this.controller = null;
    this.setLive(false);
    this.failures = events > 0 && performance.now() - opened >= STEADY_MS ? 0 : this.failures + 1;
    this.retryTimer = setTimeout(() => this.connect(), this.delay(retryAfterS));
  }

  // After a steady stream's end: within a second (the streams of many phones end together
  // after a restart: jitter spreads them). After failures: 1 s, 2 s, 4 s... up to 30 s, each
  // between half and all of it, and never sooner than the server's Retry-After.
  delay(retryAfterS) {
    if (this.failures === 0) return Math.random() * RETRY_MIN_MS;
    return retryDelayMs(this.failures, { firstMs: RETRY_MIN_MS, maxMs: RETRY_MAX_MS, retryAfterS, spread: 0.5 });
  }
}
