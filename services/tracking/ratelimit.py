"""Per-client rate limiting: who the client is, and a token bucket per client address.

In memory is enough: a client that spreads its requests over several instances gets at
most (instances x rate), still a hard bound, and tracking answers are cheap. The table of
buckets is bounded: the least recently seen clients are forgotten first (a forgotten
client starts again with a full bucket, which is what an idle client would have anyway).

The client is its address, as the server saw it: the peer's, or, from one of
GIAO_TRUSTED_PROXIES, the right-most address of X-Forwarded-For outside them
(shared.service.uvicorn_config). An IPv6 client is its /64: one subscriber gets a /64 (or
more) and can pick any address in it. Addresses in GIAO_TRACKING_RATE_LIMIT_EXEMPT are never
limited.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import Counter
from starlette.requests import Request

from services.tracking.settings import TrackingSettings


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


class ClientLimits:
    """The limit of one process on its clients: who a request's client is, whether it is
    exempt, and whether it may go on (counting those refused in `refused`)."""

    def __init__(self, settings: TrackingSettings, refused: Counter) -> None:
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.exempt = settings.exempt_networks()
        self.refused = refused

    def client_of(self, request: Request) -> str:
        """The key of the request's client: its address, an IPv6 one's /64 (an exempt
        address stays itself, so that it stays exempt)."""
        host = request.client.host if request.client else "unknown"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host
        if address.version == 4 or self.is_exempt(host):
            return host
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))

    def is_exempt(self, client: str) -> bool:
        if not self.exempt:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self.exempt)

    def retry_after(self, client: str) -> int:
        """0 if the client may go on, else the whole seconds to put in Retry-After (>= 1)."""
        if self.is_exempt(client):
            return 0
        wait = self.limiter.check(client, time.monotonic())
        if wait:
            self.refused.inc()
        return wait
