"""Rate limiting without I/O: the token buckets, who a request's client is, exempt networks,
an instance's share."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from shared.ratelimit import AddressLimits, RateLimiter
from shared.settings import networks_of


def test_token_bucket_allows_the_burst_then_asks_to_wait():
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.check("1.2.3.4", 100.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.check("1.2.3.4", 100.0) == 1  # 0.5 s to the next token: Retry-After 1
    assert limiter.check("5.6.7.8", 100.0) == 0, "another client has its own bucket"
    assert limiter.check("1.2.3.4", 100.5) == 0, "refilled at the rate"
    assert limiter.check("1.2.3.4", 100.5) == 1
    slow = RateLimiter(rate=0.1, burst=1)
    assert slow.check("a", 0.0) == 0 and slow.check("a", 0.0) == 10


def test_rate_limiter_forgets_the_least_recent_clients_first():
    limiter = RateLimiter(rate=1, burst=1, max_keys=2)
    limiter.check("a", 0.0)
    limiter.check("b", 0.0)
    limiter.check("a", 0.0)  # a is now the most recent
    limiter.check("c", 0.0)  # b is forgotten
    assert limiter.check("a", 0.0) > 0
    assert limiter.check("b", 0.0) == 0, "b was forgotten and starts with a full bucket"


def test_each_instance_enforces_its_share_and_a_token_can_be_given_back():
    share = RateLimiter(rate=10, burst=6, instances=3)  # 3.33/s and 2 at once here
    assert [share.check("k", 50.0) for _ in range(3)] == [0, 0, 1]
    assert share.check("k", 50.31) == 0, "a third of the rate"
    share.give_back("k")
    assert share.check("k", 50.31) == 0 and share.check("k", 50.31) == 1
    assert RateLimiter(rate=1, burst=2, instances=4).burst == 1, "at least one request at once"


def limits(registry: CollectorRegistry | None = None, **settings) -> AddressLimits:
    refused = Counter("refused", "Requests refused", registry=registry or CollectorRegistry())
    return AddressLimits(
        settings["rate"], settings["burst"], exempt=networks_of(settings.get("exempt", "")), refused=refused
    )


def test_exempt_networks_pass_and_refusals_are_counted():
    registry = CollectorRegistry()
    lim = limits(registry, rate=1, burst=1, exempt="10.0.0.0/8,::1")
    assert [lim.retry_after("10.1.2.3") for _ in range(3)] == [0, 0, 0]
    assert [lim.retry_after("::1") for _ in range(3)] == [0, 0, 0]
    assert lim.is_exempt("10.1.2.3") and not lim.is_exempt("203.0.113.7") and not lim.is_exempt("unknown")
    assert [lim.retry_after("203.0.113.7") for _ in range(3)] == [0, 1, 1]
    assert registry.get_sample_value("refused_total") == 2
