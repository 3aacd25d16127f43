"""Live changes for Server-Sent Events streams: NOTIFY at commit, one LISTEN connection per
process, fanned out in memory to the streams that watch a key.

Whichever instance changed something, its transaction NOTIFYs the changed keys (`notify`:
tracking codes, courier ids) on the one database all instances share, so every instance hears
every change. A `ChangeFeed` re-reads the keys someone watches, in one query per wake-up, and
hands the values to their watchers; a watcher keeps only the newest value (a slow client skips
intermediate states, never the latest one), and never gets a value read before it began to
watch (its stream reads its own first state after it began: an older read must not follow it).
When the LISTEN connection drops, it is re-opened and every watched key is re-read, since
changes may have been missed meanwhile.

`StreamSlots` counts the open streams, of each client and of the process: a slot is reserved
before the request's first await, so a burst of openings cannot all pass the count before any
of them is counted; `FeedStreams` joins the two, and each service adds its own events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Generic, TypeVar

import asyncpg
from prometheus_client import Gauge

V = TypeVar("V")

NOTIFY_PAYLOAD_MAX = 7000  # PostgreSQL refuses payloads of 8000 bytes and more


def notify_from(keys: str, channel: str) -> str:
    """A CTE, `notified`, that tells every listening instance at commit that the keys in column
    `key` of the CTE or table `keys` changed, on `channel` (an SQL expression): the distinct
    keys in order, comma-joined, a payload per NOTIFY_PAYLOAD_MAX bytes (each under that plus
    its first key, so keys under 1,000 bytes keep it below PostgreSQL's 8,000). A CTE that
    nothing reads is not run: the statement must read `notified` when it has keys. A
    statement that changes something can NOTIFY with it, with no round trip of its own while
    its row locks are held."""
    return f"""notified AS (
        SELECT pg_notify({channel}, string_agg(key, ',' ORDER BY key)) FROM (
            SELECT key, (sum(octet_length(key) + 1) OVER (ORDER BY key) - 1) / {NOTIFY_PAYLOAD_MAX} AS chunk
            FROM (SELECT DISTINCT key FROM {keys} WHERE key IS NOT NULL) k) c
        GROUP BY chunk)"""


_NOTIFY = f"WITH keys AS (SELECT unnest($2::text[]) AS key), {notify_from('keys', '$1')} SELECT count(*) FROM notified"


async def notify(conn: asyncpg.Connection, channel: str, keys: Iterable[str | None]) -> None:
    """Tell every listening instance, when this transaction commits, that these keys changed
    (None is no one's key; a key must not hold a comma)."""
    given = [k for k in keys if k is not None]
    if given:
        await conn.execute(_NOTIFY, channel, given)


def _always(_new: object, _old: object) -> bool:
    return True


class Watcher(Generic[V]):
    """One stream's view of one key: the newest value, and a wake-up."""

    def __init__(self, key: str, since: int, newer: Callable[[V, V], bool]) -> None:
        self.key = key
        self.since = since  # the feed's reads begun before this watcher existed
        self._newer = newer
        self._latest: V | None = None
        self._changed = asyncio.Event()

    def offer(self, value: V) -> None:
        if self._latest is not None and not self._newer(value, self._latest):
            return
        self._latest = value
        self._changed.set()

    async def next(self, timeout: float) -> V | None:
        """The newest value once it changed, or None after `timeout` seconds without change."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return None
        self._changed.clear()
        return self._latest


class ChangeFeed(Generic[V]):
    """The changes of one NOTIFY channel, for this process's watchers. `read(pool, keys)` gives
    the current (key, value) of these keys; `newer(new, old)` says whether a value read later
    may replace one a watcher holds (by default always: reads are made one after the other)."""

    def __init__(
        self,
        dsn: str,
        pool: Callable[[], asyncpg.Pool],
        *,
        channel: str,
        read: Callable[[asyncpg.Pool, list[str]], Awaitable[Iterable[tuple[str, V]]]],
        newer: Callable[[V, V], bool] = _always,
        check_every_s: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self.channel = channel
        self._read = read
        self._newer = newer
        self._check_every_s = check_every_s
        self._watchers: dict[str, set[Watcher[V]]] = {}
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._reads = 0
        self.listening = asyncio.Event()  # set while notifications are being received

    @property
    def watching(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[Watcher[V]]:
        watcher = Watcher(key, self._reads, self._newer)
        self._watchers.setdefault(key, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[key]

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        watched = {key for key in payload.split(",") if key in self._watchers}
        if watched:
            self._pending |= watched
            self._wake.set()

    async def listen(self) -> None:
        """Hold the LISTEN connection; returns (or raises) when it is lost, to be restarted."""
        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(self.channel, self._on_notify)
            self.listening.set()
            self._pending |= set(self._watchers)  # anything may have changed while deaf
            self._wake.set()
            while not lost.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._check_every_s)
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=self._check_every_s)  # a half-open socket
            raise ConnectionError("the LISTEN connection was closed")
        finally:
            self.listening.clear()
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def deliver(self) -> None:
        """Re-read the changed watched keys and hand their values to their watchers, forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            keys, self._pending = self._pending, set()
            keys &= set(self._watchers)
            if not keys:
                continue
            self._reads += 1
            read = self._reads
            try:
                values = await self._read(self._pool(), sorted(keys))
            except Exception:
                self._pending |= keys  # tried again when the loop restarts (after a backoff)
                self._wake.set()
                raise
            for key, value in values:
                for watcher in tuple(self._watchers.get(key, ())):
                    if watcher.since < read:
                        watcher.offer(value)


class StreamsFull(Exception):
    """No slot for one more stream: the client has its share (`everyone` False) or the process
    has as many open streams as it may hold (`everyone` True)."""

    def __init__(self, *, everyone: bool) -> None:
        super().__init__("the process's streams" if everyone else "the client's streams")
        self.everyone = everyone


class Slot:
    """One stream's place in the counts, from its reservation until `release` (idempotent: the
    stream's end and the response's end both release it, whichever comes first)."""

    def __init__(self, slots: StreamSlots, client: str) -> None:
        self._slots = slots
        self.client = client
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.freed(self.client)


class StreamSlots:
    """The open streams of this process: how many each client has, within their limits."""

    def __init__(self, *, max_per_client: int, max_open: int, gauge: Gauge) -> None:
        self._max_per_client = max_per_client
        self._max_open = max_open
        self._gauge = gauge
        self._open: dict[str, int] = {}
        self.open = 0  # slots held, streams open or about to be

    def reserve(self, client: str, *, exempt: bool = False) -> Slot:
        """A slot for one more stream of `client`, or StreamsFull. No await in here: the count
        and the reservation are one step for the event loop. `exempt` clients have no share of
        their own, but count against the process's cap like everyone."""
        if self.open >= self._max_open:
            raise StreamsFull(everyone=True)
        held = self._open.get(client, 0)
        if held >= self._max_per_client and not exempt:
            raise StreamsFull(everyone=False)
        self._open[client] = held + 1
        self.open += 1
        self._gauge.inc()
        return Slot(self, client)

    def freed(self, client: str) -> None:
        """A slot of `client` was released (Slot.release calls this, once per slot)."""
        self._open[client] -= 1
        if not self._open[client]:
            del self._open[client]
        self.open -= 1
        self._gauge.dec()


class FeedStreams(StreamSlots, Generic[V]):
    """Streams counted by StreamSlots that follow one change feed and end after max_stream_s
    (the client opens another); each service adds the events its streams send."""

    def __init__(
        self,
        feed: ChangeFeed[V],
        pool: Callable[[], asyncpg.Pool],
        *,
        max_per_client: int,
        max_open: int,
        max_stream_s: float,
        gauge: Gauge,
    ) -> None:
        super().__init__(max_per_client=max_per_client, max_open=max_open, gauge=gauge)
        self._feed = feed
        self._pool = pool
        self._max_stream_s = max_stream_s
