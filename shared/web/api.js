// A call to the page's own service's API (same origin): JSON in and out, a bearer credential
// in the Authorization header only (never in a URL), no cookies, no HTTP cache, a time limit.

const TIMEOUT_MS = 20000; // a slow 3G answer still arrives; a dead connection does not hang a step

// No answer at all: no network, a timeout, or the connection dropped before the answer.
export class NetworkError extends Error {}

// An answer other than 2xx: its status, problem document (detail, errors, attempts_left, ...)
// and the server's Retry-After in seconds (0 if none).
export class ApiError extends Error {
  constructor(status, problem, retryAfterS = 0) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.retryAfterS = retryAfterS;
  }

  static of(response, problem) {
    return new ApiError(response.status, problem, Number(response.headers.get("retry-after")) || 0);
  }
}

// `onAnswer(response)` sees every answer before its body is read (its headers: the Date).
export async function request(method, path, { body, headers = {}, token, onAnswer } = {}) {
  const sent = { Authorization: `Bearer ${token}`, ...headers };
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
  onAnswer?.(response);
  let data = null;
  try {
    data = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  } catch (error) {
    throw new NetworkError(String(error)); // the answer was cut off
  }
  if (!response.ok) throw ApiError.of(response, data);
  return data;
}
