"""Live changes for the SSE streams: one LISTEN connection per process, fanned out in memory.

Whichever instance consumed an event, its transaction NOTIFYs the changed tracking codes
(store.notify_changed) on the one database all instances share, so every instance hears
every change. Here the codes that someone watches are re-read, in one query per wake-up,
and handed to their watchers; a watcher keeps only the newest parcel (a slow client skips
intermediate states, never the latest one). When the LISTEN connection drops, it is
re-opened and every watched code is re-read, since changes may have been missed meanwhile.

`Streams` turns a watcher into a Server-Sent Events stream (the current state, then one
event per change that a customer can see, `end` after a final status) and counts the open
streams, of each client and of the process: a slot is reserved before the request's first
await, so a burst of openings cannot all pass the count before any of them is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import orjson
from prometheus_client import Gauge
from sse_starlette import ServerSentEvent

from services.tracking import domain, store
from services.tracking.domain import Parcel

log = logging.getLogger(__name__)


class Watcher:
    """One SSE stream's view of one tracking code: the newest parcel, and a wake-up."""

    def __init__(self, code: str) -> None:
        self.code = code
        self._latest: Parcel | None = None
        self._changed = asyncio.Event()

    def offer(self, parcel: Parcel) -> None:
        if self._latest is not None and parcel.version <= self._latest.version:
            return
        self._latest = parcel
        self._changed.set()

    async def next(self, timeout: float) -> Parcel | None:
        """The newest parcel once it changed, or None after `timeout` seconds without change."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return None
        self._changed.clear()
        return self._latest


class ChangeFeed:
    def __init__(self, dsn: str, pool: Callable[[], asyncpg.Pool], *, check_every_s: float = 5.0) -> None:
        self._dsn = dsn
        self._pool = pool
        self._check_every_s = check_every_s
        self._watchers: dict[str, set[Watcher]] = {}
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self.listening = asyncio.Event()  # set while notifications are being received

    @property
    def watching(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    @contextlib.contextmanager
    def watch(self, code: str) -> Iterator[Watcher]:
        watcher = Watcher(code)
        self._watchers.setdefault(code, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers.get(code)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[code]

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        watched = {code for code in payload.split(",") if code in self._watchers}
        if watched:
            self._pending |= watched
            self._wake.set()

    async def listen(self) -> None:
        """Hold the LISTEN connection; returns (or raises) when it is lost, to be restarted."""
        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(store.CHANGES_CHANNEL, self._on_notify)
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
        """Re-read the changed watched parcels and hand them to their watchers, forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            codes, self._pending = self._pending, set()
            codes &= set(self._watchers)
            if not codes:
                continue
            try:
                parcels = await store.find_by_codes(self._pool(), sorted(codes))
            except Exception:
                self._pending |= codes  # tried again when the loop restarts (after a backoff)
                self._wake.set()
                raise
            for parcel in parcels:
                for watcher in tuple(self._watchers.get(parcel.tracking_code or "", ())):
                    watcher.offer(parcel)


# A client that ignores `end` would reconnect in seconds, forever: ask it to wait a day.
END_RETRY_MS = 86_400_000


class StreamsFull(Exception):
    """No slot for one more stream: the client has its share (`everyone` False) or the process
    has as many open streams as it may hold (`everyone` True)."""

    def __init__(self, *, everyone: bool) -> None:
        super().__init__("the process's streams" if everyone else "the client's streams")
        self.everyone = everyone


class Slot:
    """One stream's place in the counts, from its reservation until `release` (idempotent: the
    stream's end and the response's end both release it, whichever comes first)."""

    def __init__(self, streams: Streams, client: str) -> None:
        self._streams = streams
        self.client = client
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._streams.freed(self.client)


class Streams:
    """The open SSE streams of this process: how many each client has, and their events."""

    def __init__(
        self,
        feed: ChangeFeed,
        pool: Callable[[], asyncpg.Pool],
        *,
        max_per_client: int,
        max_open: int,
        max_stream_s: float,
        gauge: Gauge,
    ) -> None:
        self._feed = feed
        self._pool = pool
        self._max_per_client = max_per_client
        self._max_open = max_open
        self._max_stream_s = max_stream_s
        self._gauge = gauge
        self._open: dict[str, int] = {}
        self.open = 0  # slots held, streams open or about to be

    def reserve(self, client: str, *, exempt: bool) -> Slot:
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

    async def events(self, slot: Slot, parcel: Parcel) -> AsyncIterator[ServerSentEvent]:
        """The stream of `parcel` (found by its code): its state now, then each visible change,
        `end` after a final status; it ends after max_stream_s (the client reconnects). Its end
        releases `slot`."""
        code = parcel.tracking_code or ""
        try:
            # Watch first, then read: no change can fall between the two.
            with self._feed.watch(code) as watcher:
                current = await store.find_by_code(self._pool(), code) or parcel
                deadline = time.monotonic() + self._max_stream_s
                view = domain.public_view(current)
                yield _event(view)
                while not domain.is_final(view["status"]):
                    newer = await watcher.next(timeout=deadline - time.monotonic())
                    if newer is None:
                        return  # an old stream: the client reconnects and gets the state
                    if newer.version <= current.version:
                        continue  # read before what was already sent
                    current = newer
                    fresh = domain.public_view(newer)
                    if fresh != view:
                        view = fresh
                        yield _event(view)
                yield ServerSentEvent(event="end", data="{}", retry=END_RETRY_MS)
        finally:
            slot.release()


def _event(view: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event="tracking", data=orjson.dumps(view).decode())
