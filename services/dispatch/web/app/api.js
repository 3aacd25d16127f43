// The courier API of dispatch, on the app's own origin. The token goes only in the
// Authorization header, never in a URL.
import { ApiError, NetworkError, request } from "/web/shared/api.js";
import { token } from "./session.js";

export { ApiError, NetworkError };

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

export function call(method, path, body) {
  return request(method, path, { body, token: token(), onAnswer: learnClock });
}

// The courier's stream of offers and jobs (stream.js reads it): the answer itself once it is a
// stream; a refusal is an ApiError (with the server's Retry-After).
// fetch, not EventSource, which cannot send the Authorization header.
export async function jobEvents(signal) {
  let response;
  try {
    response = await fetch("/v1/courier/jobs/events", {
      headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" },
      cache: "no-store", credentials: "omit", signal,
    });
  } catch (error) {
    throw new NetworkError(String(error));
  }
  learnClock(response);
  if (!response.ok || !(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
    throw ApiError.of(response, await response.json().catch(() => null));
  }
  return response;
}

export const api = {
  jobs: () => call("GET", "/v1/courier/jobs"),
  cash: () => call("GET", "/v1/courier/cash"),
  status: (online, position) => call("PUT", "/v1/courier/status",
    online ? { online: true, lat: position.lat, lng: position.lng } : { online: false }),
  locations: (points) => call("POST", "/v1/courier/locations", { points }),
  step: (orderId, action, body) => call("POST", `/v1/courier/jobs/${encodeURIComponent(orderId)}/${action}`, body ?? {}),
};
