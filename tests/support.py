"""Helpers for tests: poll a condition with a deadline, read a topic from the start."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka_clients import connection, existing_partitions
from shared.settings import CommonSettings
from tests.infra import free_port

T = TypeVar("T")


def ops_client(app: Any) -> httpx.AsyncClient:
    """A client of the app as reached on its ops port (shared.app.OpsPort): /metrics answers there only."""
    port = app.state.settings.ops_port
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://ops.test:{port}")


def kafka_settings(bootstrap: str) -> CommonSettings:
    """The broker at `bootstrap` as the tests reach it: as the principal GIAO_KAFKA_USERNAME
    names when it is set (tests.infra sets it for a broker that requires one)."""
    return CommonSettings(kafka_bootstrap_servers=bootstrap)


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[Any]:
    """A service app with its runtime (pool, migrations, broker, consumers) started as uvicorn would."""
    await app.state.runtime.start()
    try:
        yield app
    finally:
        await app.state.runtime.stop()


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Call `check` until it returns something truthy (returned) or the deadline passes.

    `check` may also raise AssertionError while the condition does not hold yet.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


async def read_topic(bootstrap: str, topic: str, *, at_least: int = 0, timeout: float = 20.0) -> list[Any]:
    """Every record of `topic` from the beginning (no consumer group): waits for `at_least`."""
    settings = kafka_settings(bootstrap)
    consumer = AIOKafkaConsumer(**connection(settings), enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:

        async def partitions() -> list[TopicPartition]:
            return await existing_partitions(settings, [topic])

        tps = (
            await eventually(partitions, timeout=timeout, what=f"topic {topic} to exist")
            if at_least
            else await partitions()
        )
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            ends = await consumer.end_offsets(tps)
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            caught_up = all([await consumer.position(tp) >= ends[tp] for tp in tps])
            if caught_up and len(records) >= at_least:
                return records
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{topic}: {len(records)} records after {timeout}s, wanted {at_least}")
    finally:
        await consumer.stop()


async def produce(
    bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes]], headers: list[tuple[str, bytes]] | None = None
) -> None:
    producer = AIOKafkaProducer(**connection(kafka_settings(bootstrap)), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


async def drop_topics(bootstrap: str, prefix: str) -> None:
    """Delete the topics whose names begin with `prefix` (best effort): a broker that kept every
    test's topics (and every bench's baseline topic) would carry thousands of idle partitions
    after a few runs, and spend CPU on them."""
    admin = AIOKafkaAdminClient(**connection(kafka_settings(bootstrap)), request_timeout_ms=5000)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - cleanup must not fail a test
        pass
    finally:
        await admin.close()


def plan_nodes(plan: dict) -> list[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan (its "Plan"), the plan itself first."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += plan_nodes(child)
    return found


async def plans_of(conn: Any, statement: str, *args: Any, analyze: bool = False) -> dict[str, list[dict]]:
    """The nodes of the statement's custom plan and of its generic plan (a prepared statement
    may use either after its first runs), by plan_cache_mode; `analyze` runs it too."""
    found = {}
    for mode in ("force_custom_plan", "force_generic_plan"):
        async with conn.transaction():
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            explained = await conn.fetchval(f"EXPLAIN ({'ANALYZE, ' if analyze else ''}FORMAT JSON) {statement}", *args)
        if isinstance(explained, str):  # a connection without the json codec (shared.db)
            explained = orjson.loads(explained)
        found[mode] = plan_nodes(explained[0]["Plan"])
    return found


@contextlib.asynccontextmanager
async def statements_run(conn: Any) -> AsyncIterator[list[str]]:
    """The SQL of each statement `conn` runs within the block, in order, BEGIN and COMMIT
    included (asyncpg's query logger; it calls a logger soon after the statement, so the
    block's end yields to the event loop once before the list is final)."""
    ran: list[str] = []

    def log(record: Any) -> None:
        ran.append(record.query)

    conn.add_query_logger(log)
    try:
        yield ran
        await asyncio.sleep(0)
    finally:
        conn.remove_query_logger(log)


async def create_databases(admin_dsn: str, names: list[str]) -> None:
    await _as_admin(admin_dsn, [f'CREATE DATABASE "{name}"' for name in names])


async def drop_databases(admin_dsn: str, names: list[str]) -> None:
    await _as_admin(admin_dsn, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names])


async def _as_admin(admin_dsn: str, statements: list[str]) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def serving(app: Any, config: uvicorn.Config | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind a real uvicorn server (its runtime already started): on a free port, or
    as `config` says (such as shared.service's production configuration). Streams need one:
    httpx's ASGI transport buffers the whole response."""
    config = config or uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", timeout_graceful_shutdown=1
    )
    config.lifespan = "off"  # the runtime is started by `running`
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # it failed to start: say why
        return srv.started

    await eventually(started, what="uvicorn to start")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{config.port}", timeout=10) as c:
            yield c
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


class EventStream:
    """Reads one Server-Sent Events stream in the background: raw text, and the events as
    (name, data), data parsed as JSON."""

    def __init__(self, http: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None) -> None:
        self.raw: list[str] = []
        self.events: list[tuple[str, Any]] = []
        self.comments = 0
        self.status: int | None = None
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._read(http, path, headers or {}))

    async def _read(self, http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        try:
            async with http.stream("GET", path, headers=headers, timeout=httpx.Timeout(10, read=30)) as response:
                self.status = response.status_code
                name, data = "message", list[str]()
                async for line in response.aiter_lines():
                    self.raw.append(line)
                    if line == "":
                        if data:
                            self.events.append((name, orjson.loads("\n".join(data))))
                        name, data = "message", []
                    elif line.startswith(":"):
                        self.comments += 1
                    elif line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        finally:
            self.ended.set()

    async def finished(self, timeout: float = 20) -> None:
        await asyncio.wait_for(self._task, timeout)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
