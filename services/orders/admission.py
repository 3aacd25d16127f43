"""Admission control at the door of order intake: when dispatch falls behind, new orders are
refused (503 with Retry-After) instead of joining a queue whose every order waits longer.

What orders can see of dispatch's backlog is its own orders still `placed` (not yet assigned to a
courier): dispatch's database is not ours to read, and offers change nothing here (the consumer
commits them unread). A background loop (`AdmissionControl.watch`) counts, every
`admission_refresh_s`, the orders placed within the last `admission_horizon_s` that have waited
longer than `admission_bound_s` ("late" orders); the intake path only reads what the loop found
(never a query per request).

The rule (`AdmissionRule`, free of I/O) is additive-increase / multiplicative-decrease on the
rate this instance admits:

- no limit while fewer than `admission_min_late` orders are late: an order costs two counter
  increments;
- once that many are late, the limit becomes half the rate at which orders left the waiting
  state lately (what dispatch clears; or half the rate admitted, if that is lower), and is cut so
  again at most once per `min(bound, 5 s)` while they stay late (a queue needs about a bound to
  show a change of rate), unless they are draining (fewer than at the last cut and no more than
  the fewest since): the queue drains while intake stays open at a fair share. Cut while it
  drains, the leftovers of an overload would halve the limit down to the floor, and intake would
  stay shut for seconds after dispatch caught up, growing it back;
- with no late order, the limit grows by 10% (and 0.1 order/s) per second, and is lifted when
  it is above what merchants ask for (by a fifth).

While a limit holds, every merchant that asked in the last few seconds gets an equal share of
it through a token bucket of its own, so one shop cannot take all the capacity; a share a quiet
merchant leaves unused lowers the backlog, and the limit grows until the busy ones use it.
Several instances each limit what they admit; they all see the same backlog, so together they
settle on what dispatch clears.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Gauge

from services.orders import store
from services.orders.settings import OrdersSettings
from shared.http import Metrics
from shared.service import Runtime

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """Intake refuses an order for now; the merchant may retry after `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"Too many orders are waiting for a courier: retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Backlog:
    """Orders placed within the horizon and not yet assigned."""

    waiting: int = 0
    late: int = 0  # of them, those waiting longer than the bound
    oldest_s: float = 0.0  # how long the oldest of them has waited (0: none waits)


@dataclass
class _Bucket:
    tokens: float
    at: float  # when tokens was last brought up to date
    seen: float  # when the merchant last asked


class AdmissionRule:
    """Whether an order may come in now; `observe` is fed the backlog every refresh, `admit`
    is asked once per order. Times are seconds of one monotonic clock, passed in."""

    DECREASE = 0.5  # the limit's factor when orders are late
    INCREASE = 0.1  # the limit's growth per second without late orders (and INCREASE orders/s per second)
    RELEASE = 1.2  # the limit is lifted once it is this many times what merchants ask for
    RATE_S = 2.0  # the asked, admitted and departure rates are smoothed over about this
    ACTIVE_S = 5.0  # a merchant that asked this recently has a share of the limit
    MAX_RETRY_AFTER_S = 60

    def __init__(self, *, bound_s: float, min_late: int, min_rate: float = 1.0) -> None:
        self.min_late = min_late
        self.min_rate = min_rate
        self.cut_every_s = min(bound_s, 5.0)
        self.limit: float | None = None  # orders per second this instance admits; None: all
        self.asked = 0  # orders asked for and admitted since the last observe
        self.admitted = 0
        self.observed_at: float | None = None
        self.waiting: int | None = None  # at the last observe
        # Orders per second leaving the waiting state (assigned, expired or cancelled), smoothed:
        # the waiting count's fall plus what this instance admitted meanwhile (with several
        # instances, what the others admitted is missed: an underestimate, the safe side).
        self.departure_rate: float | None = None
        self.admitted_rate: float | None = None
        self.asked_rate: float | None = None
        self.cut_at = -math.inf
        # Late orders when the limit was last cut, and the fewest seen since: fewer than at the
        # cut and no more than the fewest is a backlog draining.
        self.late_at_cut = self.late_low = 0
        self.buckets: dict[Any, _Bucket] = {}

    def observe(self, now: float, backlog: Backlog) -> None:
        since, self.observed_at = self.observed_at, now
        asked, admitted, self.asked, self.admitted = self.asked, self.admitted, 0, 0
        waiting, self.waiting = self.waiting, backlog.waiting
        if since is None or now <= since:
            return
        dt = now - since
        # Rates over a few seconds, not one refresh: requests and assignments come in bursts.
        self.admitted_rate = _smooth(self.admitted_rate, admitted / dt, dt, self.RATE_S)
        self.asked_rate = _smooth(self.asked_rate, asked / dt, dt, self.RATE_S)
        if waiting is not None:
            departures = max(0, waiting + admitted - backlog.waiting) / dt
            self.departure_rate = _smooth(self.departure_rate, departures, dt, self.RATE_S)
        draining = backlog.late < self.late_at_cut and backlog.late <= self.late_low
        self.late_low = min(self.late_low, backlog.late)
        if backlog.late >= self.min_late:
            if self.limit is None or (now - self.cut_at >= self.cut_every_s and not draining):
                base = (self.admitted_rate or 0.0) if self.limit is None else self.limit
                if self.departure_rate is not None:
                    base = min(base, self.departure_rate)
                self.limit = max(self.min_rate, base * self.DECREASE)
                self.cut_at, self.late_at_cut, self.late_low = now, backlog.late, backlog.late
        elif self.limit is not None and backlog.late == 0:
            # Per second, not per refresh: the backlog shows a change only after about a bound.
            grow = self.INCREASE * (now - since)
            self.limit = self.limit * (1 + grow) + grow
            if self.limit >= self.RELEASE * (self.asked_rate or 0.0):
                self.limit = None
                self.buckets.clear()
        for key in [k for k, b in self.buckets.items() if now - b.seen > self.ACTIVE_S]:
            del self.buckets[key]

    def admit(self, merchant: Any, now: float) -> int | None:
        """None if the order may come in, else the seconds after which to ask again."""
        self.asked += 1
        if self.limit is None:
            self.admitted += 1
            return None
        bucket = self.buckets.get(merchant)
        if bucket is None:
            bucket = self.buckets[merchant] = _Bucket(tokens=1.0, at=now, seen=now)
        share = self.limit / len(self.buckets)
        burst = max(1.0, share)  # a second's worth of the share, at least one order
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * share)
        bucket.at = bucket.seen = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            self.admitted += 1
            return None
        return min(self.MAX_RETRY_AFTER_S, max(1, math.ceil((1.0 - bucket.tokens) / share)))


def _smooth(previous: float | None, latest: float, dt: float, over_s: float) -> float:
    """An exponential moving average over about `over_s` seconds (the first value as it is)."""
    if previous is None:
        return latest
    return previous + (latest - previous) * min(1.0, dt / over_s)


class AdmissionControl:
    """The rule with its inputs: the backlog loop (app.py registers `watch` with the runtime),
    and `check`, the one call of the intake path."""

    def __init__(
        self,
        runtime: Runtime,
        settings: OrdersSettings,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.enabled = settings.admission_enabled
        self.bound = timedelta(seconds=settings.admission_bound_s)
        self.horizon = timedelta(seconds=settings.admission_horizon_s)
        self.refresh_s = settings.admission_refresh_s
        self.clock = clock
        self.rule = AdmissionRule(
            bound_s=settings.admission_bound_s,
            min_late=settings.admission_min_late,
            min_rate=settings.admission_min_rate,
        )
        decisions = metrics.counter("orders_admission_total", "Orders asked for at intake, by decision", ("decision",))
        self.admitted_total = decisions.labels("admitted")
        self.refused_total = decisions.labels("refused")
        self.late_gauge = Gauge(
            "orders_admission_late_orders",
            "Orders waiting for a courier longer than the bound",
            registry=metrics.registry,
        )
        self.oldest_gauge = Gauge(
            "orders_admission_oldest_waiting_seconds",
            "How long the oldest order placed within the horizon has waited for a courier",
            registry=metrics.registry,
        )
        self.limit_gauge = Gauge(
            "orders_admission_limit_per_second",
            "Orders per second this instance admits (0: no limit)",
            registry=metrics.registry,
        )

    def check(self, merchant: Any) -> None:
        """Raise Overloaded if this merchant's order is to be refused now."""
        if not self.enabled:
            return
        retry_after = self.rule.admit(merchant, self.clock())
        if retry_after is None:
            self.admitted_total.inc()
            return
        self.refused_total.inc()
        raise Overloaded(retry_after)

    async def backlog(self) -> Backlog:
        now = datetime.now(UTC)
        row = await store.waiting_orders(self.runtime.pool, late_before=now - self.bound, since=now - self.horizon)
        oldest = row["oldest"]
        return Backlog(
            waiting=row["waiting"],
            late=row["late"],
            oldest_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )

    async def watch(self) -> None:
        """Every refresh, the backlog into the rule and the gauges."""
        if not self.enabled:
            return
        while True:
            try:
                backlog = await self.backlog()
            except Exception:  # a failed look keeps the last decision, and the next one retries
                log.exception("admission: could not read the backlog")
            else:
                was_limited = self.rule.limit is not None
                self.rule.observe(self.clock(), backlog)
                limit = self.rule.limit
                if (limit is not None) != was_limited:
                    log.warning(
                        "admission: %s (%d orders late, oldest waiting %.1f s)",
                        f"limiting intake to {limit:.1f} orders/s" if limit is not None else "limit lifted",
                        backlog.late,
                        backlog.oldest_s,
                    )
                self.late_gauge.set(backlog.late)
                self.oldest_gauge.set(backlog.oldest_s)
                self.limit_gauge.set(limit or 0)
            await asyncio.sleep(self.refresh_s)
