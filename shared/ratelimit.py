"""Rate limits of every service: token buckets in memory, per client address or per caller.

- RateLimiter: a token bucket per key (an address, a merchant, a courier), O(1) a request;
  the table is bounded, the least recently seen keys are forgotten first (a forgotten key
  starts again with a full bucket, which is what an idle one would have anyway).
- AddressLimits: who a request's client is (its address; an IPv6 one's /64), the networks
  never limited (`GIAO_<SERVICE>_RATE_LIMIT_EXEMPT`), and a RateLimiter over them.
- BearerLimits: who a bearer secret belongs to (shared.secrets.KnownSecrets) at a bounded
  cost: a caller the instance knows from memory spends from its own bucket only; any other
  request (no credentials, malformed ones, unknown ones, a lookup) spends from its address's
  bucket first, and gives it back when a lookup found the owner. So failed authentications
  are limited per address, and an address that ran out gets 429 before any lookup: a flood
  of random tokens from one address costs at most the bucket's queries.

Several instances: each enforces its share, `1/GIAO_<SERVICE>_INSTANCES` of every rate and
burst (at least one request), so together they never let more through than the limit, with
no I/O shared between them. The price: a client whose requests all reach one instance (one
kept-alive connection) gets that instance's share only. The defaults are generous enough that
the share is no constraint for the simulator or the benchmark (docs/operations.md).

The client is its address as the server saw it: the peer's, or, from one of
GIAO_TRUSTED_PROXIES, the right-most address of X-Forwarded-For outside them
(shared.service.uvicorn_config). An IPv6 client is its /64: one subscriber gets a /64 (or
more) and can pick any address in it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from prometheus_client import Counter
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings
from starlette.requests import Request

from shared.http import Problem, bearer, unauthorized
from shared.secrets import KnownSecrets
from shared.settings import networks_of

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class LimitSettings(BaseSettings):
    """The settings of a service's rate limits that every service has, mixed into its settings
    class (its `env_prefix` applies: GIAO_ORDERS_INSTANCES, GIAO_TRACKING_RATE_LIMIT_EXEMPT, ...)."""

    instances: int = Field(
        1,
        ge=1,
        description="Instances of the service sharing its load (deploy/local/services.sh reads the same "
        "variable): each enforces this share of every rate limit, so that together they never pass it",
    )
    rate_limit_exempt: str = Field(
        "",
        description='Comma-separated addresses or networks never limited per client address, such as "127.0.0.1,::1" '
        "for a simulator or benchmark on the same host (limits per API key or courier still apply)",
    )

    @field_validator("rate_limit_exempt")
    @classmethod
    def _networks(cls, value: str) -> str:
        networks_of(value)  # ValueError names the bad one
        return value

    def exempt_networks(self) -> list[Network]:
        return networks_of(self.rate_limit_exempt)


@dataclass(slots=True)
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
    """A token bucket per key, `rate` a second and `burst` at once, both divided by `instances`
    (this instance's share)."""

    def __init__(self, rate: float, burst: float, *, instances: int = 1, max_keys: int = 100_000) -> None:
        self.rate = rate / instances
        self.burst = max(1.0, burst / instances)
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def check(self, key: Hashable, now: float) -> int:
        """Spend one: 0 if the key may go on, else the whole seconds to put in Retry-After (>= 1)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))

    def give_back(self, key: Hashable) -> None:
        """Return the token the key's last check spent (what it paid for turned out free)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(bucket.burst, bucket.tokens + 1.0)


class FailedAuthSettings(Protocol):
    """What a service that takes bearer tokens sets for its limit on failed authentications."""

    @property
    def auth_failures_per_s(self) -> float: ...
    @property
    def auth_failures_burst(self) -> float: ...
    @property
    def instances(self) -> int: ...
    def exempt_networks(self) -> list[Network]: ...


def failed_auth_limits(settings: FailedAuthSettings, refused: Counter) -> AddressLimits:
    """The limit per client address on failed authentications, from a service's settings (the
    same for orders' API keys and dispatch's courier tokens)."""
    return AddressLimits(
        settings.auth_failures_per_s,
        settings.auth_failures_burst,
        exempt=settings.exempt_networks(),
        refused=refused,
        instances=settings.instances,
    )


class AddressLimits:
    """One process's limit on client addresses: who a request's client is, whether it is
    exempt, and whether it may go on (counting those refused in `refused`)."""

    def __init__(
        self, rate: float, burst: float, *, exempt: list[Network], refused: Counter, instances: int = 1
    ) -> None:
        self.limiter = RateLimiter(rate, burst, instances=instances)
        self.exempt = exempt
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
        """Spend one: 0 if the client may go on, else the whole seconds to put in Retry-After (>= 1)."""
        if self.is_exempt(client):
            return 0
        wait = self.limiter.check(client, time.monotonic())
        if wait:
            self.refused.inc()
        return wait

    def give_back(self, client: str) -> None:
        self.limiter.give_back(client)


def too_many(retry_after: int, detail: str = "Too many requests; try again later") -> Problem:
    return Problem(429, detail, headers={"Retry-After": str(retry_after)})


class BearerLimits(Generic[T]):
    """Whom a request's bearer secret belongs to, at a bounded cost per caller and per address.

    `caller_of` names an owner's bucket (a merchant's id: all its keys share one; a courier's
    id). `refused` counts the callers refused (`addresses` counts its own)."""

    def __init__(
        self,
        known: KnownSecrets[T],
        *,
        caller_of: Callable[[T], Hashable],
        callers: RateLimiter,
        addresses: AddressLimits,
        refused: Counter,
        unknown_detail: str = "Missing or invalid bearer credentials",
    ) -> None:
        self.known = known
        self.caller_of = caller_of
        self.callers = callers
        self.addresses = addresses
        self.refused = refused
        self.unknown_detail = unknown_detail

    async def owner(self, request: Request) -> T:
        """The owner of the request's bearer secret; 401 without a known one, 429 (with
        Retry-After) when its caller or, for a secret not known from memory, its address is
        over its limit."""
        token = bearer(request)
        owner = self.known.remembered(token) if token is not None else None
        if owner is None:
            client = self.addresses.client_of(request)
            wait = self.addresses.retry_after(client)
            if wait:
                raise too_many(wait, "Too many requests without valid credentials from this address; try again later")
            owner = await self.known.owner(token) if token is not None else None
            if owner is None:
                raise unauthorized() if token is None else unauthorized(self.unknown_detail)
            self.addresses.give_back(client)
        wait = self.callers.check(self.caller_of(owner), time.monotonic())
        if wait:
            self.refused.inc()
            raise too_many(wait)
        return owner
