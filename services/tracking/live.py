"""Live changes for the SSE streams: one LISTEN connection per process, fanned out in memory.

Whichever instance consumed an event, its transaction NOTIFYs the changed tracking codes
(store.notify_changed) on the one database all instances share, so every instance hears
every change. Here the codes that someone watches are re-read, in one query per wake-up,
and handed to their watchers; a watcher keeps only the newest parcel (a slow client skips
intermediate states, never the latest one). When the LISTEN connection drops, it is
re-opened and every watched code is re-read, since changes may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import asyncpg

from services.tracking import store
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
        except asyncio.TimeoutError:
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
