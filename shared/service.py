"""The runtime of one service process: pool, migrations, broker, outbox relay, consumers (and
the hourly forgetting of the subject positions they recorded long ago),
background loops, and the order they start and stop in.

Shutdown on SIGTERM (uvicorn turns it into the lifespan's exit after it stopped accepting
connections and finished in-flight requests): stop consuming (the batch in hand finishes
and its offsets are committed), stop background loops, let the relay publish what is
committed, stop the producer, close the pool. Each step is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI

from shared.db import create_pool, migrate, migrate_as
from shared.errors import describe
from shared.health import Count, CountsCollector, HealthCollector, Watch
from shared.http import Metrics
from shared.inbox import forget_before
from shared.kafka import BatchHandler, EventConsumer
from shared.kafka_clients import Kafka, RelayProducer, RepeatsHeldBack
from shared.outbox import OutboxRelay
from shared.settings import DEV_ENVS, CommonSettings

log = logging.getLogger(__name__)


class Runtime:
    PRUNE_EVERY_S = 3600.0  # how often positions past inbox_keep_hours are forgotten

    def __init__(
        self,
        settings: CommonSettings,
        *,
        name: str,
        database_url: str,
        migrations: Path | None,
        migration_database_url: str = "",
        pool_size: int = 20,
        relay: bool = True,
    ) -> None:
        self.settings = settings
        self.name = name
        self.database_url = database_url
        # The owner role's URL for the migrations; empty: the runtime's role migrates too (tests).
        self.migration_database_url = migration_database_url
        self.migrations = migrations
        self.pool_size = pool_size
        self.kafka = Kafka(settings, client_id=name)
        self.consumers: list[EventConsumer] = []
        self.relay: OutboxRelay | None = None
        self._relay_producer: RelayProducer | None = None
        self._with_relay = relay
        self._loops: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: asyncpg.Pool | None = None
        self.started = False
        self.watch = Watch(settings, self.consumers, lambda: self.pool, outbox=relay)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: the runtime has not started")
        return self._pool

    def consume(
        self,
        *,
        name: str,
        topics: Sequence[str],
        handler: BatchHandler,
        group_id: str | None = None,
        max_records: int = 500,
        ignore: Collection[str] = (),
        concurrency: int = 1,
    ) -> EventConsumer:
        """Register a consumer (before start). The group defaults to the consumer's name;
        events of the types in `ignore` are committed unread, and up to `concurrency` batches
        are handled at once (EventConsumer)."""
        consumer = EventConsumer(
            self.kafka,
            self.settings,
            name=name,
            topics=topics,
            group_id=group_id or f"{self.settings.topic_prefix}{name}",
            handler=handler,
            max_records=max_records,
            ignore=ignore,
            concurrency=concurrency,
        )
        self.consumers.append(consumer)
        return consumer

    def loop(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Register a background loop started after the pool (dispatch's matcher, say)."""
        self._loops.append((name, run))

    async def start(self) -> None:
        dirs = [self.migrations] if self.migrations else []
        if self.migration_database_url:
            await migrate_as(self.migration_database_url, *dirs)
        self._pool = await create_pool(self.database_url, max_size=self.pool_size)
        if self.settings.env not in DEV_ENVS:
            await self._refuse_a_superuser()
        if not self.migration_database_url:
            await migrate(self._pool, *dirs)
        await self.kafka.start()
        for consumer in self.consumers:
            await consumer.start()
        if self._with_relay:
            self._relay_producer = RelayProducer(self.settings, client_id=self.name)
            await self._relay_producer.start()
            self.relay = OutboxRelay(self._pool, self._relay_producer.publish, on_failure=self._relay_producer.reset)
            await self.relay.start()
        loops = [*self._loops, (f"{self.name}-watch", self.watch.run)]
        if self.consumers:
            loops.append((f"{self.name}-prune-inbox", self._prune_inbox))
        self._tasks = [asyncio.create_task(_forever(name, run), name=name) for name, run in loops]
        self.started = True
        log.info("%s: started", self.name)

    async def _refuse_a_superuser(self) -> None:
        """Outside development and test the service runs as its own role with DML rights only
        (deploy/postgres/service-database.sql): a superuser could read every service's data."""
        if await self.pool.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            await self.pool.close()
            self._pool = None
            raise RuntimeError(
                f"{self.name}: refusing to run as a PostgreSQL superuser when GIAO_ENV={self.settings.env!r}: "
                "give it its own role (docs/operations.md, PostgreSQL roles)"
            )

    async def _prune_inbox(self) -> None:
        """Hourly, forget consumed event ids and subject positions older than
        `inbox_keep_hours` (shared.inbox.forget_before)."""
        while True:
            before = datetime.now(UTC) - timedelta(hours=self.settings.inbox_keep_hours)
            forgotten = await forget_before(self.pool, before)
            if forgotten:
                log.info(
                    "%s: forgot %d subject positions from before %s",
                    self.name,
                    forgotten,
                    before,
                )
            await asyncio.sleep(self.PRUNE_EVERY_S)

    # Past the grace, each remaining step still gets this long (closing what answers at once).
    LAST_STEP_S = 0.1

    async def stop(self) -> None:
        """Stop within the grace as a whole: each step may take what the steps before it left,
        and one that is still running then is named in the log, with where it waits, and left
        behind (never awaited again: in Python 3.11 wait_for would wait for a task that ignores
        its cancel). A SIGTERM so ends before the kill however many steps hang. (A shutdown
        once hung past the kill after its consumers stopped, and the log said nothing more.)"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_s

        def left() -> float:
            return max(self.LAST_STEP_S, deadline - loop.time())

        async def step(what: str, work: Awaitable[Any]) -> None:
            await _within(f"{self.name}: {what}", [asyncio.ensure_future(work)], left())

        for consumer in self.consumers:
            await step(f"stopping {consumer.name}", consumer.stop())
        for task in self._tasks:
            task.cancel()
        await _within(f"{self.name}: the background loops", self._tasks, left())
        if self.relay:
            await step("draining the outbox", self.relay.stop())
        if self._relay_producer:
            await step("stopping the relay's producer", self._relay_producer.stop())
        await step("closing the Kafka clients", self.kafka.stop())
        if self._pool:
            await step("closing the pool", self._pool.close())
        self.started = False
        log.info("%s: stopped", self.name)

    READY_TIMEOUT_S = 2.0  # a server that does not answer (a blackholed link) fails the check, not hang it

    def register_metrics(self, metrics: Metrics) -> None:
        """Export the consumers' lag, retries and dead letters, the outbox backlog (shared.health)
        and what the relay did."""
        metrics.registry.register(HealthCollector(self.watch))
        if self._with_relay:  # the relay starts with the runtime: nothing to count before
            metrics.registry.register(
                CountsCollector(
                    Count(
                        "giao_outbox_published",
                        "Events the relay published",
                        lambda: self.relay.published if self.relay else None,
                    ),
                    Count(
                        "giao_outbox_drains",
                        "Times the relay read the outbox, empty reads included",
                        lambda: self.relay.drains if self.relay else None,
                    ),
                )
            )

    async def check_database(self) -> None:
        # Not asyncio.timeout: on a link that carries nothing, asyncpg's clean-up of a cancelled
        # query (a cancel request over the same dead link) would hold the check as long as the
        # query itself. The probe is left to end on its own.
        probe = asyncio.ensure_future(self.pool.fetchval("SELECT 1"))
        done, _ = await asyncio.wait({probe}, timeout=self.READY_TIMEOUT_S)
        if not done:
            probe.cancel()
            probe.add_done_callback(lambda p: p.cancelled() or p.exception())  # retrieved: no warning
            raise TimeoutError(f"PostgreSQL did not answer within {self.READY_TIMEOUT_S:.0f}s")
        probe.result()

    async def check_kafka(self) -> None:
        if not await self.kafka.ping(timeout=self.READY_TIMEOUT_S):
            raise ConnectionError("Kafka did not answer")

    def ready_checks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        checks: dict[str, Callable[[], Awaitable[None]]] = {"postgres": self.check_database, "kafka": self.check_kafka}
        if self.consumers:
            checks["consumers"] = self.watch.check_consumers
        return checks

    def lifespan(self) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            settle_garbage_collector()
            try:
                yield
            finally:
                await self.stop()

        return lifespan


# Objects allocated per request (pydantic models, asyncpg records, ASGI scopes) trigger the
# cyclic collector every 700 net allocations by default, and each older-generation pass walks
# everything the framework built at start-up: profiled under load, that was about a sixth of
# a service's CPU. The start-up heap is frozen (never scanned again) and young collections run
# less often; memory stays bounded because the thresholds still trigger collections.
GC_THRESHOLDS = (20_000, 20, 20)


def settle_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _forever(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Keep a background loop alive through outages; cancellation ends it."""
    backoff = 0.1
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - log, wait, go on
            log.warning("%s: %s; restarting in %.1fs", name, describe(exc), backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def _stack(task: asyncio.Task[None]) -> str:
    """Where a task waits: its chain of awaits, outermost first, as a traceback reads (the
    task's own print_stack shows a suspended coroutine's outermost frame only)."""
    frames = []
    awaited: Any = task.get_coro()
    while awaited is not None and getattr(awaited, "cr_frame", None) is not None:
        frames.append((awaited.cr_frame, awaited.cr_frame.f_lineno))
        awaited = awaited.cr_await
    return "".join(traceback.StackSummary.extract(frames).format())


async def _within(what: str, tasks: list[asyncio.Task[Any]], timeout: float) -> None:
    """Wait up to `timeout` for a step of the shutdown (its tasks); log what failed, and each
    task still running, cancelled, with where it waits; never raise: shutdown goes on."""
    if not tasks:
        return
    done, stuck = await asyncio.wait(tasks, timeout=timeout)
    for task in done:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s failed: %s", what, describe(exc))
    for task in stuck:
        log.error(
            "%s did not end in time; going on with shutdown. %s waits in:\n%s", what, task.get_name(), _stack(task)
        )
        task.cancel()


def listening_socket(host: str, port: int, *, shared: bool) -> socket.socket:
    """A TCP socket bound to (host, port); `shared`: other processes may bind it too
    (SO_REUSEPORT, Linux: those of the same user only), and the kernel spreads new
    connections among them. uvicorn starts listening on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(app: FastAPI, settings: CommonSettings, port: int) -> uvicorn.Config:
    """How every service runs under uvicorn.

    X-Forwarded-For is believed only from GIAO_TRUSTED_PROXIES (uvicorn's default trusts
    127.0.0.1, so any local client could name its own address): the request's client is then
    the right-most address of the header outside those networks, else the peer itself."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        limit_concurrency=settings.limit_concurrency,
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=[str(n) for n in settings.trusted_proxy_networks()] or None,
    )


def serve(app: FastAPI, settings: CommonSettings, port: int) -> None:
    """Run the app until SIGTERM/SIGINT; exit 0 after a clean graceful shutdown.

    One server, on `port` (shared with the service's other instances when
    settings.instance_port is set, which it then also listens on alone) and on the process's
    ops port (settings.ops_port): shared.app.OpsPort tells them apart."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatsHeldBack())
    server = uvicorn.Server(uvicorn_config(app, settings, port))
    # uvicorn re-raises SIGTERM once its shutdown is done, with the handler it found at start,
    # so the process would end "killed by SIGTERM" (143) even after a clean shutdown. With a
    # no-op handler in place the process ends by itself: exit 0 means the shutdown was clean.
    signal.signal(signal.SIGTERM, lambda *_: None)
    sockets = [listening_socket(settings.host, port, shared=settings.instance_port is not None)]
    if settings.instance_port is not None:
        sockets.append(listening_socket(settings.host, settings.instance_port, shared=False))
    if settings.ops_port is not None:
        sockets.append(listening_socket(settings.host, settings.ops_port, shared=False))
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(3)  # the lifespan failed to start (already logged)
