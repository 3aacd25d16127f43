"""Per-client rate limiting: a token bucket per client address, in memory, no I/O.

In memory is enough: a client that spreads its requests over several instances gets at
most (instances x rate), still a hard bound, and tracking answers are cheap. The table of
buckets is bounded: the least recently seen clients are forgotten first (a forgotten
client starts again with a full bucket, which is what an idle client would have anyway).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; a request spends one."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Spend one token: 0.0 if allowed, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, rate: float, burst: float, *, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, client: str, now: float) -> int:
        """0 if the client may go on, else the whole seconds to put in Retry-After (>= 1)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.burst, now)
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        wait = bucket.take(now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))
