"""Through the real broker: events in (built from shared.events, produced to the test's own
topics as orders and dispatch publish them), the GET answer and the SSE stream out.

The privacy scan reads every real answer and every SSE payload, on every status of every
lifecycle, for each personal datum that went into the events.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import asyncpg

from services.tracking.domain import TIMELINE_TEXT
from shared.contract import FINAL_STATUSES
from shared.events import COURIER_LOCATIONS_TOPIC
from tests.support import eventually
from tests.tracking.stories import LIFECYCLES, Story
from tests.tracking.support import Stream, send


def assert_private(text: str, story: Story, where: str) -> None:
    # Scan the text as sent and as decoded (a JSON encoder may escape non-ASCII letters).
    decoded = text
    try:
        decoded = json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        pass
    for label, secret in story.secrets().items():
        for body in (text, decoded):
            assert secret.lower() not in body.lower(), f"{where}: the answer shows the {label}"


async def tracked(client, code: str, check) -> dict[str, Any]:
    async def answer():
        r = await client.get(f"/v1/tracking/{code}")
        if r.status_code == 200 and check(r.json()):
            return r

    return await eventually(answer, timeout=20, what=f"tracking {code}")


async def follow_lifecycle(settings, server, name: str) -> None:
    story = Story()
    steps = LIFECYCLES[name](story)
    (first_status, first), rest = steps[0], steps[1:]
    await send(settings, first)
    r = await tracked(server, story.code, lambda b: b["status"] == first_status)
    assert_private(r.text, story, f"{name}/{first_status} GET")
    stream = Stream(server, story.code)
    try:
        await eventually(lambda: stream.seen(lambda s: s["status"] == first_status), what="first SSE event")
        for expected, item in rest:
            await send(settings, item)
            topic, event = item
            if topic == COURIER_LOCATIONS_TOPIC:

                def check(b, expected=expected, lat=event.data.lat):
                    return (
                        b["status"] == expected
                        and (b["courier"] or {}).get("location", {})
                        and b["courier"]["location"]["lat"] == lat
                    )
            else:

                def check(b, expected=expected):
                    return b["status"] == expected

            r = await tracked(server, story.code, check)
            assert_private(r.text, story, f"{name}/{expected} GET")
            body = r.json()
            assert [s["status"] for s in body["timeline"]][-1] == expected or expected == "placed"
            assert all(s["text"] == TIMELINE_TEXT[s["status"]] for s in body["timeline"])
            if expected in FINAL_STATUSES:
                assert body["eta_minutes"] is None
                assert body["courier"] is None or body["courier"]["location"] is None
            # The stream shows the same state before the next event goes in.
            await eventually(lambda: stream.seen(check), what=f"{name}/{expected} on the stream")
        await stream.finished()
    finally:
        await stream.close()
    assert stream.status == 200
    for line in stream.raw:
        assert_private(line, story, f"{name} SSE")
    states = stream.states()
    shown = [s["status"] for s in states]
    expected_statuses = list(dict.fromkeys(status for status, _ in steps))
    assert list(dict.fromkeys(shown)) == expected_statuses, "every status on the stream, in order"
    assert all(a != b for a, b in itertools.pairwise(states)), "one event per change, none without a change"
    assert stream.events[-1] == ("end", {}), "a clean end after the final status"
    assert states[-1] == r.json(), "the stream's last state is the answer"


async def test_every_lifecycle_through_the_broker_get_sse_and_privacy(settings, server):
    await asyncio.gather(*(follow_lifecycle(settings, server, name) for name in LIFECYCLES))


async def test_dispatch_events_consumed_before_order_placed(settings, client, database):
    story = Story()
    placed, assigned, picked = story.placed(), story.assigned(), story.picked_up()
    await send(settings, assigned, picked)

    async def projected_without_code():
        conn = await asyncpg.connect(database)
        try:
            return await conn.fetchrow("SELECT status, tracking_code FROM parcels WHERE order_id = $1", story.order_id)
        finally:
            await conn.close()

    row = await eventually(lambda: _status_is(projected_without_code, "picked_up"), what="picked_up")
    assert row["tracking_code"] is None
    assert (await client.get(f"/v1/tracking/{story.code}")).status_code == 404

    await send(settings, placed)
    r = await tracked(client, story.code, lambda b: True)
    body = r.json()
    assert body["status"] == "picked_up", "order.trackable arriving late never moves the status back"
    assert [s["status"] for s in body["timeline"]] == ["placed", "assigned", "picked_up"]
    assert body["courier"] == {"display_name": "Minh P.", "vehicle": "motorbike", "location": None}


async def _status_is(fetch, status):
    row = await fetch()
    return row if row and row["status"] == status else None


async def test_duplicates_and_stale_events_through_the_broker_change_nothing(settings, client, app):
    story, other = Story(), Story()
    placed, assigned, picked = story.placed(), story.assigned(), story.picked_up()
    first_point, second_point = story.location(20.9541, 107.0611), story.location(20.9552, 107.0533)
    await send(settings, placed, assigned, picked, other.placed(), other.assigned(), other.picked_up())
    # A ping consumed before its parcel's picked_up (another topic) is dropped: wait for it.
    for s in (story, other):
        await tracked(client, s.code, lambda b: b["status"] == "picked_up")
    await send(settings, second_point)
    r = await tracked(client, story.code, lambda b: (b["courier"] or {}).get("location"))
    before = r.json()
    assert before["status"] == "picked_up" and before["courier"]["location"]["lat"] == 20.9552

    # Everything again (at-least-once), an older point arriving late, then on each topic a
    # marker that is consumed after them (one partition per topic in these tests).
    await send(settings, placed, assigned, picked, assigned, placed, first_point, second_point)
    marker = Story()
    await send(settings, marker.placed(), story.cancel_refused(), other.location(20.9001, 107.0001))
    await tracked(client, other.code, lambda b: (b["courier"]["location"] or {}).get("lat") == 20.9001)

    async def applied():
        rows = await app.state.runtime.pool.fetch(
            "SELECT event_type, sum(applied)::int AS applied FROM inbox_applied WHERE consumer = 'tracking' GROUP BY 1"
        )
        return {r["event_type"]: r["applied"] for r in rows}

    assert await eventually(
        lambda: _when(applied, lambda a: "delivery.cancel_refused" in a and a.get("order.trackable") == 3),
        what="markers consumed",
    ) == {
        "order.trackable": 3,
        "delivery.assigned": 2,
        "delivery.picked_up": 2,
        "delivery.cancel_refused": 1,
    }, "each event applied once"
    after = (await client.get(f"/v1/tracking/{story.code}")).json()
    assert after == before, "duplicates, the stale point and the refused cancel changed nothing"


async def _when(fetch, check):
    value = await fetch()
    return value if check(value) else None


async def test_location_pings_through_the_broker(settings, client):
    stories = [Story() for _ in range(10)]
    await send(settings, *[e for s in stories for e in (s.placed(), s.assigned(), s.picked_up())])
    for s in stories:
        await tracked(client, s.code, lambda b: b["status"] == "picked_up")
    points = [s.location(20.90 + i / 1000, 107.00 + k / 1000) for k in range(5) for i, s in enumerate(stories)]
    await send(settings, *points)
    for i, s in enumerate(stories):
        r = await tracked(client, s.code, lambda b: (b["courier"]["location"] or {}).get("lng") == 107.004)
        assert r.json()["courier"]["location"]["lat"] == 20.90 + i / 1000
        assert r.json()["eta_minutes"] >= 1


async def test_a_ping_consumed_before_the_pickup_still_shows(settings, client, app):
    s = Story()
    await send(settings, s.placed(), s.assigned())
    await tracked(client, s.code, lambda b: b["status"] == "assigned")
    await send(settings, s.location(20.9541, 107.0611))  # the courier's ping overtakes the pickup

    async def remembered():
        return await app.state.runtime.pool.fetchval(
            "SELECT lat FROM courier_positions WHERE courier_id = $1", s.courier_id
        )

    await eventually(remembered, what="the courier's point remembered")
    assert (await client.get(f"/v1/tracking/{s.code}")).json()["courier"]["location"] is None, "not before pickup"
    await send(settings, s.picked_up())
    r = await tracked(client, s.code, lambda b: b["status"] == "picked_up")
    assert r.json()["courier"]["location"]["lat"] == 20.9541
