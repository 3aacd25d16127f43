"""Tracking's live streams: a parcel's public view over Server-Sent Events, fed by
shared.live's change feed of tracking codes (store.notify_changed at commit, one LISTEN
connection per process).

`Streams` turns a watcher into a stream (the current state, then one event per change that a
customer can see, `end` after a final status) within the limits of shared.live.StreamSlots.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import asyncpg
import orjson
from sse_starlette import ServerSentEvent

from services.tracking import domain, store
from services.tracking.domain import Parcel
from shared.live import ChangeFeed, FeedStreams, Slot


def change_feed(dsn: str, pool: Callable[[], asyncpg.Pool]) -> ChangeFeed[Parcel]:
    """The parcels of the watched tracking codes, as they change (a parcel read later replaces
    one a watcher holds only if it is a newer version)."""

    async def read(pool: asyncpg.Pool, codes: list[str]) -> Iterable[tuple[str, Parcel]]:
        return [(p.tracking_code or "", p) for p in await store.find_by_codes(pool, codes)]

    return ChangeFeed(
        dsn, pool, channel=store.CHANGES_CHANNEL, read=read, newer=lambda new, old: new.version > old.version
    )


# A client that ignores `end` would reconnect in seconds, forever: ask it to wait a day.
END_RETRY_MS = 86_400_000


class Streams(FeedStreams[Parcel]):
    """The open SSE streams of this process: how many each client has, and their events."""

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
