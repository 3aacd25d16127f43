"""What the on-call engineer needs to see of a process's events, on /metrics, and the readiness
check that turns red when a consumer is stuck (docs/operations.md says what to do about each).

A Watch looks every `health_every_s` (GIAO_HEALTH_EVERY_S) and keeps what it saw; /metrics
renders that (HealthCollector, at scrape time) and /readyz asks `check_consumers`. Nothing is
done per message beyond what the consumer already kept (a time when records are handled, a
count per dead letter), no request goes to Kafka (a consumer's lag uses the high watermarks
its fetches brought back), and the outbox costs one bounded query per look.

A consumer is stuck when a batch has been retrying an outage, or its lag has stayed above
zero with no record handled, for longer than `consumer_stuck_after_s`
(GIAO_CONSUMER_STUCK_AFTER_S).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import asyncpg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.errors import InOwnWords
from shared.kafka import EventConsumer
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

OUTBOX_QUERY_TIMEOUT_S = 2.0
_OUTBOX = "SELECT count(*) AS rows, extract(epoch FROM now() - min(created_at))::float8 AS oldest FROM outbox"


class ConsumersStuck(InOwnWords):
    """Which consumers are stuck and why: names and durations only."""


@dataclass
class ConsumerSeen:
    """One consumer as the last look saw it."""

    lag: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> records
    lagging_since: float | None = None  # monotonic time a look first saw lag, None while caught up


class Watch:
    def __init__(
        self,
        settings: CommonSettings,
        consumers: Sequence[EventConsumer],
        pool: Callable[[], asyncpg.Pool],
        *,
        outbox: bool,
    ) -> None:
        self.every_s = settings.health_every_s
        self.stuck_after_s = settings.consumer_stuck_after_s
        self.consumers = consumers  # the runtime's list: consumers registered later are seen too
        self._pool = pool
        self._outbox = outbox
        self.seen: dict[str, ConsumerSeen] = {}
        self.outbox_rows: int | None = None  # None until a look could count them
        self.outbox_oldest_s = 0.0

    async def run(self) -> None:
        while True:
            await self.look()
            await asyncio.sleep(self.every_s)

    async def look(self) -> None:
        now = time.monotonic()
        for consumer in self.consumers:
            seen = self.seen.setdefault(consumer.name, ConsumerSeen())
            seen.lag = {(tp.topic, tp.partition): n for tp, n in (await consumer.lag()).items()}
            if not any(seen.lag.values()):
                seen.lagging_since = None
            elif seen.lagging_since is None:
                seen.lagging_since = now
        if self._outbox:
            try:
                async with asyncio.timeout(OUTBOX_QUERY_TIMEOUT_S):
                    row = await self._pool().fetchrow(_OUTBOX)
            except Exception as exc:  # noqa: BLE001 - PostgreSQL unreachable: keep the last count
                log.debug("health: counting the outbox: %r", exc)
            else:
                self.outbox_rows, self.outbox_oldest_s = row["rows"], row["oldest"] or 0.0

    def retrying_for(self, consumer: EventConsumer, now: float) -> float:
        """How long the consumer's oldest retry of an outage has lasted (0: none)."""
        retrying = consumer.retrying
        return now - retrying[0] if retrying else 0.0

    def stalled_for(self, consumer: EventConsumer, now: float) -> float:
        """How long the consumer has had lag and handled nothing (0: caught up, or moving)."""
        seen = self.seen.get(consumer.name)
        if seen is None or seen.lagging_since is None:
            return 0.0
        return max(0.0, now - max(seen.lagging_since, consumer.last_progress))

    def stuck(self) -> dict[str, str]:
        """Consumer name -> why it is stuck, for each one that is."""
        now, stuck = time.monotonic(), {}
        for consumer in self.consumers:
            retrying, stalled = self.retrying_for(consumer, now), self.stalled_for(consumer, now)
            if retrying > self.stuck_after_s:
                stuck[consumer.name] = f"retrying an outage for {retrying:.0f}s"
            elif stalled > self.stuck_after_s:
                stuck[consumer.name] = f"lagging with no progress for {stalled:.0f}s"
        return stuck

    async def check_consumers(self) -> None:
        """A readiness check: fails while a consumer is stuck, saying which and why (for the log)."""
        stuck = self.stuck()
        if stuck:
            raise ConsumersStuck("; ".join(f"{name}: {why}" for name, why in sorted(stuck.items())))


class HealthCollector(Collector):
    """The Watch's view and the consumers' dead letters, rendered at scrape time."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Metric]:
        watch, now = self.watch, time.monotonic()
        lag = GaugeMetricFamily(
            "giao_consumer_lag",
            "Records not handled yet per partition (high watermark of the last fetch minus position)",
            labels=["consumer", "topic", "partition"],
        )
        dead = CounterMetricFamily(
            "giao_dead_letters", "Records sent to <topic>.dlq, by original topic", labels=["consumer", "topic"]
        )
        retrying = GaugeMetricFamily(
            "giao_consumer_retrying", "Batches (or the poll) retrying an outage now", labels=["consumer"]
        )
        retrying_s = GaugeMetricFamily(
            "giao_consumer_retrying_seconds", "How long the oldest retry of an outage has lasted", labels=["consumer"]
        )
        stalled_s = GaugeMetricFamily(
            "giao_consumer_stalled_seconds",
            "How long the consumer has had lag and handled nothing",
            labels=["consumer"],
        )
        stuck = GaugeMetricFamily(
            "giao_consumer_stuck", "1 while the consumer is stuck (readiness is red)", labels=["consumer"]
        )
        stuck_now = watch.stuck()
        for consumer in watch.consumers:
            name = consumer.name
            seen = watch.seen.get(name)
            for (topic, partition), n in sorted(seen.lag.items()) if seen else ():
                lag.add_metric([name, topic, str(partition)], n)
            for topic, n in sorted(consumer.dead_letters.items()):
                dead.add_metric([name, topic], n)
            retrying.add_metric([name], len(consumer.retrying))
            retrying_s.add_metric([name], watch.retrying_for(consumer, now))
            stalled_s.add_metric([name], watch.stalled_for(consumer, now))
            stuck.add_metric([name], 1 if name in stuck_now else 0)
        yield from (lag, dead, retrying, retrying_s, stalled_s, stuck)
        if watch.outbox_rows is not None:
            yield GaugeMetricFamily("giao_outbox_backlog", "Outbox rows not published yet", value=watch.outbox_rows)
            yield GaugeMetricFamily(
                "giao_outbox_oldest_seconds", "Age of the oldest unpublished outbox row", value=watch.outbox_oldest_s
            )


@dataclass(frozen=True)
class Count:
    """A counter a component keeps as a plain int (nothing done per event for the metrics),
    exported as `<name>_total`; `read` answers None while the component is not there."""

    name: str
    doc: str
    read: Callable[[], int | None]


class CountsCollector(Collector):
    """Counts, read at scrape time."""

    def __init__(self, *counts: Count) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        for count in self.counts:
            value = count.read()
            if value is not None:
                yield CounterMetricFamily(count.name, count.doc, value=value)
