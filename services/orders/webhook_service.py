"""The webhook use cases: a merchant's endpoints (register, change, rotate the secret, delete,
read the delivery log, redeliver, ping) and the worker that sends the outbox of deliveries.

The worker (a runtime loop, app.py) claims due deliveries (webhook_store.claim_due: several
instances share the work), checks the target address again (DNS can change since registration),
signs each with the endpoint's secrets (Standard Webhooks) and posts it through a Sender; a
failure is retried on the schedule of settings, and the last failure disables the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from prometheus_client import Gauge

from services.orders import webhook_store as store
from services.orders.settings import OrdersSettings
from services.orders.webhook_http import DnsResolver, HttpSender, Resolver, Sender
from services.orders.webhooks import (
    PING,
    UnsafeTarget,
    check_addresses,
    check_url,
    give_up_reason,
    new_signing_secret,
    next_attempt_delay,
    overlap_ends,
    payload,
    signature_header,
)
from shared.http import Metrics
from shared.service import Runtime
from shared.settings import DEV_ENVS

log = logging.getLogger(__name__)


class EndpointNotFound(Exception):
    """No endpoint of this merchant has that id (or no delivery of it that one)."""


def endpoint_view(row: asyncpg.Record, *, with_secret: bool = False) -> dict[str, Any]:
    view = {
        "id": str(row["id"]),
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "previous_secret_expires_at": row["previous_secret_until"],
    }
    if with_secret:
        view["secret"] = row["secret"]
    return view


def delivery_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "order_id": None if row["order_id"] is None else str(row["order_id"]),
        "event_type": row["event_type"],
        "state": row["state"],
        "attempts": row["attempt_log"],
        "next_attempt_at": row["next_attempt_at"] if row["state"] == "pending" else None,
        "last_error": row["last_error"],
        "created_at": row["created_at"],
        "delivered_at": row["delivered_at"],
    }


# When an attempt was made, the status code, the latency (ms) and the error, if any.
Sent = tuple[datetime, int | None, int, str | None]


class WebhookService:
    SETTLE_S = 0.05  # once one delivery in flight is done, how long the others may take to join its record

    def __init__(
        self,
        runtime: Runtime,
        settings: OrdersSettings,
        metrics: Metrics,
        *,
        sender: Sender | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.runtime = runtime
        # https only wherever GIAO_ENV is not development or test, as every production rule reads it.
        self.production = settings.env not in DEV_ENVS
        self.allow_private = settings.webhook_allow_private
        self.schedule: Sequence[float] = settings.webhook_retry_schedule_s
        self.overlap_hours = settings.webhook_secret_overlap_hours
        self.poll_s = settings.webhook_poll_s
        self.timeout_s = settings.webhook_timeout_s
        self.per_endpoint = settings.webhook_endpoint_concurrency
        self.max_in_flight = settings.webhook_in_flight  # deliveries sent at once, at most
        self.log_keep = timedelta(days=settings.webhook_log_keep_days)
        # A claimed delivery comes back after this if its worker died: longer than a send can take.
        self.lease_s = 2 * self.timeout_s + 5
        self.sender = sender
        self.resolver: Resolver = resolver or DnsResolver()
        self.sent_total = metrics.counter("orders_webhook_deliveries_sent_total", "Webhook deliveries answered 2xx")
        self.failed_total = metrics.counter(
            "orders_webhook_delivery_failures_total", "Webhook delivery attempts that failed"
        )
        self.oldest_age = Gauge(
            "orders_webhook_oldest_undelivered_seconds",
            "Age of the oldest pending webhook delivery (0: none)",
            registry=metrics.registry,
        )

    # --- the address policy ---------------------------------------------------------

    async def check_target(self, url: str) -> None:
        """UnsafeTarget if this URL must not be called (checked at registration and before each send)."""
        host, port = check_url(url, production=self.production)
        if not self.allow_private:
            check_addresses(host, await self.resolver.resolve(host, port))

    # --- endpoints ------------------------------------------------------------------

    async def create_endpoint(
        self, merchant_id: UUID, *, url: str, event_types: Sequence[str], enabled: bool
    ) -> dict[str, Any]:
        await self.check_target(url)
        row = await store.insert_endpoint(
            self.runtime.pool,
            id=uuid4(),
            merchant_id=merchant_id,
            url=url,
            event_types=event_types,
            enabled=enabled,
            secret=new_signing_secret(),
        )
        return endpoint_view(row, with_secret=True)

    async def endpoints(self, merchant_id: UUID) -> list[dict[str, Any]]:
        return [endpoint_view(r) for r in await store.list_endpoints(self.runtime.pool, merchant_id)]

    async def endpoint(self, merchant_id: UUID, endpoint_id: UUID) -> dict[str, Any]:
        return endpoint_view(await self._endpoint_row(merchant_id, endpoint_id))

    async def update_endpoint(
        self,
        merchant_id: UUID,
        endpoint_id: UUID,
        *,
        url: str | None,
        event_types: Sequence[str] | None,
        enabled: bool | None,
    ) -> dict[str, Any]:
        if url is not None:
            await self.check_target(url)
        row = await store.update_endpoint(
            self.runtime.pool, merchant_id, endpoint_id, url=url, event_types=event_types, enabled=enabled
        )
        if row is None:
            raise EndpointNotFound()
        return endpoint_view(row)

    async def delete_endpoint(self, merchant_id: UUID, endpoint_id: UUID) -> None:
        if not await store.delete_endpoint(self.runtime.pool, merchant_id, endpoint_id):
            raise EndpointNotFound()

    async def rotate_secret(self, merchant_id: UUID, endpoint_id: UUID) -> dict[str, Any]:
        """A new secret (shown once); the old one keeps signing too until the overlap ends."""
        row = await store.rotate_secret(
            self.runtime.pool,
            merchant_id,
            endpoint_id,
            new_signing_secret(),
            overlap_ends(datetime.now(UTC), self.overlap_hours),
        )
        if row is None:
            raise EndpointNotFound()
        return endpoint_view(row, with_secret=True)

    async def deliveries(
        self, merchant_id: UUID, endpoint_id: UUID, *, limit: int, before: int | None
    ) -> dict[str, Any]:
        await self._endpoint_row(merchant_id, endpoint_id)
        rows = await store.list_deliveries(self.runtime.pool, endpoint_id, limit=limit + 1, before=before)
        page, more = rows[:limit], len(rows) > limit
        return {"items": [delivery_view(r) for r in page], "next_cursor": str(page[-1]["position"]) if more else None}

    async def redeliver(self, merchant_id: UUID, endpoint_id: UUID, delivery_id: UUID) -> None:
        await self._endpoint_row(merchant_id, endpoint_id)
        if not await store.redeliver(self.runtime.pool, endpoint_id, delivery_id):
            raise EndpointNotFound()

    async def ping(self, merchant_id: UUID, endpoint_id: UUID) -> dict[str, str]:
        """Queue a signed `ping` to this endpoint (it shows in the delivery log like any delivery)."""
        await self._endpoint_row(merchant_id, endpoint_id)
        delivery_id = uuid4()
        await store.insert_delivery(
            self.runtime.pool,
            id=delivery_id,
            endpoint_id=endpoint_id,
            event_type=PING,
            payload=payload(PING, datetime.now(UTC), {"endpoint_id": str(endpoint_id)}),
        )
        return {"delivery_id": str(delivery_id)}

    async def _endpoint_row(self, merchant_id: UUID, endpoint_id: UUID) -> asyncpg.Record:
        row = await store.get_endpoint(self.runtime.pool, merchant_id, endpoint_id)
        if row is None:
            raise EndpointNotFound()
        return row

    # --- the worker -----------------------------------------------------------------

    PRUNE_EVERY_S = 3600.0

    async def forget_finished_deliveries(self, now: datetime | None = None) -> int:
        """Forget the delivered and failed deliveries older than the log keeps them at `now`
        (the present unless told: tests ask about a later day)."""
        return await store.forget_finished(self.runtime.pool, (now or datetime.now(UTC)) - self.log_keep)

    async def prune_delivery_log(self) -> None:
        """Hourly, forget_finished_deliveries (a runtime loop, app.py)."""
        while True:
            await self.forget_finished_deliveries()
            await asyncio.sleep(self.PRUNE_EVERY_S)

    async def deliver_forever(self) -> None:
        """Send due deliveries, up to `webhook_in_flight` at once (a runtime loop)."""
        owned = self.sender is None
        sender = self.sender or HttpSender(self.timeout_s, self.per_endpoint)
        in_flight: dict[asyncio.Task[Sent], asyncpg.Record] = {}
        try:
            gauged = 0.0
            while True:
                await self.deliver_due(sender, in_flight)
                # The gauge at most once a second: turns follow each other quickly while
                # deliveries flow, and a scrape every few seconds reads it.
                if time.monotonic() - gauged >= 1.0:
                    gauged = time.monotonic()
                    if isinstance(sender, HttpSender):
                        await sender.close_unused()
                    oldest = await store.oldest_pending(self.runtime.pool)
                    self.oldest_age.set(0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds())
        finally:
            # The deliveries still in flight stay leased: they come back when their lease ends.
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            if owned and isinstance(sender, HttpSender):
                await sender.aclose()

    async def deliver_due(self, sender: Sender, in_flight: dict[asyncio.Task[Sent], asyncpg.Record]) -> int:
        """One turn: claim due deliveries for the free places (at most `per_endpoint` in flight to
        one endpoint), start sending them, wait until some of those in flight are done (or
        `webhook_poll_s`), and record those together. No turn waits for the slowest delivery: a
        silent endpoint holds its own places until its timeout, not everyone's."""
        free = self.max_in_flight - len(in_flight)
        claimed: list[asyncpg.Record] = []
        if free > 0:
            busy = Counter(row["endpoint_id"] for row in in_flight.values())
            claimed = await store.claim_due(
                self.runtime.pool, free, self.lease_s, per_endpoint=self.per_endpoint, in_flight=dict(busy)
            )
            resolving = self._resolve_hosts(claimed)
            for row in claimed:
                in_flight[asyncio.create_task(self._send(sender, row, resolving))] = row
        if not in_flight:
            await asyncio.sleep(self.poll_s)
            return 0
        done, waiting = await asyncio.wait(in_flight, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
        if done and waiting:
            # Deliveries sent together mostly end together: record them in one statement.
            more, _ = await asyncio.wait(waiting, timeout=self.SETTLE_S)
            done |= more
        await self.record_round([(in_flight.pop(task), task.result()) for task in done])
        return len(claimed)

    def _resolve_hosts(self, rows: Sequence[asyncpg.Record]) -> dict[tuple[str, int], asyncio.Task[list[str]]]:
        """The addresses of each host these deliveries go to, looked up once for them all, now
        (none when private targets are allowed). A lookup per delivery was a thread hop and
        ~200 us of CPU each; the deliveries of one round leave together anyway."""
        resolving: dict[tuple[str, int], asyncio.Task[list[str]]] = {}
        if self.allow_private:
            return resolving
        for row in rows:
            try:
                target = check_url(row["url"], production=self.production)
            except UnsafeTarget:
                continue  # _send refuses it
            if target not in resolving:
                resolving[target] = asyncio.create_task(self.resolver.resolve(*target))
        return resolving

    async def _send(
        self, sender: Sender, row: asyncpg.Record, resolving: dict[tuple[str, int], asyncio.Task[list[str]]]
    ) -> Sent:
        """Sign and post one delivery: when, the status code, the latency and the error, if any.
        Its target is checked again first (check_target, with the round's lookups), and the
        sender connects to the addresses checked: it does not look the host up again."""
        now = datetime.now(UTC)
        secrets_ = [row["secret"]]
        if row["previous_secret"] and row["previous_secret_until"] and row["previous_secret_until"] > now:
            secrets_.append(row["previous_secret"])
        msg_id = str(row["id"])  # the same on every attempt: the receiver's idempotency key
        body: str = row["body"]
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(secrets_, msg_id, now, body),
        }
        status: int | None = None
        error: str | None = None
        started = time.perf_counter()
        try:
            host, port = check_url(row["url"], production=self.production)
            addresses = None
            if not self.allow_private:
                addresses = await resolving[host, port]
                check_addresses(host, addresses)
            status = await sender.post(row["url"], body.encode(), headers, addresses=addresses)
            if not 200 <= status < 300:
                error = f"answered {status}"
        except UnsafeTarget as exc:
            error = f"refused: {exc}"
        except Exception as exc:  # noqa: BLE001 - any failure to send is the attempt's error
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return now, status, round((time.perf_counter() - started) * 1000), error

    async def record_round(self, sent: list[tuple[asyncpg.Record, Sent]]) -> None:
        """These attempts in one statement; a delivery that failed for the last time
        also disables its endpoint, in a transaction of its own. A delivery gone meanwhile (its
        endpoint deleted) has nothing to record. Nothing raises out of here: a record that fails
        is logged and its delivery comes back when its lease ends, while the other deliveries
        in flight, every merchant's, go on."""
        kept: list[store.Attempt] = []
        given_up: list[tuple[asyncpg.Record, store.Attempt, str]] = []
        rng = random.Random()
        for row, (at, status, latency_ms, error) in sent:
            if error is None:
                kept.append(store.Attempt(row["id"], at, status, latency_ms, None, "delivered", None))
                continue
            delay = next_attempt_delay(self.schedule, row["attempts"] + 1, rng)
            if delay is not None:
                kept.append(
                    store.Attempt(row["id"], at, status, latency_ms, error, "pending", at + timedelta(seconds=delay))
                )
            else:
                given_up.append((row, store.Attempt(row["id"], at, status, latency_ms, error, "failed", None), error))
        await self._record_together(kept)
        delivered = sum(1 for a in kept if a.error is None)
        self.sent_total.inc(delivered)
        self.failed_total.inc(len(sent) - delivered)
        for row, attempt, error in given_up:
            try:
                async with self.runtime.pool.acquire() as conn, conn.transaction():
                    # The endpoint first, then its delivery: the order in which deleting the
                    # endpoint locks them (its deliveries go by cascade), so the two cannot deadlock.
                    disabled = await store.disable_endpoint(
                        conn, row["endpoint_id"], give_up_reason(row["attempts"] + 1, error, row["created_at"])
                    )
                    await store.record_attempts(conn, [attempt])
            except Exception:
                log.exception("webhook delivery %s: its last attempt could not be recorded", row["id"])
                continue
            if disabled:
                log.warning(
                    "webhook endpoint %s disabled: delivery %s failed %d times (%s)",
                    row["endpoint_id"],
                    row["id"],
                    row["attempts"] + 1,
                    error,
                )

    async def _record_together(self, attempts: list[store.Attempt]) -> None:
        """These attempts in one statement, which leaves out the deliveries another transaction
        holds; those, and all of them if PostgreSQL refused that statement (one bad attempt
        must not cost the others their record), then one statement each (one that waits:
        holding a single delivery, it cannot deadlock). When the database cannot be reached,
        the rest are left to their leases at once, not tried one by one."""
        try:
            recorded = await store.record_attempts(self.runtime.pool, attempts, wait=False)
        except asyncpg.PostgresError:
            log.exception("recording %d webhook attempts together failed: recording them one by one", len(attempts))
            recorded = set()
        except Exception:
            log.exception("%d webhook attempts not recorded: they are sent again after their lease", len(attempts))
            return
        for attempt in attempts:
            if attempt.delivery_id in recorded:
                continue
            try:
                await store.record_attempts(self.runtime.pool, [attempt])
            except asyncpg.PostgresError:
                log.exception("webhook delivery %s: its attempt could not be recorded", attempt.delivery_id)
            except Exception:
                log.exception("webhook attempts not recorded: they are sent again after their lease")
                return
