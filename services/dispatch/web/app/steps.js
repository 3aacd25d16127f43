// A job's steps (pickup, deliver, fail, return) go through the outbox: kept first, then sent
// one at a time in the order they were taken. Without network they wait ("chờ gửi") and go
// when it returns; after a 5xx or a 429 of the courier's rate, later (never sooner than the
// server's Retry-After). Sending a step again is safe: dispatch answers 200 with the job when
// the job is already in the step's status, so an answer lost on the way only costs a repeat.
import { retryDelayMs } from "/web/shared/retry.js";
import { api, ApiError, NetworkError } from "./api.js";
import * as outbox from "./outbox.js";
import { codeLockout } from "./problems.js";

export const QUEUED_STEPS = ["pickup", "deliver", "fail", "return"];
// The job's status once a step is applied.
export const STEP_RESULT = { pickup: "picked_up", deliver: "delivered", fail: "delivery_failed", return: "returned" };

const RETRY_MIN_MS = 2000;
const RETRY_MAX_MS = 30000;

export class StepSender {
  constructor({ onChange, onSent, onRejected, onUnauthorized }) {
    this.onChange = onChange; // (queued steps) => void
    this.onSent = onSent; // (step, job) => void
    this.onRejected = onRejected; // (step, ApiError) => void: the step is dropped
    this.onUnauthorized = onUnauthorized;
    this.queued = [];
    this.running = null;
    this.again = false;
    this.failures = 0; // sends in a row that met no network, a 5xx or the rate limit
    this.retryTimer = null;
  }

  async load() {
    this.queued = await outbox.steps();
    this.onChange(this.queued);
  }

  async take(orderId, action, body) {
    await outbox.addStep(orderId, action, body);
    await this.load();
    return this.send();
  }

  // Sends what waits, unless a send is already running (it then goes on with what was added).
  send() {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.sendAll().finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.send();
      }
    });
    return this.running;
  }

  async sendAll() {
    clearTimeout(this.retryTimer);
    while (navigator.onLine) {
      const [step] = await outbox.steps();
      if (!step) return;
      try {
        const job = await api.step(step.orderId, step.action, step.body);
        await this.done(step);
        this.failures = 0;
        this.onSent(step, job);
      } catch (error) {
        if (error instanceof NetworkError || error.status >= 500) return this.retryLater();
        if (error instanceof ApiError && error.status === 401) return this.onUnauthorized();
        // The courier's rate: the step waits, as without network, at least the server's Retry-After.
        if (error instanceof ApiError && error.status === 429 && !codeLockout(error)) {
          return this.retryLater(error.retryAfterS);
        }
        await this.done(step); // refused (409, 422, a code lockout...): sending it again would not help
        this.onRejected(step, error);
      }
    }
  }

  async done(step) {
    await outbox.removeStep(step.id);
    await this.load();
  }

  retryLater(retryAfterS = 0) {
    clearTimeout(this.retryTimer);
    this.failures += 1;
    const delay = retryDelayMs(this.failures, { firstMs: RETRY_MIN_MS, maxMs: RETRY_MAX_MS, retryAfterS });
    this.retryTimer = setTimeout(() => this.send(), delay);
  }

  dispose() {
    clearTimeout(this.retryTimer);
  }
}
