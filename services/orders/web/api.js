// The merchant API of orders, on the console's own origin. The key lives in sessionStorage
// (this tab only, gone when it closes) and goes only in the Authorization header, never in a URL.
import { ApiError, NetworkError, request } from "/web/shared/api.js";

export { ApiError, NetworkError };

const KEY = "giao.merchant.key";

export const session = {
  key: () => sessionStorage.getItem(KEY),
  keep: (key) => sessionStorage.setItem(KEY, key),
  forget: () => sessionStorage.removeItem(KEY),
};

export function call(method, path, { body, headers, key = session.key() } = {}) {
  return request(method, path, { body, headers, token: key });
}

const id = encodeURIComponent;

export const api = {
  config: () => fetch("config.json", { cache: "no-store", credentials: "omit" }).then((r) => r.json()),
  check: (key) => call("GET", "/v1/api-keys", { key }),
  quote: (body) => call("POST", "/v1/quotes", { body }),
  place: (body, idempotencyKey) => call("POST", "/v1/orders", { body, headers: { "Idempotency-Key": idempotencyKey } }),
  orders: (cursor = null) => call("GET", `/v1/orders?limit=50${cursor ? `&cursor=${id(cursor)}` : ""}`),
  order: (orderId) => call("GET", `/v1/orders/${id(orderId)}`),
  cancel: (orderId) => call("POST", `/v1/orders/${id(orderId)}/cancel`, { body: {} }),
  webhooks: () => call("GET", "/v1/webhook-endpoints"),
  addWebhook: (url, eventTypes) => call("POST", "/v1/webhook-endpoints", { body: { url, event_types: eventTypes } }),
  enableWebhook: (endpointId) => call("PATCH", `/v1/webhook-endpoints/${id(endpointId)}`, { body: { enabled: true } }),
  removeWebhook: (endpointId) => call("DELETE", `/v1/webhook-endpoints/${id(endpointId)}`),
  pingWebhook: (endpointId) => call("POST", `/v1/webhook-endpoints/${id(endpointId)}/test`),
  deliveries: (endpointId) => call("GET", `/v1/webhook-endpoints/${id(endpointId)}/deliveries?limit=50`),
  statement: (from, to) => call("GET", `/v1/statement?from=${id(from)}&to=${id(to)}`),
  statementOrders: (from, to, cursor = null) =>
    call("GET", `/v1/statement/orders?from=${id(from)}&to=${id(to)}&limit=100${cursor ? `&cursor=${id(cursor)}` : ""}`),
  keys: () => call("GET", "/v1/api-keys"),
  createKey: () => call("POST", "/v1/api-keys"),
  revokeKey: (keyId) => call("DELETE", `/v1/api-keys/${id(keyId)}`),
};
