// How long a page waits before asking a server again after failures in a row: the one rule of
// the pages' retries (the courier app's stream of offers, steps and positions, the ops
// console's polls, the tracking page's stream; docs/contract.md gives each one's figures).
//
// After `failures` (1 for the first): `firstMs`, twice as long after each further failure, up
// to `maxMs`, and never sooner than the server's Retry-After. A `spread` (0 to 1) takes a random
// share of up to that much off the wait and adds up to half as much to a Retry-After, so that
// pages one failure struck together do not all come back together.
export function retryDelayMs(failures, { firstMs, maxMs, retryAfterS = 0, spread = 0 }) {
  const share = spread * Math.random();
  const backoff = Math.min(maxMs, firstMs * 2 ** Math.max(0, failures - 1));
  return Math.max(backoff * (1 - share), retryAfterS * 1000 * (1 + share / 2));
}
