// The merchant API of orders, on the console's own origin. The key lives in sessionStorage
// (this tab only, gone when it closes) and goes only in the Authorization header, never in a URL.
const KEY = "giao.merchant.key";
const TIMEOUT_MS = 20000;

export const session = {
  key: () => sessionStorage.getItem(KEY),
  keep: (key) => sessionStorage.setItem(KEY, key),
  forget: () => sessionStorage.removeItem(KEY),
};

// No answer at all: no network, a timeout, or the connection dropped.
export class NetworkError extends Error {}

// An answer other than 2xx: its status and problem document.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export async function call(method, path, { body, headers = {}, key = session.key() } = {}) {
  const sent = { Authorization: `Bearer ${key}`, ...headers };
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, {
      method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", signal: timeout.signal,
    });
  } catch (error) {
    throw new NetworkError(String(error));
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  } catch (error) {
    throw new NetworkError(String(error));
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const id = encodeURIComponent;

export const api = {
  config: () => fetch("config.json", { cache: "no-store", credentials: "omit" }).then((r) => r.json()),
  check: (key) => call("GET", "/v1/api-keys", { key }),
  quote: (body) => call("POST", "/v1/quotes", { body }),
  place: (body, idempotencyKey) => call("POST", "/v1/orders", { body, headers: { "Idempotency-Key": idempotencyKey } }),
  orders: () => call("GET", "/v1/orders?limit=50"),
  order: (orderId) => call("GET", `/v1/orders/${id(orderId)}`),
  cancel: (orderId) => call("POST", `/v1/orders/${id(orderId)}/cancel`, { body: {} }),
  webhooks: () => call("GET", "/v1/webhook-endpoints"),
  addWebhook: (url, eventTypes) => call("POST", "/v1/webhook-endpoints", { body: { url, event_types: eventTypes } }),
  removeWebhook: (endpointId) => call("DELETE", `/v1/webhook-endpoints/${id(endpointId)}`),
  pingWebhook: (endpointId) => call("POST", `/v1/webhook-endpoints/${id(endpointId)}/test`),
  deliveries: (endpointId) => call("GET", `/v1/webhook-endpoints/${id(endpointId)}/deliveries?limit=50`),
  keys: () => call("GET", "/v1/api-keys"),
  createKey: () => call("POST", "/v1/api-keys"),
  revokeKey: (keyId) => call("DELETE", `/v1/api-keys/${id(keyId)}`),
};
