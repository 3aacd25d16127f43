// The courier API of dispatch, on the app's own origin. The token goes only in the
// Authorization header, never in a URL.
import { token } from "./session.js";

const TIMEOUT_MS = 20000; // a slow 3G answer still arrives; a dead connection does not hang a step

// No answer at all: no network, a timeout, or the connection dropped before the answer.
export class NetworkError extends Error {}

// An answer other than 2xx: its status and problem document (detail, attempts_left, ...).
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

// The server's clock minus the phone's (ms), from the answers' Date header: offers expire by
// the server's clock, and positions timed ahead of it are refused. Only a skew larger than the
// header's one-second resolution counts.
export let clockOffsetMs = 0;

function learnClock(response) {
  const date = Date.parse(response.headers.get("date") || "");
  if (Number.isNaN(date)) return;
  const offset = date - Date.now();
  clockOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
}

export function serverNow() {
  return Date.now() + clockOffsetMs;
}

export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", signal: timeout.signal,
    });
  } catch (error) {
    throw new NetworkError(String(error));
  } finally {
    clearTimeout(timer);
  }
  learnClock(response);
  const type = response.headers.get("content-type") || "";
  let data = null;
  try {
    data = type.includes("json") ? await response.json() : null;
  } catch (error) {
    throw new NetworkError(String(error)); // the answer was cut off
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  jobs: () => call("GET", "/v1/courier/jobs"),
  status: (online, position) => call("PUT", "/v1/courier/status",
    online ? { online: true, lat: position.lat, lng: position.lng } : { online: false }),
  locations: (points) => call("POST", "/v1/courier/locations", { points }),
  step: (orderId, action, body) => call("POST", `/v1/courier/jobs/${encodeURIComponent(orderId)}/${action}`, body ?? {}),
};
