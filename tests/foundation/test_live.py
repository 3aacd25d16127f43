"""NOTIFY of changed keys against real PostgreSQL: every key heard once, at commit, in payloads
PostgreSQL accepts however many keys there are."""

from __future__ import annotations

import uuid

import asyncpg

from shared.live import NOTIFY_PAYLOAD_MAX, notify, notify_from
from tests.support import eventually

CHANNEL = "test_live_keys"


async def _listening(database: str) -> tuple[asyncpg.Connection, list[str]]:
    heard: list[str] = []
    listener = await asyncpg.connect(database)
    await listener.add_listener(CHANNEL, lambda _c, _p, _ch, payload: heard.append(payload))
    return listener, heard


async def test_many_keys_are_heard_at_commit_in_payloads_under_the_limit(database):
    keys = sorted(str(uuid.uuid4()) for _ in range(500))  # 18,500 bytes: three payloads at least
    listener, heard = await _listening(database)
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await notify(conn, CHANNEL, [*keys, None, keys[0]])  # None is no one's; a key given twice

        async def all_heard() -> bool:
            return sum(p.count(",") + 1 for p in heard) >= len(keys)

        await eventually(all_heard)
        assert len(heard) >= 3
        assert all(len(p.encode()) <= NOTIFY_PAYLOAD_MAX + len(keys[0]) for p in heard)
        assert sorted(k for p in heard for k in p.split(",")) == keys  # each key once

        heard.clear()
        async with conn.transaction():
            await notify(conn, CHANNEL, [None])  # no key: no NOTIFY, nothing heard
            await notify(conn, CHANNEL, ["only-key"])

        async def one_heard() -> bool:
            return bool(heard)

        await eventually(one_heard)
        assert heard == ["only-key"]
    finally:
        await conn.close()
        await listener.close()


async def test_a_statement_notifies_the_keys_it_changed_and_nothing_when_it_changed_none(database):
    listener, heard = await _listening(database)
    conn = await asyncpg.connect(database)
    # Read whether or not there are keys, so that the fragment itself must send nothing for none.
    statement = f"""WITH changed AS (SELECT k AS key FROM unnest($1::text[]) AS k),
        {notify_from("changed", "$2")}
        SELECT count(*) FROM notified"""

    async def any_heard() -> bool:
        return bool(heard)

    try:
        assert await conn.fetchval(statement, [], CHANNEL) == 0
        assert await conn.fetchval(statement, ["b", "a", "b"], CHANNEL) == 1
        await eventually(any_heard)
        assert heard == ["a,b"]  # nothing for no keys (it would have come first), then one payload
    finally:
        await conn.close()
        await listener.close()
